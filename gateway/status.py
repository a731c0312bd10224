"""What a running gateway can say about itself, read-only: for sinks that
show it (the web console, a health endpoint) and for tools.  Built from the
stages' own figures on every call (cheap: counters and dicts), never a copy
that goes stale."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import native

if TYPE_CHECKING:  # the service builds this; sinks only read it
    from .service import Gateway

VERSION = "0.1.0"


@dataclass(frozen=True, slots=True)
class NodeStatus:
    node: str
    registered: bool  # a key for it is loaded
    last_seen: float | None  # Unix s of its last valid frame, None: never (since start)
    link: str | None  # "udp" / "serial"
    peer: str | None  # UDP address or serial device
    rejects: dict[str, int] = field(default_factory=dict)  # reason -> count since start
    clock_synced: bool | None = None  # its last frame carried absolute times; None: no frame since start
    ever_committed: bool = False  # a frame of it was ever stored (before this start too)


@dataclass(frozen=True, slots=True)
class KeysStatus:
    """The node keys the gateway holds, and whether the file moved on."""

    nodes: int  # keys loaded
    loaded_at: float  # Unix s of the last (re)load
    file_changed: bool  # the key file was modified after that: reload (SIGHUP) to use it


@dataclass(frozen=True, slots=True)
class SinkStatus:
    name: str
    kind: str
    description: str
    durable: bool
    connected: bool
    last_error: str
    cursor: int
    lag_measurements: int
    lag_frames: int
    lag_seconds: float
    messages_sent: int
    messages_confirmed: int
    include: tuple[str, ...] = ()  # what it receives: node/channel patterns
    exclude: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()  # "data", "status"
    down_for: float | None = None  # seconds since it went down, None while up


@dataclass(frozen=True, slots=True)
class ModbusDeviceStatus:
    """One polled instrument (a virtual node named ``name``)."""

    name: str
    transport: str  # "tcp" or "rtu"
    address: str  # host:port or the serial port
    unit: int
    period: float  # seconds between polls
    state: str  # "waiting" (not polled yet), "ok", "failing"
    polls: int
    consecutive_failures: int
    last_poll: float | None  # Unix s
    last_ok: float | None
    last_error: str  # "timeout", "exception-2", ...; "" when none yet
    last_error_at: float | None
    held: str  # why readings are held back ("outbox-full"), "" when not


class GatewayStatus:
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    @property
    def gateway_id(self) -> str:
        return self._gateway.config.gateway_id

    @property
    def version(self) -> str:
        return VERSION

    @property
    def started_at(self) -> float:
        return self._gateway.started_at

    @property
    def uptime(self) -> float:
        return time.time() - self._gateway.started_at

    @property
    def native(self) -> str:
        """"cython" or "pure": which implementation the hot paths run."""
        return native.implementation()

    def outbox(self):
        """OutboxStats (outbox.py)."""
        assert self._gateway.outbox is not None
        return self._gateway.outbox.stats()

    @property
    def storage_full(self) -> bool:
        commit = self._gateway.commit
        return bool(commit and commit.full)

    @property
    def storage_full_reason(self) -> str:
        commit = self._gateway.commit
        return commit.full_reason if commit else ""

    @property
    def frames_refused(self) -> int:
        """Valid frames answered ACK "full" since start."""
        commit = self._gateway.commit
        return commit.refused if commit else 0

    @property
    def outbox_directory(self) -> str:
        import os

        return os.path.dirname(os.path.abspath(self._gateway.config.outbox.path))

    def keys(self) -> KeysStatus:
        gateway = self._gateway
        return KeysStatus(len(gateway.keys), gateway.keys_loaded_at, gateway.key_file_changed())

    @property
    def backlog_frames(self) -> int:
        return self._gateway.backlog.frames

    @property
    def ingest_paused(self) -> bool:
        return self._gateway.backlog.paused

    def steps_for(self, node: str, channel: str) -> list | None:
        """The processing steps configured for a channel (gateway.toml
        ``[channels]``), as tables; None when it passes unprocessed.  Sinks
        show what they imply (OPC UA: a range step's EURange)."""
        return self._gateway.config.steps_for(node, channel)

    def rejects(self) -> dict[str, int]:
        """reason -> frames rejected since start (every sender)."""
        admission = self._gateway.admission
        return dict(admission.rejects_total) if admission else {}

    @property
    def frames_stored(self) -> int:
        """Frames committed so far (the outbox's last frame id: a rate's counter)."""
        outbox = self._gateway.outbox
        return outbox.last_frame_id if outbox is not None else 0

    @property
    def measurements_processed(self) -> int:
        """Measurements processed so far (the last measurement id)."""
        outbox = self._gateway.outbox
        return outbox.last_measurement_id if outbox is not None else 0

    def last_seen(self) -> dict[str, float]:
        """node -> Unix s of its last valid frame (a copy; cheap, for samplers)."""
        admission = self._gateway.admission
        return dict(admission.last_seen) if admission else {}

    def nodes(self) -> list[NodeStatus]:
        """Every registered node, and every node seen, by name."""
        gateway = self._gateway
        admission = gateway.admission
        registered = set(gateway.keys.nodes())
        seen = admission.last_seen if admission else {}
        peers = admission.peers if admission else {}
        rejects = admission.rejects if admission else {}
        synced = admission.clock_synced if admission else {}
        out = []
        for node in sorted(registered | set(seen)):
            link, address = peers.get(node, (None, None))
            peer = None if address is None else (f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address))
            out.append(NodeStatus(node, node in registered, seen.get(node), link, peer, dict(rejects.get(node, {})),
                                  synced.get(node), bool(admission and admission.ever_committed(node))))
        return out

    def modbus_devices(self) -> list[ModbusDeviceStatus]:
        """The configured Modbus instruments with their pollers' state."""
        modbus = self._gateway.config.modbus
        if modbus is None:
            return []
        states = self._gateway.modbus_states
        out = []
        for device in modbus.devices:
            state = states.get(device.name)
            address = f"{device.host}:{device.port}" if device.transport == "tcp" else device.serial_port
            if state is None:  # not started (yet)
                out.append(ModbusDeviceStatus(device.name, device.transport, address, device.unit, device.period,
                                              "waiting", 0, 0, None, None, "", None, ""))
                continue
            out.append(ModbusDeviceStatus(device.name, device.transport, address, device.unit, device.period,
                                          state.state, state.polls, state.consecutive_failures, state.last_poll,
                                          state.last_ok, state.last_error, state.last_error_at, state.held))
        return out

    def chain(self, node: str, channel: str) -> list[dict]:
        """The processing steps a channel goes through, as configured (type
        and parameters, in order); empty when it passes unprocessed."""
        return [dict(step) for step in self._gateway.config.steps_for(node, channel) or ()]

    def calibration(self, node: str) -> dict[str, dict]:
        """Per channel of ``node`` with a calibration record or a counted
        thermocouple life: its calibration now (state, record in force, due
        date, days until overdue) and whether it is past its usage limit.
        Empty when no chain uses calibration records."""
        book = self._gateway.calibration
        if book is None:
            return {}
        out: dict[str, dict] = {}
        for status in book.statuses():
            if status.sensor.node == node:
                out[status.sensor.channel] = {
                    "state": status.state, "record": status.record.id if status.record else None,
                    "due": status.record.due if status.record else None,
                    "due_in_days": status.due_in_days,  # unrounded: the page shows whole days left (floor)
                    "usage_exceeded": False}
        for sensor, usage in book.usage().items():
            if sensor.node == node:
                out.setdefault(sensor.channel, {"state": "none", "record": None, "due": None, "due_in_days": None,
                                                "usage_exceeded": False})["usage_exceeded"] = usage.exceeded
        return out

    def unit_for(self, node: str, channel: str) -> str | None:
        """The unit its chain produces (None: the node's own)."""
        return self._gateway.config.unit_for(node, channel)

    def sinks(self) -> list[SinkStatus]:
        out = []
        now = time.monotonic()
        for loop in self._gateway.loops:
            sink, state = loop.sink, loop.state
            selection = sink.selection
            down_for = None if state.down_since is None else max(0.0, now - state.down_since)
            out.append(SinkStatus(sink.name, sink.kind, sink.description, sink.durable, state.connected,
                                  state.last_error, state.cursor, state.lag_measurements, state.lag_frames,
                                  state.lag_seconds, sink.stats.messages_sent, sink.stats.messages_confirmed,
                                  tuple(selection.include), tuple(selection.exclude), tuple(selection.kinds),
                                  down_for))
        return out
