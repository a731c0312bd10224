"""SenML packs in CBOR (RFC 8428 §6), as SPEC.md §3 profiles them:
``PackBuilder``, the node side, which writes records straight into CBOR with
the labels in deterministic order, no dicts per record.  The gateway side
(``resolve``, ``Record``) and the public label constants (``BN``, ``V``, ...,
``QUALITY_*``) are in resolve.py, which a node never loads.
"""

import struct

from . import cbor

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):
        return value


# RFC 8428 §6 labels PackBuilder writes (all of them, and the quality names,
# are public in resolve.py: ``resolve.BN``, ...).
# Private consts: a node's heap stores neither their names nor values.
_N = const(0)
_U = const(1)
_V = const(2)
_VS = const(3)
_T = const(6)
_TIME_QUANTUM = const(1024)  # offsets are whole multiples of 2**-10 s
_INF = float("inf")


_SINGLE_BUF = bytearray(4)
_FLOATS_ARE_SINGLE = (1.0 + 2.0**-30) == 1.0  # boards: MicroPython float is binary32


def to_single(x):
    """``x`` rounded to binary32, the precision of a node's readings."""
    if _FLOATS_ARE_SINGLE:
        return x
    struct.pack_into("<f", _SINGLE_BUF, 0, x)
    return struct.unpack_from("<f", _SINGLE_BUF, 0)[0]


def _finite(x):
    return x is not None and x == x and x != _INF and x != -_INF


class PackBuilder:
    """Builds one SenML pack from readings, allocating little: the reading
    slots and the output buffer are made once and reused frame after frame.

    Times are integer milliseconds: Unix-epoch ms once the node's clock is
    synchronised, otherwise the node's monotonic clock (then the pack uses
    SenML relative time).  ``add`` keeps readings; ``encode`` writes the pack
    and resets the builder for the next one.
    """

    def __init__(self, max_records=64):
        self.max_records = max_records
        self.count = 0
        self.names = [None] * max_records
        self.units = [None] * max_records
        self.values = [None] * max_records
        self.times = [0] * max_records
        self.qualities = [None] * max_records
        self._out = bytearray(16 * max_records)

    def __len__(self):
        return self.count

    def add(self, name, unit, value, time_ms, quality=None):
        """A reading.  ``value`` None with ``quality`` set is a fault (the
        sensor gave no value, ``quality`` says why); a value with
        ``quality`` set is uncertain for that reason."""
        i = self.count
        if i >= self.max_records:
            raise ValueError("pack is full")
        value = None if value is None else to_single(value)  # may allocate: before any slot changes
        self.names[i] = name
        self.units[i] = unit
        self.values[i] = value
        self.times[i] = time_ms
        self.qualities[i] = quality
        self.count = i + 1

    def add_text(self, name, text, time_ms):
        """A string-valued record (status packs: firmware version, reset
        cause).  In a data pack a string value means a fault."""
        self.add(name, None, None, time_ms, text)

    def last_time(self):
        return self.times[self.count - 1] if self.count else None

    def map_times(self, convert):
        """Replace every reading's time by ``convert(time)`` (a node that
        synchronised its clock after taking them)."""
        for i in range(self.count):
            self.times[i] = convert(self.times[i])

    def clear(self):
        for i in range(self.count):  # drop references, keep the slots
            self.names[i] = self.units[i] = self.values[i] = self.qualities[i] = None
        self.count = 0

    def _base_unit(self):
        """The commonest unit (ties: the smallest, so every implementation
        picks the same); None when a record has no unit and would wrongly
        inherit it."""
        units = self.units
        best = None
        best_count = 0
        for i in range(self.count):
            unit = units[i]
            if unit is None:
                return None
            if unit == best or units.index(unit) < i:
                continue
            count = 0
            for j in range(i, self.count):
                if units[j] == unit:
                    count += 1
            if count > best_count or (count == best_count and unit < best):
                best, best_count = unit, count
        return best

    def _single_name(self):
        """The channel name when every reading is of one channel, else None."""
        name = self.names[0]
        for i in range(1, self.count):
            if self.names[i] != name:
                return None
        return name

    def _base_value(self):
        """One channel: the first finite reading as base value, so the others
        become small differences binary16 usually holds exactly — provided
        bv + v gives back every reading exactly."""
        if self._single_name() is None:
            return None
        base = None
        for i in range(self.count):
            value = self.values[i]
            if _finite(value):
                if base is None:
                    base = value
                elif (value - base) + base != value:
                    return None
        return base

    def encode(self, now_ms, synced, copy=True):
        """The CBOR pack.  ``now_ms`` is when the frame is built (same clock
        as the readings); with ``synced`` False, times are written relative
        to it and the gateway resolves them (SPEC.md §3.4).

        Gives bytes and empties the builder.  With ``copy`` False it gives
        the builder's own buffer (no copy, valid until the next ``encode``)
        and keeps the readings until ``clear()``: a node clears only once
        the frame is stored, so a failure in between loses nothing."""
        count = self.count
        if not count:
            raise ValueError("empty pack")
        first = self.times[0]
        for i in range(1, count):
            if self.times[i] < first:
                first = self.times[i]
        if synced:
            base_s = first // 1000
            base_ms = base_s * 1000
        else:
            base_s = -((now_ms - first + 999) // 1000)  # whole seconds, <= 0
            base_ms = now_ms + base_s * 1000
        single_name = self._single_name()
        base_unit = self._base_unit()
        base_value = self._base_value()

        out = self._out
        out[:] = b""
        cbor.write_head(out, 4, count)
        for i in range(count):
            unit = self.units[i]
            value = self.values[i]
            quality = self.qualities[i]
            # Offsets in whole 1/1024 s: an integer when whole seconds.
            ticks = (self.times[i] - base_ms) * _TIME_QUANTUM // 1000
            header = i == 0
            fields = 1  # the value (v or vs)
            if single_name is None:
                fields += 1
            if unit is not None and unit != base_unit:
                fields += 1
            if ticks:
                fields += 1
            if header:
                fields += 1  # bt
                if single_name is not None:
                    fields += 1
                if base_unit:
                    fields += 1
                if base_value is not None:
                    fields += 1
            if quality is not None and value is not None:
                fields += 1
            cbor.write_head(out, 5, fields)
            if single_name is None:
                out.append(_N)
                cbor.write_text(out, self.names[i])
            if unit is not None and unit != base_unit:
                out.append(_U)
                cbor.write_text(out, unit)
            if value is None:
                out.append(_VS)
                cbor.write_text(out, quality or "fault")
            else:
                out.append(_V)
                cbor.write_float(out, value - base_value if base_value is not None else value)
            if ticks:
                out.append(_T)
                if ticks % _TIME_QUANTUM:
                    cbor.write_float(out, ticks / _TIME_QUANTUM)
                else:
                    cbor.write_int(out, ticks // _TIME_QUANTUM)
            if header:
                if single_name is not None:
                    out.append(0x21)  # BN (-2)
                    cbor.write_text(out, single_name)
                out.append(0x22)  # BT (-3)
                cbor.write_int(out, base_s)
                if base_unit:
                    out.append(0x23)  # BU (-4)
                    cbor.write_text(out, base_unit)
                if base_value is not None:
                    out.append(0x24)  # BV (-5)
                    cbor.write_float(out, base_value)
            if quality is not None and value is not None:
                cbor.write_text(out, "q")  # the quality label (resolve.Q)
                cbor.write_text(out, quality)
        if not copy:
            return out
        self.clear()
        return bytes(out)
