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

A frame with a calibration column (the id of the calibration record each
measurement was corrected by; ``ProcessedFrame.calibrations``) takes format
2 -- format 1 with the ids among the names and, after the values, n
calibration indexes (0xFF: None) -- or format 3, marshal of the seven
columns.  A frame without one is written exactly as before (formats 0 and
1), and both are read as before: ``unpack`` gives six columns for them and
seven for formats 2 and 3.
"""

from __future__ import annotations

import marshal
import struct

IMPLEMENTATION = "pure"

FORMAT_MARSHAL = 0
FORMAT_COLUMNS = 1
FORMAT_COLUMNS_CALIBRATED = 2
FORMAT_MARSHAL_CALIBRATED = 3
NONE_INDEX = 0xFF
_MARSHAL_VERSION = 0


def pack(channels, times, values, units, quality, reasons, calibrations=None) -> bytes:
    """The stored form of a processed frame's columns (``calibrations``:
    the record id per measurement, or None for a frame without)."""
    n = len(channels)
    fast = n < 65536 and all(type(t) is float for t in times) and all(v is None or type(v) is float for v in values)
    names: dict[str, bytes] = {}  # name -> its UTF-8, in order of first use
    named = (channels, units, reasons) if calibrations is None else (channels, units, reasons, calibrations)
    if fast:
        for column in named:
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
        columns = (tuple(channels), tuple(times), tuple(values), tuple(units), bytes(quality), tuple(reasons))
        if calibrations is None:
            return bytes([FORMAT_MARSHAL]) + marshal.dumps(columns, _MARSHAL_VERSION)
        return bytes([FORMAT_MARSHAL_CALIBRATED]) + marshal.dumps((*columns, tuple(calibrations)), _MARSHAL_VERSION)
    index = {name: i for i, name in enumerate(names)}
    out = bytearray([FORMAT_COLUMNS if calibrations is None else FORMAT_COLUMNS_CALIBRATED])
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
    if calibrations is not None:
        out += bytes(NONE_INDEX if name is None else index[name] for name in calibrations)
    return bytes(out)


def unpack(blob: bytes) -> tuple:
    """(channels, times, values, units, quality, reasons) of a stored
    frame, and its calibrations as a seventh column for formats 2 and 3."""
    if blob[0] == FORMAT_MARSHAL or blob[0] == FORMAT_MARSHAL_CALIBRATED:
        return marshal.loads(blob[1:])
    if blob[0] != FORMAT_COLUMNS and blob[0] != FORMAT_COLUMNS_CALIBRATED:
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
    if blob[0] == FORMAT_COLUMNS_CALIBRATED:
        at += 8 * n
        calibrations = tuple(None if i == NONE_INDEX else names[i] for i in blob[at:at + n])
        return channels, times, values, units, quality, reasons, calibrations
    return channels, times, values, units, quality, reasons
