"""The gateway's signing key: one Ed25519 key pair per gateway (RFC 8032),
made at the first start, its private half in a PEM file (PKCS#8) only the
gateway's user may read.

Partners check the gateway's checkpoints with the public half.  The gateway
publishes it on every route (``<prefix>/gateway-key``, a COSE_Key, RFC 9052
§7), but a key read from the broker proves nothing by itself: a partner pins
the **fingerprint** (SHA-256 of the 32-byte public key) it got from the
operator (``smemet gateway signing-key show``) and checks the published key
against it.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass

import cbor2
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import GatewayError

KID_BYTES = 8  # the COSE kid: the fingerprint's first bytes, enough to tell keys apart
# COSE labels (RFC 9052 §7.1, RFC 9053 §7.2): key type, key id, algorithm; OKP curve and x
_KTY, _KID, _ALG, _CRV, _X = 1, 2, 3, -1, -2
KTY_OKP, CRV_ED25519, ALG_EDDSA = 1, 6, -8


class SigningKeyError(GatewayError):
    """The signing key file cannot be made, read or trusted; the message says what to do."""


def fingerprint(public: bytes) -> str:
    """The SHA-256 of the raw public key, as hex in groups of four (read
    over the phone, compared by eye)."""
    digest = hashlib.sha256(public).hexdigest()
    return " ".join(digest[i:i + 4] for i in range(0, len(digest), 4))


def normalise_fingerprint(text: str) -> str:
    """A fingerprint as a partner may type it (any case, spaces, colons, an
    ``SHA256:`` prefix) as 64 lowercase hex digits; ValueError otherwise."""
    text = text.strip()
    if text.lower().startswith("sha256:"):
        text = text[7:]
    digits = "".join(c for c in text.lower() if c not in " :-")
    if len(digits) != 64 or any(c not in "0123456789abcdef" for c in digits):
        raise ValueError("a fingerprint is 64 hex digits (the SHA-256 of the public key)")
    return digits


def key_id(public: bytes) -> bytes:
    return hashlib.sha256(public).digest()[:KID_BYTES]


def cose_key(public: bytes) -> bytes:
    """The public key as a COSE_Key (OKP, Ed25519, EdDSA), CBOR-encoded."""
    return cbor2.dumps({_KTY: KTY_OKP, _KID: key_id(public), _ALG: ALG_EDDSA, _CRV: CRV_ED25519, _X: public},
                       canonical=True)


def public_from_cose_key(data: bytes) -> bytes:
    """The raw public key of a COSE_Key message; ValueError if it is not an
    Ed25519 OKP key."""
    try:
        key = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError) as exc:
        raise ValueError(f"not CBOR ({exc})") from None
    if not isinstance(key, dict) or key.get(_KTY) != KTY_OKP or key.get(_CRV) != CRV_ED25519:
        raise ValueError("not an Ed25519 COSE_Key (kty OKP, crv Ed25519)")
    public = key.get(_X)
    if not isinstance(public, bytes) or len(public) != 32:
        raise ValueError("the COSE_Key's x is not a 32-byte Ed25519 public key")
    return public


@dataclass(frozen=True)
class SigningKey:
    """The private key, and what partners see of it."""

    path: str
    private: Ed25519PrivateKey

    @property
    def public(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def kid(self) -> bytes:
        return key_id(self.public)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)

    def public_pem(self) -> str:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def __repr__(self) -> str:  # never show the private key
        return f"SigningKey({self.path}, fingerprint {self.fingerprint})"


def load_or_create(path: str) -> SigningKey:
    """The key at ``path``; made (mode 0600) when there is none yet."""
    if not os.path.lexists(path):
        _create(path)
    return load(path)


def load(path: str) -> SigningKey:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise SigningKeyError(f"{path}: no signing key yet; the gateway makes it at its first start with a route "
                              "(or set [ledger] signing_key to where it is)") from None
    except OSError as exc:
        raise SigningKeyError(f"{path}: cannot read the signing key ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise SigningKeyError(f"{path}: the signing key is not a regular file")
    if info.st_uid != os.geteuid():
        raise SigningKeyError(f"{path}: the signing key belongs to uid {info.st_uid}, not to the user running the "
                              f"gateway (uid {os.geteuid()}); fix with `chown {os.geteuid()} {path}`")
    if info.st_mode & 0o077:
        raise SigningKeyError(f"{path}: the signing key is readable by others (mode {stat.S_IMODE(info.st_mode):04o});"
                              f" fix with `chmod 600 {path}`")
    try:
        with open(path, "rb") as f:
            private = serialization.load_pem_private_key(f.read(), password=None)
    except OSError as exc:
        raise SigningKeyError(f"{path}: cannot read the signing key ({exc.strerror})") from None
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise SigningKeyError(f"{path}: not an unencrypted PEM private key; move it away and the gateway makes a new "
                              "one (partners must then pin the new fingerprint)") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise SigningKeyError(f"{path}: holds a {type(private).__name__.replace('PrivateKey', '')} key; the gateway "
                              "signs with Ed25519")
    return SigningKey(path, private)


def _create(path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise SigningKeyError(f"{path}: directory {directory} does not exist; create it (owned by the gateway user)")
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    temporary = f"{path}.{os.getpid()}.new"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temporary, path)  # never replaces a key another process made meanwhile
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise SigningKeyError(f"{path}: cannot create the signing key ({exc.strerror}); the gateway user must be able "
                              f"to write to {directory}") from None


def public_key(public: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(public)
