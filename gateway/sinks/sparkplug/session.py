"""The Sparkplug B edge node session, sans-IO: processed frames and events in,
MQTT messages (topic, payload, QoS, retain) out.  No sockets, no clocks --
times are passed in -- so every rule of the spec can be tested without a
broker (h11's discipline); ``sink.py`` does the I/O.

What it keeps (Eclipse Sparkplug 3.0.0 §5, §6):

* ``bdSeq``: one per MQTT connection, 0..255 wrapping; the NDEATH will of
  the connection and its NBIRTHs carry the same value.
* ``seq``: 0 in every NBIRTH, then +1 (mod 256) for every message of the
  edge node (DBIRTH, DDATA, DDEATH); the NDEATH carries none.
* devices: one per sensor node (and Modbus virtual node), born (DBIRTH)
  before its first DDATA in a session, again when a channel appears, a
  value changes type or a unit changes; dead (DDEATH) after
  ``device_timeout`` without a frame, born again when it returns.
* aliases: one per (device, channel), unique across the edge node and
  stable for the process' lifetime; births declare name and alias, data
  carries the alias only.
* metric properties: ``engUnit`` (String) in births; ``Quality`` (Int32,
  Ignition's quality codes) and ``qualityReason`` (String) on any value
  that is not good, and on the first good value after one that was not;
  ``calibration`` (String) on a value a calibration record corrected: the
  record's id (docs/processing.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter

from ...quality import BAD, GOOD, QUALITY_NAMES, UNCERTAIN
from ...spine import ProcessedFrame
from . import schema

NAMESPACE = "spBv1.0"
BD_SEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
SOFTWARE = "Properties/Software"

NBIRTH, NDEATH, DBIRTH, DDEATH, DDATA = "NBIRTH", "NDEATH", "DBIRTH", "DDEATH", "DDATA"

# Ignition 8's QualityCode levels (the top two bits: 00 good, 01 uncertain,
# 10 bad), which Ignition-style hosts read from a metric's "Quality" property.
QUALITY_PROPERTY = "Quality"
REASON_PROPERTY = "qualityReason"
UNIT_PROPERTY = "engUnit"
CALIBRATION_PROPERTY = "calibration"
QUALITY_CODES = {GOOD: 192, UNCERTAIN: 0x40000000, BAD: 0x80000000}  # Int32, two's complement on the wire

_TYPE_OF = {float: schema.DOUBLE, int: schema.INT64, bool: schema.BOOLEAN, str: schema.STRING, bytes: schema.BYTES}
_ID_UNSAFE = str.maketrans({"+": "_", "/": "_", "#": "_", "\0": "_"})
_U64 = (1 << 64) - 1
_SIGNATURES_KEPT = 256  # per device: frames' shapes known to need no new birth
_row_time = itemgetter(0)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One MQTT message the session wants published."""

    kind: str  # NBIRTH, DBIRTH, DDATA, DDEATH (NDEATH: the will, or a clean stop)
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    device: str | None = None
    measurements: int = 0  # DDATA: the measurements it carries


@dataclass(slots=True)
class MetricSpec:
    """What a device's birth declared for one channel."""

    alias: int
    datatype: int
    unit: str | None


@dataclass(slots=True)
class Device:
    device_id: str
    node: str
    metrics: dict[str, MetricSpec] = field(default_factory=dict)
    born: bool = False  # a DBIRTH in the current session
    last_heard: float = 0.0  # arrival (Unix s) of its newest frame delivered
    last: dict[str, tuple] = field(default_factory=dict)  # channel -> (value, time ms, quality, reason), newest
    flagged: set[str] = field(default_factory=set)  # channels whose last value sent was not good
    signatures: set[tuple] = field(default_factory=set)  # (channels, units, value types) already declared


def device_id_of(node: str) -> str:
    """A node name as a Sparkplug device id (no + / #: §4.1.6)."""
    return node.translate(_ID_UNSAFE) or "_"


def datatype_of(value) -> int | None:
    """The Sparkplug datatype of a processed value (None for no value)."""
    return _TYPE_OF.get(type(value))


def _accepts(declared: int, datatype: int | None) -> bool:
    """Can a metric declared ``declared`` carry a value of ``datatype``
    without a new birth?  An integer fits a Double (readings switch between
    20 and 20.5); anything else must match."""
    return datatype is None or datatype == declared or (declared == schema.DOUBLE and datatype == schema.INT64)


