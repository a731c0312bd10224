"""COSE_Mac0 frames (RFC 9052 §6.2) with HMAC 256/64 (alg 4), as SPEC.md §2.

A frame is ``17([protected, unprotected, payload, tag])``.  The protected
header is the deterministic CBOR map ``{1: 4, 3: content_type, 4: kid,
6: partial_iv}``; the tag is the first 8 bytes of HMAC-SHA-256 over
``["MAC0", protected, h'', payload]``.  Verification always uses the bytes as
received, never a re-encoding.
"""

import sys

from . import cbor
from .errors import error

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):
        return value


if sys.implementation.name != "micropython":  # CPython: the stdlib's C HMAC, and the names
    from .cose_cpython import *  # noqa: F401,F403
    from .cose_cpython import digest_equal, hmac_sha256  # noqa: F811
else:  # MicroPython: HMAC (RFC 2104) on hashlib.sha256
    import hashlib

    _PAD = bytearray(64)  # reused for the inner and outer key pads

    def _keyed(key, xor):
        for i in range(64):
            _PAD[i] = (key[i] if i < len(key) else 0) ^ xor
        return hashlib.sha256(_PAD)

    def hmac_sha256(key, *parts):
        """HMAC-SHA-256 over the concatenation of ``parts``, streamed so the
        message is never copied into one buffer."""
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        inner = _keyed(key, 0x36)
        for part in parts:
            inner.update(part)
        outer = _keyed(key, 0x5C)
        outer.update(inner.digest())
        return outer.digest()

    def digest_equal(a, b):
        """Compare in time independent of where the bytes differ."""
        if len(a) != len(b):
            return False
        diff = 0
        for i in range(len(a)):
            diff |= a[i] ^ b[i]
        return diff == 0


_TAG_MAC0 = const(17)
_ALG_HMAC_256_64 = const(4)
_MAC_LEN = const(8)
_MAX_FRAME = const(1024)  # bytes of the whole tagged frame, before COBS
_MAX_KID = const(32)
_MAX_SEQ = const(0xFFFFFFFFFF)  # 40 bits: a Partial IV is at most 5 bytes

# Header labels (RFC 9052 §3.1) and our private unprotected label.  Private
# consts (a node's heap holds neither names nor values); the public names
# (``cose.MAX_FRAME``, ``cose.H_ALG``, ...) are in cose_cpython.py.
_H_ALG = const(1)
_H_CRIT = const(2)
_H_CONTENT_TYPE = const(3)
_H_KID = const(4)
_H_PARTIAL_IV = const(6)
_H_AGE_MS = const(-65537)  # unprotected: ms since the frame was built (SPEC §3.4)
_H_AGE_FLOOR = const(-65538)  # unprotected: true when that age is only a lower bound

_MAC0_CONTEXT = b"\x84\x64MAC0"  # array(4), "MAC0"


def __getattr__(name):  # MicroPython: the public names, loaded on first use
    from . import cose_cpython

    try:
        return getattr(cose_cpython, name)
    except AttributeError:
        raise AttributeError(name) from None


def partial_iv(seq):
    """Minimal big-endian bytes of a sequence number (0 is one zero byte)."""
    if seq < 0 or seq > _MAX_SEQ:
        raise ValueError("sequence number out of range")
    length = 1
    while seq >> (8 * length):
        length += 1
    return seq.to_bytes(length, "big")


def protected_header(kid, seq, content_type):
    out = bytearray()
    cbor.write_head(out, 5, 4)
    out.append(_H_ALG)
    out.append(_ALG_HMAC_256_64)
    out.append(_H_CONTENT_TYPE)
    cbor.write_int(out, content_type)
    out.append(_H_KID)
    cbor.write_bytes(out, kid)
    out.append(_H_PARTIAL_IV)
    cbor.write_bytes(out, partial_iv(seq))
    return bytes(out)


def _mac_prefix(protected, payload):
    """MAC_structure of RFC 9052 §6.3 (empty external AAD) up to the payload
    bytes, which are hashed in place rather than copied after it."""
    out = bytearray(_MAC0_CONTEXT)
    cbor.write_bytes(out, protected)
    out.append(0x40)  # external_aad: h''
    cbor.write_head(out, 2, len(payload))
    return out


def mac_structure(protected, payload):
    """The whole MAC_structure (for tools and tests)."""
    return _mac_prefix(protected, payload) + payload


def compute_tag(key, protected, payload):
    return hmac_sha256(key, _mac_prefix(protected, payload), payload)[:_MAC_LEN]


