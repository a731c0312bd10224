"""What a route publishes: which measurements it selects, on which topics,
in which payload format.  Pure functions, no I/O, so tests can check them
without a broker.

* ``json``: one message per measurement on ``<prefix>/<node>/<channel>``.
* ``senml``: one message per frame (node, seq) on ``<prefix>/<node>``: a
  resolved SenML-JSON pack (RFC 8428 §4.6: no base fields, absolute names and
  times) whose records carry ``node`` and ``seq`` as extension fields.

``senml_payload`` (dicts through ``json.dumps``) is the reference;
``SenmlWriter`` writes the same bytes straight from the outbox's stored rows,
without a ``Measurement`` or a dict per record, because that encoding was the
largest cost of publishing (docs/benchmarks.md).  ``encode_frames`` is
``encode_batch`` for whole stored frames (``FrameBlock``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fnmatch import fnmatchcase
from json.encoder import encode_basestring_ascii as _json_str  # what json.dumps uses (ensure_ascii)
from typing import Sequence

from ..model import QUALITY_BAD, QUALITY_GOOD, QUALITY_UNCERTAIN, Measurement
from .config import RouteConfig

CONTENT_TYPES = {"json": "application/json", "senml": "application/senml+json"}
_TOPIC_UNSAFE = str.maketrans({"+": "_", "#": "_", "\0": "_"})


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    last_id: int  # the highest outbox id this message carries
    oldest_time: float  # measurement time of its oldest reading, for lag


class Selector:
    """A route's agreement: kinds, then include minus exclude over "node/channel"."""

    def __init__(self, route: RouteConfig) -> None:
        self._include = route.include
        self._exclude = route.exclude
        self._kinds = frozenset(route.kinds)
        self._cache: dict[tuple[str, str, str], bool] = {}

    def __call__(self, m: Measurement) -> bool:
        return self.allows(m.node, m.channel, m.kind)

    def allows(self, node: str, channel: str, kind: str) -> bool:
        key = (node, channel, kind)
        hit = self._cache.get(key)
        if hit is None:
            path = f"{node}/{channel}"
            hit = (
                kind in self._kinds
                and any(fnmatchcase(path, p) for p in self._include)
                and not any(fnmatchcase(path, p) for p in self._exclude)
            )
            if len(self._cache) < 100_000:  # bounded: names come from nodes
                self._cache[key] = hit
        return hit


def topic_part(name: str) -> str:
    """A node or channel name made safe as a topic level (no wildcards)."""
    return name.translate(_TOPIC_UNSAFE)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/Infinity
    return value


def json_payload(m: Measurement) -> bytes:
    doc = {
        "node": m.node,
        "seq": m.seq,
        "channel": m.channel,
        "time": m.time,
        "value": _finite(m.value),
        "unit": m.unit,
        "quality": m.quality,
        "reason": m.reason,
        "kind": m.kind,
    }
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


def senml_record(m: Measurement) -> dict:
    record: dict = {"n": f"{m.node}/{m.channel}", "t": m.time}
    if m.unit:
        record["u"] = m.unit
    value = _finite(m.value)
    if isinstance(value, bool):
        record["vb"] = value
    elif isinstance(value, str):
        record["vs"] = value
    elif value is not None:
        record["v"] = value
    record["node"] = m.node
    record["seq"] = m.seq
    record["quality"] = m.quality
    if m.quality != QUALITY_GOOD or m.reason:
        record["reason"] = m.reason
    if m.kind != "data":
        record["kind"] = m.kind
    return record


def senml_payload(frame: Sequence[Measurement]) -> bytes:
    return json.dumps([senml_record(m) for m in frame], separators=(",", ":"), allow_nan=False).encode()


def encode_batch(
    route: RouteConfig, select: Selector, batch: Sequence[Measurement], more: bool
) -> tuple[list[Message], int]:
    """The messages for ``batch`` (ascending ids) and the id up to which the
    batch is consumed.  With ``more`` (the batch hit its limit), the senml
    format holds back the batch's last frame, which may continue in the next
    read, unless that frame is the whole batch."""
    prefix = route.topic_prefix
    if route.format == "json":
        messages = [
            Message(f"{prefix}/{topic_part(m.node)}/{topic_part(m.channel)}", json_payload(m), m.id, m.time)
            for m in batch
            if select(m)
        ]
        return messages, batch[-1].id

    frames: list[list[Measurement]] = []
    for m in batch:
        if frames and frames[-1][0].node == m.node and frames[-1][0].seq == m.seq:
            frames[-1].append(m)
        else:
            frames.append([m])
    if more and len(frames) > 1:
        frames.pop()
        consumed = frames[-1][-1].id
    else:
        consumed = batch[-1].id
    messages = []
    for frame in frames:
        chosen = [m for m in frame if select(m)]
        if chosen:
            messages.append(
                Message(
                    f"{prefix}/{topic_part(frame[0].node)}",
                    senml_payload(chosen),
                    frame[-1].id,
                    min(m.time for m in chosen),
                )
            )
    return messages, consumed


# ---------------------------------------------------------------- stored frames


@dataclass(slots=True)
class FrameBlock:
    """One stored frame's measurements after a read position: ids
    ``first_id``, ``first_id + 1``, ... in row order.  Each row is
    (channel, time, value, unit, quality, reason); quality is a name or its
    outbox code (0 good, 1 uncertain, 2 bad)."""

    first_id: int
    node: str
    seq: int
    kind: str
    rows: Sequence[tuple]

    @property
    def last_id(self) -> int:
        return self.first_id + len(self.rows) - 1


