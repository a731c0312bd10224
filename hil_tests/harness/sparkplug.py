"""Sparkplug B messages seen on a broker, decoded by an independent
implementation (pysparkplug, never the gateway's own code): for the tests
that check the gateway as an edge node.

``SparkplugStream(messages)`` decodes what a ``Subscriber`` on ``spBv1.0/#``
collected, in arrival order; data messages resolve their aliases from the
births before them alone (as a host must).  ``measurements()`` gives every
DDATA metric keyed by (device, metric name, timestamp ms) -- the
deduplication key a Sparkplug consumer has.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pysparkplug as sp
from pysparkplug._protobuf import Payload as RawPayload  # the spec's schema, compiled by pysparkplug

from .broker import Received


@dataclass
class Message:
    topic: str
    kind: str  # "NBIRTH", "DBIRTH", "DDATA", "DDEATH", "NDEATH", "STATE", ...
    group: str | None
    edge_node: str | None
    device: str | None
    qos: int
    retain: bool
    payload: object  # the pysparkplug payload (NBirth, DData, ...) or raw bytes
    raw: RawPayload | None  # the protobuf as pysparkplug's schema reads it (properties included)

    @property
    def seq(self) -> int | None:
        return getattr(self.payload, "seq", None)

    @property
    def metrics(self) -> tuple:
        return getattr(self.payload, "metrics", ())


@dataclass
class Point:
    device: str
    name: str
    timestamp: int
    value: object
    historical: bool
    properties: dict = field(default_factory=dict)


_DECODERS = {
    sp.MessageType.NBIRTH: sp.NBirth, sp.MessageType.DBIRTH: sp.DBirth, sp.MessageType.DDATA: sp.DData,
    sp.MessageType.NDATA: sp.NData, sp.MessageType.DDEATH: sp.DDeath, sp.MessageType.NDEATH: sp.NDeath,
    sp.MessageType.NCMD: sp.NCmd, sp.MessageType.DCMD: sp.DCmd,
}


def properties_of(raw_metric) -> dict:
    """A metric's PropertySet as {key: value} (Int32 as a signed number)."""
    out = {}
    props = raw_metric.properties
    for key, value in zip(props.keys, props.values):
        field_name = value.WhichOneof("value")
        item = getattr(value, field_name) if field_name else None
        if value.type == sp.DataType.INT32 and isinstance(item, int):
            item = item - (1 << 32) if item >= 1 << 31 else item
        out[key] = item
    return out


class SparkplugStream:
    def __init__(self, received: list[Received]) -> None:
        self.messages: list[Message] = []
        births: dict[tuple, sp.DBirth] = {}
        for r in received:
            if r.topic.startswith("spBv1.0/STATE/"):
                self.messages.append(Message(r.topic, "STATE", None, None, None, r.qos, r.retain, r.payload, None))
                continue
            if not r.topic.startswith("spBv1.0/"):
                continue
            topic = sp.Topic.from_str(r.topic)
            kind = str(topic.message_type.value if hasattr(topic.message_type, "value") else topic.message_type)
            decoder = _DECODERS[topic.message_type]
            key = (topic.group_id, topic.edge_node_id, topic.device_id)
            if kind in ("DDATA",):
                birth = births.get(key)
                if birth is None:
                    raise AssertionError(f"{r.topic}: data before any DBIRTH of its device")
                payload = decoder.decode(r.payload, birth=birth)
            else:
                payload = decoder.decode(r.payload)
            if kind == "DBIRTH":
                births[key] = payload
            raw = RawPayload.FromString(r.payload)
            self.messages.append(Message(r.topic, kind, topic.group_id, topic.edge_node_id, topic.device_id, r.qos,
                                         r.retain, payload, raw))

    def of(self, *kinds: str) -> list[Message]:
        return [m for m in self.messages if m.kind in kinds]

    def measurements(self) -> list[Point]:
        out = []
        for message in self.of("DDATA"):
            for metric, raw in zip(message.metrics, message.raw.metrics):
                out.append(Point(message.device, metric.name, metric.timestamp, metric.value, metric.is_historical,
                                 properties_of(raw)))
        return out

    def unique(self) -> dict[tuple, Point]:
        """DDATA points by (device, metric, timestamp): after deduplication."""
        return {(p.device, p.name, p.timestamp): p for p in self.measurements()}
