"""How the outbox stores a processed frame's columns: the pure-Python twin
of ``_frame_codec.pyx`` (same bytes, same frames back; test_frame_codec.py).

Format 1, for the common frame -- float times, values that are floats or
missing, at most 255 distinct names (channels, units and reasons together):

    0x01, n (u16), k (u8), k names (u16 length + UTF-8),
    n channel indexes (u8), n unit indexes, n reason indexes (0xFF: None),
    n quality codes, ceil(n / 8) bytes of "no value" bits (little-endian bit order),
    n times (binary64, little-endian), n values (binary64; 0.0 where missing)

Any other frame (text, booleans, integers, byte strings, more names):
format 0, ``0x00`` followed by marshal (version 0: no reference or interning
flags, so the bytes depend on the values alone) of the six columns.  marshal
for every frame cost more than the SQLite insert it feeds
(docs/benchmarks.md).
"""

from __future__ import annotations

import marshal
import struct

IMPLEMENTATION = "pure"

FORMAT_MARSHAL = 0
FORMAT_COLUMNS = 1
NONE_INDEX = 0xFF
_MARSHAL_VERSION = 0


def pack(channels, times, values, units, quality, reasons) -> bytes:
    """The stored form of a processed frame's columns."""
    n = len(channels)
    fast = n < 65536 and all(type(t) is float for t in times) and all(v is None or type(v) is float for v in values)
    names: dict[str, bytes] = {}  # name -> its UTF-8, in order of first use
    if fast:
        for column in (channels, units, reasons):
            for name in column:
                if name is None:
                    continue
                if type(name) is not str:
                    fast = False
                    break
                if name not in names:
                    names[name] = name.encode("utf-8")
                    if len(names[name]) > 65535:
                        fast = False
                        break
            if not fast:
                break
        fast = fast and len(names) < NONE_INDEX
    if not fast:
        return bytes([FORMAT_MARSHAL]) + marshal.dumps(
            (tuple(channels), tuple(times), tuple(values), tuple(units), bytes(quality), tuple(reasons)),
            _MARSHAL_VERSION,
        )
    index = {name: i for i, name in enumerate(names)}
    out = bytearray([FORMAT_COLUMNS])
    out += struct.pack("<HB", n, len(names))
    for encoded in names.values():
        out += struct.pack("<H", len(encoded)) + encoded
    for column in (channels, units, reasons):
        out += bytes(NONE_INDEX if name is None else index[name] for name in column)
    out += bytes(quality)
    missing = bytearray((n + 7) // 8)
    for i, value in enumerate(values):
        if value is None:
            missing[i >> 3] |= 1 << (i & 7)
    out += missing
    out += struct.pack(f"<{n}d", *times)
    out += struct.pack(f"<{n}d", *(0.0 if v is None else v for v in values))
    return bytes(out)


def unpack(blob: bytes) -> tuple:
    """(channels, times, values, units, quality, reasons) of a stored frame."""
    if blob[0] == FORMAT_MARSHAL:
        return marshal.loads(blob[1:])
    if blob[0] != FORMAT_COLUMNS:
        raise ValueError(f"unknown processed-frame format {blob[0]}")
    n, k = struct.unpack_from("<HB", blob, 1)
    at = 4
    names = []
    for _ in range(k):
        (length,) = struct.unpack_from("<H", blob, at)
        names.append(blob[at + 2:at + 2 + length].decode("utf-8"))
        at += 2 + length
    columns = []
    for _ in range(3):
        columns.append(tuple(None if i == NONE_INDEX else names[i] for i in blob[at:at + n]))
        at += n
    quality = bytes(blob[at:at + n])
    at += n
    missing = blob[at:at + (n + 7) // 8]
    at += (n + 7) // 8
    times = struct.unpack_from(f"<{n}d", blob, at)
    at += 8 * n
    raw_values = struct.unpack_from(f"<{n}d", blob, at)
    values = tuple(None if missing[i >> 3] >> (i & 7) & 1 else raw_values[i] for i in range(n))
    channels, units, reasons = columns
    return channels, times, values, units, quality, reasons