_QUALITY_NAME = {QUALITY_GOOD: QUALITY_GOOD, QUALITY_UNCERTAIN: QUALITY_UNCERTAIN, QUALITY_BAD: QUALITY_BAD,
                 0: QUALITY_GOOD, 1: QUALITY_UNCERTAIN, 2: QUALITY_BAD}
_QUALITY_PART = {q: f',"quality":"{n}"' for q, n in _QUALITY_NAME.items()}
_GOOD_CODES = frozenset((QUALITY_GOOD, 0))
_float_repr = float.__repr__  # json.dumps writes floats and ints with their repr
_int_repr = int.__repr__


class _Unusual(Exception):
    """A row the writer does not handle: encode the frame with the reference."""


class SenmlWriter:
    """``senml_payload``'s bytes from stored rows, with the JSON of names and
    units cached across frames."""

    def __init__(self) -> None:
        self._heads: dict[tuple[str, str], str] = {}  # (node, channel) -> '{"n":"node/channel","t":'
        self._units: dict[str | None, str] = {None: "", "": ""}  # unit -> ',"u":"Cel"'
        # (node, channel, unit) -> (head, unit part): one look-up per row on the common path
        self._pairs: dict[tuple, tuple[str, str]] = {}

    def payload(self, node: str, seq: int, kind: str, rows: Sequence[tuple]) -> bytes:
        try:
            return self._write(node, seq, kind, rows)
        except (_Unusual, KeyError, TypeError):
            return senml_payload([_measurement(node, seq, kind, row) for row in rows])

    def _pair(self, node: str, channel, unit) -> tuple[str, str]:
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
        pair = (head, unit_part)
        if len(self._pairs) < 100_000:  # bounded: names come from nodes
            self._pairs[(node, channel, unit)] = pair
        return pair

    def _write(self, node: str, seq: int, kind: str, rows: Sequence[tuple]) -> bytes:
        if type(seq) is not int or type(kind) is not str:
            raise _Unusual
        pairs = self._pairs
        frame_part = ',"node":' + _json_str(node) + ',"seq":' + _int_repr(seq)
        kind_part = "}" if kind == "data" else ',"kind":' + _json_str(kind) + "}"
        good_tail = frame_part + _QUALITY_PART[0] + kind_part
        quality_part, good = _QUALITY_PART, _GOOD_CODES
        parts = []
        add = parts.append
        for channel, time, value, unit, quality, reason in rows:
            pair = pairs.get((node, channel, unit))
            if pair is None:
                pair = self._pair(node, channel, unit)
            # The common row (float time and value, both finite, good, no
            # reason) in one f-string; ``!r`` of an exact float is its repr,
            # as json.dumps writes it.
            if type(time) is float and type(value) is float and quality in good and not reason \
                    and not (time - time) and not (value - value):
                add(f'{pair[0]}{time!r}{pair[1]},"v":{value!r}{good_tail}')
                continue
            kind_of = type(time)
            if kind_of is float:
                if time - time:  # NaN or infinite: json.dumps refuses it
                    raise _Unusual
                time_text = _float_repr(time)
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
            if quality in good and not reason:
                tail = quality_part[quality]
            elif reason is None:
                tail = quality_part[quality] + ',"reason":null'
            elif type(reason) is str:
                tail = quality_part[quality] + ',"reason":' + _json_str(reason)
            else:
                raise _Unusual
            add(pair[0] + time_text + pair[1] + value_part + frame_part + tail + kind_part)
        return ("[" + ",".join(parts) + "]").encode()


def _measurement(node: str, seq: int, kind: str, row: tuple, id_: int = 0) -> Measurement:
    channel, time, value, unit, quality, reason = row
    if type(value) is bytes:
        value = value.hex()
    return Measurement(id_, node, seq, channel, time, value, unit, _QUALITY_NAME.get(quality, quality), reason, kind)


def encode_frames(
    route: RouteConfig, select: Selector, blocks: Sequence[FrameBlock], writer: SenmlWriter | None = None
) -> list[Message]:
    """The messages for whole stored frames, ``encode_batch``'s result for
    them.  The json format goes through ``encode_batch`` (one message per
    measurement: the per-record work is the payload anyway)."""
    if route.format == "json":
        batch = [
            _measurement(b.node, b.seq, b.kind, row, b.first_id + i) for b in blocks for i, row in enumerate(b.rows)
        ]
        return encode_batch(route, select, batch, more=False)[0] if batch else []
    writer = writer or SenmlWriter()
    prefix = route.topic_prefix
    allows = select.allows
    messages = []
    for block in blocks:
        node, kind, rows = block.node, block.kind, block.rows
        channels = {row[0] for row in rows}
        chosen_channels = {c for c in channels if allows(node, c, kind)}
        if not chosen_channels:
            continue
        chosen = rows if len(chosen_channels) == len(channels) else [r for r in rows if r[0] in chosen_channels]
        messages.append(
            Message(
                f"{prefix}/{topic_part(node)}",
                writer.payload(node, block.seq, kind, chosen),
                block.last_id,
                min(row[1] for row in chosen),
            )
        )
    return messages
