"""Deterministic CBOR (RFC 8949 §4.2) for the subset SPEC.md uses.

Encoder: unsigned and negative integers, byte and text strings, arrays, maps
(keys sorted by their encoded bytes), tags, false/true/null, and floats in the
shortest of binary16/32/64 that holds the value exactly.  Definite lengths only.
A node writes with the ``write_*`` helpers; ``encode`` (any value) lives in
cbor_encode.py, loaded on first use on MicroPython so a node's heap never
holds it.

Decoder: the same subset, strictly: indefinite lengths, duplicate map keys,
reserved additional information and trailing bytes are errors.  It runs on the
node (ACK and config messages) and is the gateway's reference path.

Runs on MicroPython and CPython alike.
"""

import struct

from .errors import error

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):
        return value


_MAX_DEPTH = const(16)

_NAN_BYTES = b"\xf9\x7e\x00"
_INF_BYTES = b"\xf9\x7c\x00"
_NINF_BYTES = b"\xf9\xfc\x00"


class Tag:
    """A CBOR tag (major type 6) around a value."""

    def __init__(self, tag, value):
        self.tag = tag
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Tag) and self.tag == other.tag and self.value == other.value

    def __repr__(self):
        return "Tag(%d, %r)" % (self.tag, self.value)


# ---------------------------------------------------------------- encoding


def write_head(out, major, n):
    """Append the shortest head for major type ``major`` and argument ``n``."""
    mt = major << 5
    if n < 24:
        out.append(mt | n)
    elif n < 0x100:
        out.append(mt | 24)
        out.append(n)
    elif n < 0x10000:
        out.append(mt | 25)
        out.extend(n.to_bytes(2, "big"))
    elif n < 0x100000000:
        out.append(mt | 26)
        out.extend(n.to_bytes(4, "big"))
    elif n < 0x10000000000000000:
        out.append(mt | 27)
        out.extend(n.to_bytes(8, "big"))
    else:
        raise ValueError("integer out of CBOR range")


def write_int(out, n):
    if n >= 0:
        write_head(out, 0, n)
    else:
        write_head(out, 1, -1 - n)


def write_bytes(out, b):
    write_head(out, 2, len(b))
    out.extend(b)


def write_text(out, s):
    b = s.encode("utf-8")
    write_head(out, 3, len(b))
    out.extend(b)


_FLOAT_BUF = bytearray(8)  # reused: encoding a float allocates nothing


def _mantissa_bits(buf):
    """Significant bits of a binary64's 52-bit fraction (52 minus its
    trailing zero bits), read byte by byte so no big integer is made."""
    zeros = 0
    for i in range(7, 1, -1):
        b = buf[i]
        if b:
            while not b & 1:
                b >>= 1
                zeros += 1
            return 52 - zeros
        zeros += 8
    b = buf[1] & 0x0F
    if not b:
        return 0
    while not b & 1:
        b >>= 1
        zeros += 1
    return 52 - zeros


def write_float(out, x):
    """Shortest exact float encoding (binary16, 32 or 64); NaN and the
    infinities as binary16.  Works on the binary64 bits of ``x`` so boards
    with single-precision floats and the unix port encode alike."""
    buf = _FLOAT_BUF
    struct.pack_into(">d", buf, 0, x)
    sign = buf[0] & 0x80
    biased = ((buf[0] & 0x7F) << 4) | (buf[1] >> 4)
    if biased == 0x7FF:  # NaN or infinity
        if x != x:
            out.extend(_NAN_BYTES)
        else:
            out.extend(_NINF_BYTES if sign else _INF_BYTES)
        return
    sig = _mantissa_bits(buf)
    if biased == 0:
        if sig == 0:  # signed zero
            out.append(0xF9)
            out.append(sign)
            out.append(0)
            return
        e = -2000  # binary64 subnormal: only binary64 holds it
    else:
        e = biased - 1023
    if -24 <= e <= 15 and e - sig >= -24 and (e < -14 or sig <= 10):
        top = ((buf[1] & 0x0F) << 6) | (buf[2] >> 2)  # the fraction's top 10 bits
        if e >= -14:
            half = ((e + 15) << 10) | top
        else:
            half = (1024 | top) >> (-14 - e)
        out.append(0xF9)
        out.append(sign | (half >> 8))
        out.append(half & 0xFF)
        return
    if -149 <= e <= 127 and e - sig >= -149 and (e < -126 or sig <= 23):
        top = ((buf[1] & 0x0F) << 19) | (buf[2] << 11) | (buf[3] << 3) | (buf[4] >> 5)  # 23 bits
        if e >= -126:
            exponent = e + 127
        else:
            exponent = 0
            top = (0x800000 | top) >> (-126 - e)
        out.append(0xFA)
        out.append(sign | (exponent >> 1))
        out.append(((exponent & 1) << 7) | (top >> 16))
        out.append((top >> 8) & 0xFF)
        out.append(top & 0xFF)
        return
    out.append(0xFB)
    out.extend(buf)


