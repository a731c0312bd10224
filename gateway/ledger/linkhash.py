"""One link of a route's hash chain (chain.py), in pure Python: the
reference twin of ``_linkhash.pyx``.

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