def assemble(protected, payload, tag, age_ms=None, out=None, age_floor=False):
    """Serialise a frame from its parts; ``age_ms`` goes unprotected, with
    the ``age_floor`` flag when that age is only a lower bound (SPEC §3.4).

    Gives bytes; with ``out`` (a bytearray, e.g. a node's frame buffer made
    once) the frame is written into it and ``out`` itself is returned: no
    per-frame buffer, valid until ``out`` is reused."""
    copy = out is None
    if copy:
        out = bytearray()
    out[:] = b"\xd1\x84"  # tag 17, array(4)
    cbor.write_bytes(out, protected)
    if age_ms is None:
        out.append(0xA0)
    else:
        out.append(0xA2 if age_floor else 0xA1)
        cbor.write_int(out, _H_AGE_MS)  # -65537 sorts before -65538 (deterministic order)
        cbor.write_int(out, age_ms)
        if age_floor:
            cbor.write_int(out, _H_AGE_FLOOR)
            out.append(0xF5)  # true
    cbor.write_bytes(out, payload)
    cbor.write_bytes(out, tag)
    if len(out) > _MAX_FRAME:
        raise ValueError("frame of %d bytes exceeds %d" % (len(out), _MAX_FRAME))
    return bytes(out) if copy else out


def create(key, kid, seq, content_type, payload, age_ms=None, out=None, age_floor=False):
    """A complete, MAC'd frame (written into ``out`` if given, see assemble)."""
    protected = protected_header(kid, seq, content_type)
    return assemble(protected, payload, compute_tag(key, protected, payload), age_ms, out, age_floor)


class Mac0:
    """A parsed (not yet verified) frame."""

    def __init__(self, protected, unprotected, payload, tag, kid, seq, content_type):
        self.protected = protected
        self.unprotected = unprotected
        self.payload = payload
        self.tag = tag
        self.kid = kid
        self.seq = seq
        self.content_type = content_type
        age = unprotected.get(_H_AGE_MS)
        self.age_ms = age if isinstance(age, int) and age >= 0 else None
        self.age_floor = self.age_ms is not None and unprotected.get(_H_AGE_FLOOR) is True

    def verify(self, key):
        """Raise a bad-mac ProtocolError unless the tag is right for ``key``."""
        if not digest_equal(compute_tag(key, self.protected, self.payload), self.tag):
            raise error("bad-mac", "MAC does not verify with this node's key")


def parse(frame):
    """Check a frame's structure and headers; raises a ProtocolError."""
    if len(frame) > _MAX_FRAME:
        raise error("oversize", "frame of %d bytes exceeds the %d-byte limit" % (len(frame), _MAX_FRAME))
    item = cbor.decode(frame)
    if not isinstance(item, cbor.Tag) or item.tag != _TAG_MAC0:
        raise error("malformed", "not a tagged COSE_Mac0 (CBOR tag 17)")
    parts = item.value
    if not isinstance(parts, list) or len(parts) != 4:
        raise error("malformed", "COSE_Mac0 must be an array of 4 items")
    protected, unprotected, payload, tag = parts
    if not isinstance(protected, bytes) or not isinstance(unprotected, dict):
        raise error("malformed", "COSE_Mac0 headers must be a bstr and a map")
    if not isinstance(payload, bytes):
        raise error("malformed", "COSE_Mac0 payload must be attached (bstr)")
    header = cbor.decode(protected) if protected else {}
    if not isinstance(header, dict):
        raise error("malformed", "protected header is not a map")
    for label in unprotected:
        if label in header:
            raise error("malformed", "header label %r is both protected and unprotected" % (label,))
    if _H_CRIT in header:
        raise error("malformed", "critical header parameters are not supported")
    alg = header.get(_H_ALG)
    if alg != _ALG_HMAC_256_64:
        raise error("unsupported-algorithm", "algorithm %r is not HMAC 256/64 (4)" % (alg,))
    if not isinstance(tag, bytes) or len(tag) != _MAC_LEN:
        raise error("malformed", "MAC tag must be %d bytes" % _MAC_LEN)
    kid = header.get(_H_KID)
    if not isinstance(kid, bytes) or not 1 <= len(kid) <= _MAX_KID:
        raise error("malformed", "kid (node id) missing or not 1..%d bytes" % _MAX_KID)
    piv = header.get(_H_PARTIAL_IV)
    if not isinstance(piv, bytes) or not 1 <= len(piv) <= 5 or (len(piv) > 1 and piv[0] == 0):
        raise error("malformed", "Partial IV missing or not a minimal 1..5 byte sequence number")
    content_type = header.get(_H_CONTENT_TYPE)
    if not isinstance(content_type, int) or content_type < 0:
        raise error("malformed", "content type missing or not an unsigned integer")
    return Mac0(protected, unprotected, payload, tag, kid, int.from_bytes(piv, "big"), content_type)