def _set_value(metric, datatype: int, value) -> None:
    """The value in the metric's declared type; null when there is none (a
    fault) -- or when it does not fit, which only a channel changing type
    twice within one frame can cause."""
    kind = type(value)
    if datatype == schema.DOUBLE and kind is int:
        value, kind = float(value), float
    if value is None or _TYPE_OF.get(kind) != datatype:
        metric.is_null = True
    elif datatype == schema.DOUBLE:
        metric.double_value = value  # NaN and infinities are doubles too: Sparkplug carries them
    elif datatype == schema.INT64:
        metric.long_value = value & _U64  # two's complement in the unsigned field (§6.4.16)
    elif datatype == schema.BOOLEAN:
        metric.boolean_value = value
    elif datatype == schema.STRING:
        metric.string_value = value
    else:
        metric.bytes_value = value


def _add_property(properties, key: str, datatype: int, value) -> None:
    properties.keys.append(key)
    item = properties.values.add()
    item.type = datatype
    if datatype == schema.INT32:
        item.int_value = value & 0xFFFFFFFF
    else:
        item.string_value = value


def _ms(seconds: float) -> int:
    """Unix s -> Sparkplug ms (uint64); a time that is not finite becomes 0."""
    return int(round(seconds * 1000.0)) if math.isfinite(seconds) and seconds > 0 else 0


