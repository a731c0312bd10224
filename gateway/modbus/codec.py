"""Registers <-> values, and the plan of read requests for a register map.

Pure functions, no I/O: the poller and the server call them, the tests
check them against pymodbus' own conversions.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from .config import MAX_READ, TYPES, RegisterSpec


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: ``count`` registers of ``table`` from ``address``,
    covering the channels in ``members``."""

    table: str
    address: int
    count: int
    members: tuple[RegisterSpec, ...]


def plan_reads(registers: tuple[RegisterSpec, ...] | list[RegisterSpec],
               max_registers: int = MAX_READ, merge_gap: int = 0) -> list[ReadBlock]:
    """Merge the channels of a map into as few requests as the map allows.

    Channels of one table whose registers touch or overlap share a request;
    ``merge_gap`` unused registers may be spanned too (some instruments
    refuse reads of undefined registers, so the default is 0); no request
    exceeds ``max_registers``.
    """
    blocks: list[ReadBlock] = []
    for table in ("holding", "input"):
        regs = sorted((r for r in registers if r.table == table), key=lambda r: (r.address, r.count))
        start = end = -1
        members: list[RegisterSpec] = []
        for reg in regs:
            reg_end = reg.address + reg.count
            if members and reg.address <= end + merge_gap and max(end, reg_end) - start <= max_registers:
                members.append(reg)
                end = max(end, reg_end)
                continue
            if members:
                blocks.append(ReadBlock(table, start, end - start, tuple(members)))
            start, end, members = reg.address, reg_end, [reg]
        if members:
            blocks.append(ReadBlock(table, start, end - start, tuple(members)))
    return blocks


def decode(spec: RegisterSpec, words: list[int] | tuple[int, ...]) -> float:
    """The engineering value of ``spec`` from its raw registers (scale and offset applied)."""
    if spec.word_order == "little":
        words = list(reversed(words))
    raw = b"".join(w.to_bytes(2, "big") for w in words)
    if spec.byte_order == "little":
        raw = _swap_bytes(raw)
    value = struct.unpack(">" + TYPES[spec.type][1], raw)[0]
    return value * spec.scale + spec.offset


def encode(spec: RegisterSpec, value: float) -> list[int]:
    """The raw registers an instrument holds for the engineering ``value``
    (the inverse of ``decode``; used by the simulated instruments)."""
    raw_value = (value - spec.offset) / spec.scale
    fmt = TYPES[spec.type][1]
    if fmt not in "fd":
        raw_value = int(round(raw_value))
    raw = struct.pack(">" + fmt, raw_value)
    if spec.byte_order == "little":
        raw = _swap_bytes(raw)
    words = [int.from_bytes(raw[i:i + 2], "big") for i in range(0, len(raw), 2)]
    if spec.word_order == "little":
        words.reverse()
    return words


def float32_words(value: float) -> tuple[int, int]:
    """A float32 as two registers, high word first (the server's map).
    Values beyond float32 saturate to +-inf; NaN stays NaN."""
    if math.isfinite(value) and abs(value) > 3.4028234663852886e38:
        value = math.copysign(math.inf, value)
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return hi, lo


def _swap_bytes(raw: bytes) -> bytes:
    """Swap the two bytes inside every register (byte_order = "little")."""
    return bytes(raw[i ^ 1] for i in range(len(raw)))
