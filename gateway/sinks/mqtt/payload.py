"""What an MQTT sink publishes: topics and payloads for processed frames.
Pure functions and a writer with caches, no I/O, so tests can check them
without a broker.

* ``json``: one message per measurement on ``<prefix>/<node>/<channel>``.
* ``senml``: one message per frame (node, seq) on ``<prefix>/<node>``: a
  resolved SenML-JSON pack (RFC 8428 §4.6: no base fields, absolute names and
  times) whose records carry ``node`` and ``seq`` as extension fields.

A measurement a calibration record corrected carries the record's id as
``calibration`` (in both formats, after ``reason``); others have no such
field, so payloads without calibration are what they always were.

A reading of a channel without processing chain (``untouched(node,
channel)`` true) that is exactly a binary32 is written as the shortest
decimal that round-trips at binary32, the precision it travelled in
(``binary32.py``); processed values keep binary64's repr.

``json_payload`` and ``senml_payload`` (dicts through ``json.dumps``) are the
reference.  The writers write the same bytes straight from a processed
frame's columns, without a ``Measurement`` or a dict per record, because
that encoding was the largest cost of publishing (docs/benchmarks.md):
``_writer.pyx`` compiled, ``writer.py`` its pure-Python twin, chosen like
every twin (``native.py``); ``PayloadWriter`` is the one in use.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _json_str  # what json.dumps uses (ensure_ascii)
from typing import Sequence

from ... import native
from ...binary32 import as_printed
from ...spine import QUALITY_GOOD, Measurement, ProcessedFrame

CONTENT_TYPES = {"json": "application/json", "senml": "application/senml+json"}
_TOPIC_UNSAFE = str.maketrans({"+": "_", "#": "_", "\0": "_"})


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes


def topic_part(name: str) -> str:
    """A node or channel name made safe as a topic level (no wildcards)."""
    return name.translate(_TOPIC_UNSAFE)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/Infinity
    return value


def _travelled(value, single: bool):
    """The value as written: an untouched binary32 reading at its own precision."""
    return as_printed(value) if single and type(value) is float else value


def json_payload(m: Measurement, single: bool = False) -> bytes:
    """``single``: the value is an unprocessed reading (binary32 when exact)."""
    doc = {
        "node": m.node,
        "seq": m.seq,
        "channel": m.channel,
        "time": _finite(m.time),
        "value": _finite(_travelled(m.value, single)),
        "unit": m.unit,
        "quality": m.quality,
        "reason": m.reason,
    }
    if m.calibration is not None:  # the calibration record that corrected the value (only then)
        doc["calibration"] = m.calibration
    doc["kind"] = m.kind
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


def senml_record(m: Measurement, single: bool = False) -> dict:
    record: dict = {"n": f"{m.node}/{m.channel}", "t": _finite(m.time)}  # an overflowed time: null, never a stuck route
    if m.unit:
        record["u"] = m.unit
    value = _finite(_travelled(m.value, single))
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
    if m.calibration is not None:
        record["calibration"] = m.calibration
    if m.kind != "data":
        record["kind"] = m.kind
    return record


def senml_payload(frame: Sequence[Measurement], untouched=None) -> bytes:
    """``untouched(node, channel)``: whether that channel passes unprocessed."""
    return json.dumps([senml_record(m, untouched is not None and bool(untouched(m.node, m.channel))) for m in frame],
                      separators=(",", ":"), allow_nan=False).encode()


def load_writer(name: str | None = None):
    """The writer module by name ("cython", "pure") or the one in use."""
    return native.load("smemet.gateway.sinks.mqtt._writer", "smemet.gateway.sinks.mqtt.writer", name)


PayloadWriter = load_writer().PayloadWriter


def senml_topic(prefix: str, node: str) -> str:
    """Where a ``senml`` sink publishes ``node``'s frames."""
    return f"{prefix}/{topic_part(node)}"


def messages_of(fmt: str, prefix: str, frame: ProcessedFrame, writer) -> list[Message]:
    """The messages for one (selected) processed frame."""
    if fmt == "json":
        node = topic_part(frame.node)
        return [
            Message(f"{prefix}/{node}/{topic_part(channel)}", payload)
            for channel, payload in zip(frame.channels, writer.json_payloads(frame))
        ]
    return [Message(senml_topic(prefix, frame.node), writer.senml_payload(frame))]