class EdgeSession:
    """One edge node: ``connect()`` per MQTT connection (its will),
    ``birth()`` once connected (and on a rebirth request), then ``data()``
    for each delivery, ``deaths()`` now and then; ``command()`` reads an NCMD,
    ``host_state()`` a primary host's STATE."""

    def __init__(self, group_id: str, edge_node_id: str, last_bd_seq: int | None = None,
                 software: str = "") -> None:
        self.group_id = group_id
        self.edge_node_id = edge_node_id
        self.software = software
        self.bd_seq = -1 if last_bd_seq is None else last_bd_seq % 256  # of the current connection
        self.seq = 0  # the next message's
        self.devices: dict[str, Device] = {}  # by node name
        self._device_ids: dict[str, str] = {}  # device id -> node, to keep ids unique
        self._next_alias = 1
        self._host_timestamp: int | None = None
        prefix = f"{NAMESPACE}/{group_id}/"
        self.ncmd_topic = f"{prefix}NCMD/{edge_node_id}"
        self._node_topics = {kind: f"{prefix}{kind}/{edge_node_id}" for kind in (NBIRTH, NDEATH)}
        self._device_prefix = {kind: f"{prefix}{kind}/{edge_node_id}/" for kind in (DBIRTH, DDEATH, DDATA)}

    # ------------------------------------------------------------ the node

    def connect(self, now_ms: int) -> Outgoing:
        """A new MQTT connection: the next bdSeq, and the NDEATH to register as
        its will (QoS 1, not retained: §6.4.2; no seq: tck-id-topics-ndeath-seq)."""
        self.bd_seq = (self.bd_seq + 1) % 256
        for device in self.devices.values():
            device.born = False
        return self.node_death(now_ms)

    def node_death(self, now_ms: int) -> Outgoing:
        payload = schema.Payload(timestamp=now_ms)
        metric = payload.metrics.add(name=BD_SEQ, timestamp=now_ms, datatype=schema.INT64)
        metric.long_value = self.bd_seq
        return Outgoing(NDEATH, self._node_topics[NDEATH], payload.SerializeToString(), qos=1)

    def birth(self, now_ms: int) -> list[Outgoing]:
        """NBIRTH (seq 0) and a DBIRTH for every device that is alive: the
        start of a session, or the answer to a rebirth request (same bdSeq:
        the connection is the same)."""
        self.seq = 0
        alive = [device for device in self.devices.values() if device.born]
        payload = schema.Payload(timestamp=now_ms, seq=self._next_seq())
        bd_seq = payload.metrics.add(name=BD_SEQ, timestamp=now_ms, datatype=schema.INT64)
        bd_seq.long_value = self.bd_seq
        payload.metrics.add(name=REBIRTH, timestamp=now_ms, datatype=schema.BOOLEAN, boolean_value=False)
        if self.software:
            payload.metrics.add(name=SOFTWARE, timestamp=now_ms, datatype=schema.STRING, string_value=self.software)
        out = [Outgoing(NBIRTH, self._node_topics[NBIRTH], payload.SerializeToString())]
        for device in self.devices.values():
            device.born = False
        # a rebirth repeats the DBIRTH of every device alive; after connect()
        # none is, and each is born again before its next DDATA
        out.extend(self._device_birth(device, now_ms) for device in alive)
        return out

    def command(self, payload: bytes) -> bool:
        """True when an NCMD asks for a rebirth ('Node Control/Rebirth' =
        true, §5.14); other writes are ignored: this edge node's metrics are
        read-only."""
        try:
            message = schema.Payload.FromString(payload)
        except Exception:  # noqa: BLE001 - a malformed command is ignored, never fatal
            return False
        return any(m.name == REBIRTH and m.WhichOneof("value") == "boolean_value" and m.boolean_value
                   for m in message.metrics)

    def host_state(self, payload: bytes) -> bool | None:
        """A primary host's STATE (§6.4.5: JSON {"online": bool, "timestamp":
        ms}; the 2.2 texts ONLINE/OFFLINE are understood too): True online,
        False offline, None for one older than the newest seen (a late will
        must not take the host offline again) or unreadable."""
        text = payload.decode("utf-8", "replace").strip()
        if text in ("ONLINE", "OFFLINE"):
            return text == "ONLINE"
        try:
            doc = json.loads(text)
            online, timestamp = doc["online"], doc.get("timestamp")
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(online, bool):
            return None
        if isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool):
            if self._host_timestamp is not None and timestamp < self._host_timestamp:
                return None
            self._host_timestamp = int(timestamp)
        return online

    # ------------------------------------------------------------ devices

    def data(self, frames: Sequence[ProcessedFrame], now_ms: int, live_after: int) -> list[Outgoing]:
        """The messages for one delivery: per device (in order of first
        appearance) a DBIRTH when it needs one, then one DDATA holding its
        measurements of these frames, oldest first -- split where a frame
        needs a new birth (a new channel, type or unit), so that every DDATA
        uses only what the DBIRTH before it declared.  A measurement whose id
        is at most ``live_after`` was stored before this session came up: it
        goes out with ``is_historical``."""
        by_node: dict[str, list[ProcessedFrame]] = {}
        for frame in frames:
            by_node.setdefault(frame.node, []).append(frame)
        out: list[Outgoing] = []
        for node, group in by_node.items():
            device = self._device(node)
            rows: list[tuple] = []
            for frame in group:
                if self._learn(device, frame) or not device.born:
                    if rows:
                        out.append(self._device_data(device, rows, now_ms))
                        rows = []
                    out.append(self._device_birth(device, now_ms))
                self._rows(device, frame, live_after, rows)
            if rows:
                out.append(self._device_data(device, rows, now_ms))
        return out

    def deaths(self, now: float, timeout: float) -> list[Outgoing]:
        """DDEATH for every born device not heard from for ``timeout`` s."""
        if timeout <= 0:
            return []
        return [self.device_death(device, _ms(now)) for device in self.devices.values()
                if device.born and now - device.last_heard > timeout]

    def device_death(self, device: Device, now_ms: int) -> Outgoing:
        device.born = False
        payload = schema.Payload(timestamp=now_ms, seq=self._next_seq())
        return Outgoing(DDEATH, self._device_prefix[DDEATH] + device.device_id, payload.SerializeToString(),
                        device=device.device_id)

    def _device(self, node: str) -> Device:
        device = self.devices.get(node)
        if device is None:
            device_id = base = device_id_of(node)
            n = 1
            while device_id in self._device_ids:  # two names made alike by the reserved characters
                n += 1
                device_id = f"{base}~{n}"
            self._device_ids[device_id] = node
            device = self.devices[node] = Device(device_id, node)
        return device

    def _learn(self, device: Device, frame: ProcessedFrame) -> bool:
        """Declare every channel of ``frame``; True when the device's birth
        no longer describes it (a new channel, a new type, a new unit).

        A node sends the same channels, units and value types frame after
        frame: their signature, once checked, skips the per-channel loop (it
        was a third of the encoder's time)."""
        signature = (tuple(frame.channels), tuple(frame.units), tuple(map(type, frame.values)))
        known = device.signatures
        if signature in known:
            return False
        changed = self._learn_channels(device, frame)
        if changed or len(known) >= _SIGNATURES_KEPT:
            known.clear()  # a widened type or a new unit makes old verdicts stale
        known.add(signature)
        return changed

    def _learn_channels(self, device: Device, frame: ProcessedFrame) -> bool:
        metrics = device.metrics
        changed = False
        for channel, value, unit in zip(frame.channels, frame.values, frame.units):
            spec = metrics.get(channel)
            datatype = datatype_of(value)
            if spec is None:
                metrics[channel] = MetricSpec(self._alias(), datatype or schema.DOUBLE, unit)
                changed = True
            elif not _accepts(spec.datatype, datatype):
                # Int64 -> Double keeps every value; any other change is a new type
                spec.datatype = schema.DOUBLE if datatype in (schema.INT64, schema.DOUBLE) \
                    and spec.datatype in (schema.INT64, schema.DOUBLE) else datatype
                changed = True
            elif unit != spec.unit and unit is not None:
                spec.unit = unit
                changed = True
        return changed

    def _alias(self) -> int:
        alias = self._next_alias
        self._next_alias += 1
        return alias

    def _device_birth(self, device: Device, now_ms: int) -> Outgoing:
        """DBIRTH: every metric with name, alias, datatype, unit, and its last
        known value (null before the first one: the value arrives in DDATA)."""
        payload = schema.Payload(timestamp=now_ms, seq=self._next_seq())
        for channel, spec in device.metrics.items():
            metric = payload.metrics.add(name=channel, alias=spec.alias, datatype=spec.datatype)
            last = device.last.get(channel)
            if last is None:
                metric.timestamp = now_ms
                metric.is_null = True
            else:
                value, time_ms, quality, reason = last
                metric.timestamp = time_ms
                _set_value(metric, spec.datatype, value)
            if spec.unit or (last is not None and last[2] != GOOD):
                properties = metric.properties
                if spec.unit:
                    _add_property(properties, UNIT_PROPERTY, schema.STRING, spec.unit)
                if last is not None and last[2] != GOOD:
                    _add_property(properties, QUALITY_PROPERTY, schema.INT32, QUALITY_CODES[last[2]])
                    _add_property(properties, REASON_PROPERTY, schema.STRING, last[3] or QUALITY_NAMES[last[2]])
        device.born = True
        return Outgoing(DBIRTH, self._device_prefix[DBIRTH] + device.device_id, payload.SerializeToString(),
                        device=device.device_id)

    @staticmethod
    def _rows(device: Device, frame: ProcessedFrame, live_after: int, rows: list[tuple]) -> None:
        """The frame's measurements as DDATA rows (time ms, channel, its
        spec, value, quality, reason, historical, calibration); remembers each channel's
        latest value (for the next birth) and when the node was last heard.
        Column-wise, with the loops in C: this runs for every measurement."""
        if frame.received > device.last_heard:
            device.last_heard = frame.received
        channels, values, quality, reasons = frame.channels, frame.values, frame.quality, frame.reasons
        try:
            stamps = [round(t * 1000.0) for t in frame.times]
            if stamps and min(stamps) < 0:
                raise ValueError("before 1970")
        except (OverflowError, ValueError):  # a time that is not finite, or negative
            stamps = [_ms(t) for t in frame.times]
        if frame.last_id <= live_after or frame.first_id > live_after:
            historical = repeat(frame.last_id <= live_after)
        else:  # the frame straddles the start of the session
            historical = [frame.id_of(i) <= live_after for i in range(len(channels))]
        calibrations = frame.calibrations if frame.calibrations is not None else repeat(None)
        rows.extend(zip(stamps, channels, map(device.metrics.__getitem__, channels), values, quality, reasons,
                        historical, calibrations))
        device.last.update(zip(channels, zip(values, stamps, quality, reasons)))

    def _device_data(self, device: Device, rows: list[tuple], now_ms: int) -> Outgoing:
        """DDATA: measurements by alias, oldest first (§6.4.21 asks
        chronological order of live metrics; frames come in storage order,
        which is not always time order across nodes' restarts)."""
        rows.sort(key=_row_time)
        payload = schema.Payload(timestamp=now_ms, seq=self._next_seq())
        add, flagged, double = payload.metrics.add, device.flagged, schema.DOUBLE
        for time_ms, channel, spec, value, code, reason, historical, calibration in rows:
            metric = add(alias=spec.alias, timestamp=time_ms)
            if historical:
                metric.is_historical = True
            if type(value) is float and spec.datatype == double:
                metric.double_value = value
            else:
                _set_value(metric, spec.datatype, value)
            if code:
                properties = metric.properties
                _add_property(properties, QUALITY_PROPERTY, schema.INT32, QUALITY_CODES[code])
                _add_property(properties, REASON_PROPERTY, schema.STRING, reason or QUALITY_NAMES[code])
                flagged.add(channel)
            elif flagged and channel in flagged:
                flagged.discard(channel)  # good again: say so, or a host would keep the old verdict
                _add_property(metric.properties, QUALITY_PROPERTY, schema.INT32, QUALITY_CODES[GOOD])
            if calibration is not None:
                _add_property(metric.properties, CALIBRATION_PROPERTY, schema.STRING, calibration)
        return Outgoing(DDATA, self._device_prefix[DDATA] + device.device_id, payload.SerializeToString(),
                        device=device.device_id, measurements=len(rows))

    def _next_seq(self) -> int:
        seq = self.seq
        self.seq = (seq + 1) % 256
        return seq


