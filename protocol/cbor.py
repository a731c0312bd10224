"""Deterministic CBOR (RFC 8949 §4.2) for the subset SPEC.md uses.

Encoder: unsigned and negative integers, byte and text strings, arrays, maps
(keys sorted by their encoded bytes), tags, false/true/null, and floats in the
shortest of binary16/32/64 that holds the value exactly.  Definite lengths only.

Decoder: the same subset, strictly: indefinite lengths, duplicate map keys,
reserved additional information and trailing bytes are errors.  It runs on the
node (ACK and config messages) and is the gateway's reference path.

Runs on MicroPython and CPython alike.
"""

import struct

from .errors import MalformedFrame

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):
        return value


_MAX_DEPTH = const(16)

_INF = float("inf")
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


def _half_bits(single_bits):
    """binary16 bits for a binary32 value, or None when binary16 cannot hold
    it exactly.  (MicroPython's struct has no 'e' format.)"""
    sign = (single_bits >> 16) & 0x8000
    exp = (single_bits >> 23) & 0xFF
    mant = single_bits & 0x7FFFFF
    if exp == 0:
        return sign if mant == 0 else None  # binary32 subnormals are far below binary16
    e = exp - 127
    if -14 <= e <= 15:
        if mant & 0x1FFF:
            return None
        return sign | ((e + 15) << 10) | (mant >> 13)
    if -24 <= e < -14:  # binary16 subnormal: k * 2**-24
        full = mant | 0x800000
        shift = 13 + (-14 - e)
        if full & ((1 << shift) - 1):
            return None
        return sign | (full >> shift)
    return None


def write_float(out, x):
    """Shortest exact float encoding; NaN and infinities as binary16."""
    if x != x:
        out.extend(_NAN_BYTES)
        return
    if x == _INF or x == -_INF:
        out.extend(_INF_BYTES if x > 0 else _NINF_BYTES)
        return
    single = struct.pack(">f", x) if -3.4028234663852886e38 <= x <= 3.4028234663852886e38 else None
    if single is not None and struct.unpack(">f", single)[0] == x:
        half = _half_bits(int.from_bytes(single, "big"))
        if half is not None:
            out.append(0xF9)
            out.extend(half.to_bytes(2, "big"))
        else:
            out.append(0xFA)
            out.extend(single)
        return
    out.append(0xFB)
    out.extend(struct.pack(">d", x))


def _write(out, obj, depth):
    if depth > _MAX_DEPTH:
        raise ValueError("nesting too deep")
    if obj is True:
        out.append(0xF5)
    elif obj is False:
        out.append(0xF4)
    elif obj is None:
        out.append(0xF6)
    elif isinstance(obj, int):
        write_int(out, obj)
    elif isinstance(obj, float):
        write_float(out, obj)
    elif isinstance(obj, str):
        write_text(out, obj)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        write_bytes(out, bytes(obj))
    elif isinstance(obj, (list, tuple)):
        write_head(out, 4, len(obj))
        for item in obj:
            _write(out, item, depth + 1)
    elif isinstance(obj, dict):
        # Deterministic order: bytewise order of the encoded keys (§4.2.1).
        entries = []
        for key in obj:
            kb = bytearray()
            _write(kb, key, depth + 1)
            entries.append((bytes(kb), key))
        entries.sort()
        write_head(out, 5, len(entries))
        for kb, key in entries:
            out.extend(kb)
            _write(out, obj[key], depth + 1)
    elif isinstance(obj, Tag):
        write_head(out, 6, obj.tag)
        _write(out, obj.value, depth + 1)
    else:
        raise TypeError("cannot encode %r as CBOR" % (type(obj),))


def encode(obj):
    """Deterministically encoded CBOR bytes of ``obj``."""
    out = bytearray()
    _write(out, obj, 0)
    return bytes(out)


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
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        start = self.pos
        end = start + n
        if end > len(self.data):
            raise MalformedFrame("CBOR truncated")
        self.pos = end
        return self.data[start:end]

    def argument(self, info):
        if info < 24:
            return info
        if info == 24:
            return self.take(1)[0]
        if info == 25:
            return int.from_bytes(self.take(2), "big")
        if info == 26:
            return int.from_bytes(self.take(4), "big")
        if info == 27:
            return int.from_bytes(self.take(8), "big")
        if info == 31:
            raise MalformedFrame("CBOR indefinite length is not allowed")
        raise MalformedFrame("CBOR reserved additional information %d" % info)

    def item(self, depth):
        if depth > _MAX_DEPTH:
            raise MalformedFrame("CBOR nested too deep")
        initial = self.take(1)[0]
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
                raise MalformedFrame("CBOR text string is not UTF-8")
        if major == 4:
            if n > len(self.data) - self.pos:  # each item needs at least a byte
                raise MalformedFrame("CBOR truncated")
            return [self.item(depth + 1) for _ in range(n)]
        if major == 5:
            if 2 * n > len(self.data) - self.pos:
                raise MalformedFrame("CBOR truncated")
            result = {}
            for _ in range(n):
                key = self.item(depth + 1)
                if isinstance(key, (list, dict)):
                    raise MalformedFrame("CBOR map key must be a scalar")
                if key in result:
                    raise MalformedFrame("CBOR map has a duplicate key")
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
            return half_to_float(int.from_bytes(self.take(2), "big"))
        if info == 26:
            return struct.unpack(">f", self.take(4))[0]
        if info == 27:
            return struct.unpack(">d", self.take(8))[0]
        raise MalformedFrame("CBOR simple value %d is not used by this protocol" % info)


def decode(data):
    """Decode exactly one CBOR item filling ``data``; raises MalformedFrame."""
    reader = _Reader(data)
    value = reader.item(0)
    if reader.pos != len(data):
        raise MalformedFrame("CBOR has %d trailing bytes" % (len(data) - reader.pos))
    return value
