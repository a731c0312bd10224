"""The pure-Python twin of ``_writer.pyx``: json and senml payloads of a
processed frame, byte for byte what the reference in payload.py writes
(``json_payload``, ``senml_payload``), with the JSON of names and units
cached across frames.  ``untouched(node, channel)`` says which channels pass
unprocessed: their binary32 readings are written at binary32's shortest
(binary32.py).  An unusual row (a non-str name, an unknown value
type) makes the frame go through the reference."""

from __future__ import annotations

import math
from json.encoder import encode_basestring_ascii as _json_str  # what json.dumps uses (ensure_ascii)

from ...binary32 import as_printed
from ...spine import KIND_NAMES, QUALITY_NAMES, ProcessedFrame

IMPLEMENTATION = "pure"

_QUALITY_PART = tuple(f',"quality":"{name}"' for name in QUALITY_NAMES)
_float_repr = float.__repr__  # json.dumps writes floats and ints with their repr
_int_repr = int.__repr__


class _Unusual(Exception):
    """A row the writer does not handle: encode the frame with the reference."""


class PayloadWriter:
    """Payloads from a processed frame's columns."""

    def __init__(self, untouched=None) -> None:
        self._untouched = untouched  # (node, channel) -> True when unprocessed
        self._heads: dict[tuple[str, str], str] = {}  # (node, channel) -> '{"n":"node/channel","t":'
        self._units: dict[str | None, str] = {None: "", "": ""}  # unit -> ',"u":"Cel"'
        # (node, channel, unit) -> (head, unit part, untouched): one look-up per row on the common path
        self._pairs: dict[tuple, tuple[str, str, bool]] = {}
        self._singles: dict[tuple, bool] = {}  # (node, channel) -> untouched, for json

    def _single(self, node: str, channel) -> bool:
        if self._untouched is None:
            return False
        key = (node, channel)
        single = self._singles.get(key)
        if single is None:
            single = bool(self._untouched(node, channel))
            if len(self._singles) < 100_000:  # bounded: names come from nodes
                self._singles[key] = single
        return single

    def senml_payload(self, frame: ProcessedFrame) -> bytes:
        """One SenML-JSON pack for the frame (payload.senml_payload's bytes)."""
        try:
            return self._write(frame)
        except (_Unusual, KeyError, TypeError):
            from .payload import senml_payload

            return senml_payload(list(frame.measurements()), self._untouched)

    def json_payloads(self, frame: ProcessedFrame) -> list[bytes]:
        """One JSON document per measurement (payload.json_payload's bytes)."""
        from .payload import json_payload

        return [json_payload(m, self._single(m.node, m.channel)) for m in frame.measurements()]

    def _pair(self, node: str, channel, unit) -> tuple[str, str, bool]:
        heads, units = self._heads, self._units
        head = heads.get((node, channel))
        if head is None:
            if type(channel) is not str or len(heads) >= 100_000:
                raise _Unusual
            head = heads[(node, channel)] = '{"n":' + _json_str(f"{node}/{channel}") + ',"t":'
        unit_part = units.get(unit)
        if unit_part is None:
            if type(unit) is not str or len(units) >= 10_000:
                raise _Unusual
            unit_part = units[unit] = ',"u":' + _json_str(unit)
        pair = (head, unit_part, self._single(node, channel))
        if len(self._pairs) < 100_000:  # bounded: names come from nodes
            self._pairs[(node, channel, unit)] = pair
        return pair

    def _write(self, frame: ProcessedFrame) -> bytes:
        node, seq, kind = frame.node, frame.seq, KIND_NAMES[frame.kind]
        if type(seq) is not int:
            raise _Unusual
        pairs = self._pairs
        frame_part = ',"node":' + _json_str(node) + ',"seq":' + _int_repr(seq)
        kind_part = "}" if kind == "data" else ',"kind":' + _json_str(kind) + "}"
        good_tail = frame_part + _QUALITY_PART[0] + kind_part
        quality_part = _QUALITY_PART
        parts = []
        add = parts.append
        for channel, time, value, unit, quality, reason in zip(
            frame.channels, frame.times, frame.values, frame.units, frame.quality, frame.reasons
        ):
            pair = pairs.get((node, channel, unit))
            if pair is None:
                pair = self._pair(node, channel, unit)
            if pair[2] and type(value) is float:
                value = as_printed(value)
            # The common row (float time and value, both finite, good, no
            # reason) in one f-string; ``!r`` of an exact float is its repr,
            # as json.dumps writes it.
            if type(time) is float and type(value) is float and quality == 0 and not reason \
                    and not (time - time) and not (value - value):
                add(f'{pair[0]}{time!r}{pair[1]},"v":{value!r}{good_tail}')
                continue
            kind_of = type(time)
            if kind_of is float:
                time_text = "null" if time - time else _float_repr(time)  # NaN or infinite: null
            elif kind_of is int:
                time_text = _int_repr(time)
            else:
                raise _Unusual
            kind_of = type(value)
            if kind_of is float:
                value_part = "" if value - value else ',"v":' + _float_repr(value)
            elif value is None:
                value_part = ""
            elif kind_of is int:
                value_part = ',"v":' + _int_repr(value)
            elif kind_of is bool:
                value_part = ',"vb":true' if value else ',"vb":false'
            elif kind_of is str:
                value_part = ',"vs":' + _json_str(value)
            elif kind_of is bytes:
                value_part = ',"vs":"' + value.hex() + '"'
            else:
                raise _Unusual
            if quality == 0 and not reason:
                tail = quality_part[0]
            elif reason is None:
                tail = quality_part[quality] + ',"reason":null'
            elif type(reason) is str:
                tail = quality_part[quality] + ',"reason":' + _json_str(reason)
            else:
                raise _Unusual
            add(pair[0] + time_text + pair[1] + value_part + frame_part + tail + kind_part)
        if frame.calibrations is not None:
            _stamp_calibrations(parts, frame.calibrations, kind_part)
        return ("[" + ",".join(parts) + "]").encode()


def _stamp_calibrations(parts: list[str], calibrations, kind_part: str) -> None:
    """Insert ``"calibration"`` after each corrected record's reason (before
    its kind), as payload.senml_record does.  Done after the row loop so a
    frame without calibration pays nothing for it."""
    cut = len(kind_part)
    for i, calibration in enumerate(calibrations):
        if calibration is None:
            continue
        if type(calibration) is not str:
            raise _Unusual
        parts[i] = parts[i][:-cut] + ',"calibration":' + _json_str(calibration) + kind_part
