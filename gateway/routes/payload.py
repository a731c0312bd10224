"""What a route publishes: which measurements it selects, on which topics,
in which payload format.  Pure functions, no I/O, so tests can check them
without a broker.

* ``json``: one message per measurement on ``<prefix>/<node>/<channel>``.
* ``senml``: one message per frame (node, seq) on ``<prefix>/<node>``: a
  resolved SenML-JSON pack (RFC 8428 §4.6: no base fields, absolute names and
  times) whose records carry ``node`` and ``seq`` as extension fields.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Sequence

from ..model import QUALITY_GOOD, Measurement
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
        key = (m.node, m.channel, m.kind)
        hit = self._cache.get(key)
        if hit is None:
            path = f"{m.node}/{m.channel}"
            hit = (
                m.kind in self._kinds
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
