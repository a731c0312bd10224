"""Console passwords, stored hashed: scrypt (RFC 7914) from the standard
library, in one self-describing text form::

    scrypt$16384$8$1$<salt, base64>$<key, base64>

The cost parameters travel with the hash, so raising them later keeps old
hashes valid.  A users file holds one ``name:hash`` line per user (like
htpasswd); ``smemet gateway web-user add`` writes it with mode 0600.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from contextlib import suppress
from dataclasses import dataclass

SCHEME = "scrypt"
# n = 2**14, r = 8: ~16 MiB and some tens of ms per check on a small gateway
# -- slow for a guesser, fast enough for a login.
N, R, P = 2**14, 8, 1
KEY_BYTES = 32
SALT_BYTES = 16
_MAX_N = 2**20  # refuse hashes that would make one login cost a gigabyte
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class PasswordHashError(ValueError):
    """A stored hash is not in the form above; ``str()`` says what is wrong."""


@dataclass(frozen=True, slots=True)
class PasswordHash:
    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    @classmethod
    def parse(cls, text: str) -> PasswordHash:
        parts = text.strip().split("$")
        if len(parts) != 6 or parts[0] != SCHEME:
            raise PasswordHashError("is not a password hash of the form scrypt$N$r$p$salt$key "
                                    "(make one with: smemet gateway web-user add NAME)")
        try:
            n, r, p = (int(x) for x in parts[1:4])
            salt = base64.b64decode(parts[4], validate=True)
            key = base64.b64decode(parts[5], validate=True)
        except ValueError:
            raise PasswordHashError("has a malformed number or base64 field") from None
        if n < 2 or n & (n - 1) or n > _MAX_N or not 1 <= r <= 32 or not 1 <= p <= 16 or not salt or len(key) < 16:
            raise PasswordHashError(f"has unusable parameters (N={n}, r={r}, p={p})")
        return cls(n, r, p, salt, key)

    def text(self) -> str:
        b64 = base64.b64encode
        return f"{SCHEME}${self.n}${self.r}${self.p}${b64(self.salt).decode()}${b64(self.key).decode()}"

    def matches(self, password: str) -> bool:
        candidate = _derive(password, self.salt, self.n, self.r, self.p, len(self.key))
        return hmac.compare_digest(candidate, self.key)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    return PasswordHash(N, R, P, salt, _derive(password, salt, N, R, P, KEY_BYTES)).text()


def _derive(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=length,
                          maxmem=128 * r * (n + p + 2) + 1024 * 1024)


def read_users_file(path: str) -> dict[str, str]:
    """``name:hash`` lines (``#`` comments and blank lines allowed) ->
    {name: hash text}; raises PasswordHashError naming the line."""
    users: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, text = line.partition(":")
            if not sep or not USER_NAME.match(name):
                raise PasswordHashError(f"line {number}: expected name:scrypt$..., with a name of letters, digits, "
                                        "'.', '_', '@' or '-'")
            try:
                PasswordHash.parse(text)
            except PasswordHashError as exc:
                raise PasswordHashError(f"line {number} ({name}): the hash {exc}") from None
            users[name] = text
    return users


def write_users_file(path: str, users: dict[str, str]) -> None:
    """Replace ``path`` atomically, created mode 0600."""
    temporary = f"{path}.tmp-{os.getpid()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("# smemet web console users: name:scrypt hash (smemet gateway web-user add NAME)\n")
            for name, text in users.items():
                f.write(f"{name}:{text}\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise

