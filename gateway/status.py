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

    def nodes(self) -> list[NodeStatus]:
        """Every registered node, and every node seen, by name."""
        gateway = self._gateway
        admission = gateway.admission
        registered = set(gateway.keys.nodes())
        seen = admission.last_seen if admission else {}
        peers = admission.peers if admission else {}
        rejects = admission.rejects if admission else {}
        out = []
        for node in sorted(registered | set(seen)):
            link, address = peers.get(node, (None, None))
            peer = None if address is None else (f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address))
            out.append(NodeStatus(node, node in registered, seen.get(node), link, peer, dict(rejects.get(node, {}))))
        return out

    def sinks(self) -> list[SinkStatus]:
        out = []
        for loop in self._gateway.loops:
            sink, state = loop.sink, loop.state
            out.append(SinkStatus(sink.name, sink.kind, sink.description, sink.durable, state.connected,
                                  state.last_error, state.cursor, state.lag_measurements, state.lag_frames,
                                  state.lag_seconds, sink.stats.messages_sent, sink.stats.messages_confirmed))
        return out
