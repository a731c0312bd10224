"""What cose.py offers CPython users beyond a node's needs: HMAC on the
standard library's C implementation, and the public names of the header
labels and limits (``cose.MAX_FRAME``, ``cose.H_ALG``, ...).  cose.py
imports this on CPython; on MicroPython it is loaded only if such a name is
asked for.  The values are the wire contract (SPEC.md §2) and match the
private constants cose.py encodes with (the vectors check both)."""

try:
    import hmac as _hmac
except ImportError:  # MicroPython asking cose for a public name: no stdlib HMAC needed for that
    _hmac = None

TAG_MAC0 = 17
ALG_HMAC_256_64 = 4
MAC_LEN = 8
MAX_FRAME = 1024  # bytes of the whole tagged frame, before COBS
MAX_KID = 32
MAX_SEQ = 0xFFFFFFFFFF  # 40 bits: a Partial IV is at most 5 bytes

# Header labels (RFC 9052 §3.1) and our private unprotected label.
H_ALG = 1
H_CRIT = 2
H_CONTENT_TYPE = 3
H_KID = 4
H_PARTIAL_IV = 6
H_AGE_MS = -65537  # unprotected: ms since the frame was built (SPEC §3.4)
H_AGE_FLOOR = -65538  # unprotected: true when that age is only a lower bound (SPEC §3.4)

__all__ = ["TAG_MAC0", "ALG_HMAC_256_64", "MAC_LEN", "MAX_FRAME", "MAX_KID", "MAX_SEQ", "H_ALG", "H_CRIT",
           "H_CONTENT_TYPE", "H_KID", "H_PARTIAL_IV", "H_AGE_MS", "H_AGE_FLOOR", "hmac_sha256", "digest_equal"]


def hmac_sha256(key, *parts):
    """HMAC-SHA-256 over the concatenation of ``parts``."""
    if len(parts) == 1:
        return _hmac.digest(key, parts[0], "sha256")
    mac = _hmac.new(key, digestmod="sha256")
    for part in parts:
        mac.update(part)
    return mac.digest()


def digest_equal(a, b):
    return _hmac.compare_digest(a, b)
