"""One link of a route's hash chain (chain.py), and a route message stamped
with its link fields and linked, in pure Python: the reference twin of
``_linkhash.pyx``.

    link n = SHA-256( link n-1  ||  n as 8 bytes, big-endian  ||  SHA-256(payload n) )

Both twins take the same arguments, give the same bytes and raise the same
errors (``test_link_hash.py`` runs one suite on both).
"""

from __future__ import annotations

import hashlib

IMPLEMENTATION = "pure"
_sha256 = hashlib.sha256


def link_hash(prev: bytes, seq: int, payload: bytes) -> bytes:
    """Link ``seq`` (0 <= seq < 2**64) after link ``prev`` (32 bytes), for
    ``payload`` as published."""
    if len(prev) != 32:
        raise ValueError(f"a link is 32 bytes, not {len(prev)}")
    return _sha256(prev + seq.to_bytes(8, "big") + _sha256(payload).digest()).digest()


PREV_FIELD = b',"link_prev":"'


def linked(payload: bytes, cut: int, stamp: bytes, seq: int, prev: bytes, tail: bytes) -> tuple[bytes, bytes]:
    """A route message with its link fields, and its link: ``payload``
    without its last ``cut`` bytes, then ``stamp`` (which ends in
    ``,"link_seq":``), ``seq`` in decimal, ``,"link_prev":"``, ``prev`` in
    lower-case hex and ``tail`` (sinks/mqtt/links.py gives the formats).
    One call per message on json routes: the stamping and both hashes."""
    if not 0 <= cut <= len(payload):
        raise ValueError(f"cannot cut {cut} bytes off a payload of {len(payload)}")
    if seq < 0:
        raise OverflowError("a link number is not negative")
    stamped = b"%b%b%d%b%b%b" % (payload[:len(payload) - cut], stamp, seq, PREV_FIELD, prev.hex().encode(), tail)
    return stamped, link_hash(prev, seq, stamped)