# ---------------------------------------------------------------- decoding


def half_to_float(h):
    exp = (h >> 10) & 0x1F
    mant = h & 0x3FF
    if exp == 0:
        value = mant * 5.960464477539063e-08  # 2**-24
    elif exp == 31:
        value = float("inf") if mant == 0 else float("nan")
    else:
        value = (mant + 1024) * (2.0 ** (exp - 25))
    return -value if h & 0x8000 else value


class _Reader:
    """Reads items from ``data``, allocating only the values it returns (a
    node decodes an ACK per frame it sends)."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def skip(self, n):
        """Advance ``n`` bytes; the old position."""
        start = self.pos
        end = start + n
        if end > len(self.data):
            raise error("malformed", "CBOR truncated")
        self.pos = end
        return start

    def take(self, n):
        start = self.skip(n)
        return self.data[start:self.pos]

    def argument(self, info):
        if info < 24:
            return info
        if info > 27:
            if info == 31:
                raise error("malformed", "CBOR indefinite length is not allowed")
            raise error("malformed", "CBOR reserved additional information %d" % info)
        data = self.data
        start = self.skip(1 << (info - 24))  # 1, 2, 4 or 8 bytes, big-endian
        value = 0
        for i in range(start, self.pos):
            value = (value << 8) | data[i]
        return value

    def item(self, depth):
        if depth > _MAX_DEPTH:
            raise error("malformed", "CBOR nested too deep")
        initial = self.data[self.skip(1)]
        major = initial >> 5
        info = initial & 0x1F
        if major == 7:
            return self.simple(info)
        n = self.argument(info)
        if major == 0:
            return n
        if major == 1:
            return -1 - n
        if major == 2:
            return bytes(self.take(n))
        if major == 3:
            try:
                return str(self.take(n), "utf-8")
            except UnicodeError:
                raise error("malformed", "CBOR text string is not UTF-8")
        if major == 4:
            if n > len(self.data) - self.pos:  # each item needs at least a byte
                raise error("malformed", "CBOR truncated")
            result = [None] * n
            for i in range(n):
                result[i] = self.item(depth + 1)
            return result
        if major == 5:
            if 2 * n > len(self.data) - self.pos:
                raise error("malformed", "CBOR truncated")
            result = {}
            for _ in range(n):
                key = self.item(depth + 1)
                if isinstance(key, list) or isinstance(key, dict) or isinstance(key, Tag):
                    raise error("malformed", "CBOR map key must be a scalar")
                if key in result:
                    raise error("malformed", "CBOR map has a duplicate key")
                result[key] = self.item(depth + 1)
            return result
        return Tag(n, self.item(depth + 1))  # major 6

    def simple(self, info):
        if info == 20:
            return False
        if info == 21:
            return True
        if info == 22:
            return None
        if info == 25:
            return half_to_float(self.argument(25))
        if info == 26:
            return struct.unpack(">f", self.take(4))[0]
        if info == 27:
            return struct.unpack(">d", self.take(8))[0]
        raise error("malformed", "CBOR simple value %d is not used by this protocol" % info)


def decode(data):
    """Decode exactly one CBOR item filling ``data``; raises a malformed ProtocolError."""
    reader = _Reader(data)
    value = reader.item(0)
    if reader.pos != len(data):
        raise error("malformed", "CBOR has %d trailing bytes" % (len(data) - reader.pos))
    return value
