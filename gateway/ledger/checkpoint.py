"""Checkpoints: the gateway's signed statement of a route's chain head.

A checkpoint is a COSE_Sign1 (RFC 9052 §4.2, CBOR tag 18) signed with the
gateway's Ed25519 key (algorithm EdDSA, -8; RFC 9053 §2.2):

    protected   = bstr .cbor {1: -8}            (alg: EdDSA)
    unprotected = {4: kid}                      (the key id: the fingerprint's first 8 bytes)
    payload     = bstr .cbor {                  (CBOR map, text keys)
        "route": text, "gateway": text,         which chain
        "seq": uint, "head": bstr .size 32,     its newest acknowledged link
        "time": float,                          when it was signed (Unix s)
        "agreement": text / null, "version": uint / null   the terms in force
    }
    signature   = Ed25519 over Sig_structure ["Signature1", protected, h'', payload]

It says: "every message of this route up to ``seq`` was acknowledged by the
route's broker, and the chain of them ends in ``head``".  The gateway only
ever signs acknowledged links, so two checkpoints of one route never
contradict each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cbor2
from cryptography.exceptions import InvalidSignature

from .signing import ALG_EDDSA, SigningKey, public_key

COSE_SIGN1_TAG = 18
_ALG, _KID = 1, 4
_PROTECTED = cbor2.dumps({_ALG: ALG_EDDSA})
CONTENT_TYPE = 'application/cose; cose-type="cose-sign1"'


@dataclass(frozen=True, slots=True)
class Checkpoint:
    route: str
    gateway: str
    seq: int
    head: bytes
    time: float
    agreement: str | None = None
    version: int | None = None

    def payload(self) -> bytes:
        return cbor2.dumps({"route": self.route, "gateway": self.gateway, "seq": self.seq, "head": self.head,
                            "time": self.time, "agreement": self.agreement, "version": self.version}, canonical=True)


def _to_be_signed(protected: bytes, payload: bytes) -> bytes:
    return cbor2.dumps(["Signature1", protected, b"", payload])


def sign(key: SigningKey, checkpoint: Checkpoint) -> bytes:
    """The checkpoint as a tagged COSE_Sign1."""
    payload = checkpoint.payload()
    signature = key.sign(_to_be_signed(_PROTECTED, payload))
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [_PROTECTED, {_KID: key.kid}, payload, signature]))


class CheckpointError(ValueError):
    """Not a checkpoint of this key: malformed, another algorithm, or a bad signature."""


def verify(message: bytes, public: bytes) -> Checkpoint:
    """The checkpoint ``message`` states, once its signature verified with
    ``public`` (raw Ed25519); raises CheckpointError."""
    try:
        tagged = cbor2.loads(message)
    except (cbor2.CBORDecodeError, ValueError, TypeError) as exc:
        raise CheckpointError(f"not CBOR ({exc})") from None
    if not isinstance(tagged, cbor2.CBORTag) or tagged.tag != COSE_SIGN1_TAG:
        raise CheckpointError("not a tagged COSE_Sign1 (CBOR tag 18)")
    body = tagged.value
    if not (isinstance(body, (list, tuple)) and len(body) == 4  # cbor2 6 decodes a tagged array as a tuple and isinstance(body[0], bytes) and isinstance(body[2], bytes)
            and isinstance(body[3], bytes)):
        raise CheckpointError("a COSE_Sign1 is [protected, unprotected, payload, signature]")
    protected, _unprotected, payload, signature = body
    try:
        header = cbor2.loads(protected) if protected else {}
    except (cbor2.CBORDecodeError, ValueError, TypeError):
        raise CheckpointError("the protected header is not CBOR") from None
    if not isinstance(header, dict) or header.get(_ALG) != ALG_EDDSA:
        raise CheckpointError("the protected header does not name EdDSA (alg -8)")
    try:
        public_key(public).verify(signature, _to_be_signed(protected, payload))
    except InvalidSignature:
        raise CheckpointError("the signature does not verify with the gateway's key") from None
    try:
        doc = cbor2.loads(payload)
        checkpoint = Checkpoint(doc["route"], doc["gateway"], doc["seq"], doc["head"], doc["time"],
                                doc.get("agreement"), doc.get("version"))
    except (cbor2.CBORDecodeError, ValueError, TypeError, KeyError):
        raise CheckpointError("the signed payload is not a checkpoint") from None
    if not (isinstance(checkpoint.seq, int) and checkpoint.seq >= 0 and isinstance(checkpoint.head, bytes)
            and len(checkpoint.head) == 32 and isinstance(checkpoint.time, (int, float))
            and math.isfinite(checkpoint.time)):
        raise CheckpointError("the signed payload is not a checkpoint")
    return checkpoint
