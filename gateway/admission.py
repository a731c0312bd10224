"""Admission: the first stage, on the event loop, for every frame a link
receives.  Size and structure, the node's key and MAC, the replay book, the
payload: a frame leaves here rejected (counted by reason, logged at a
bounded rate), ACKed again (a retransmission), refused (storage full: ACK
status "full", the node keeps it) or admitted for the next commit.
``handle`` never raises for bad input."""

from __future__ import annotations

import logging
import time
from typing import Protocol

from smemet.protocol import messages
from smemet.protocol.errors import ProtocolError, error

from . import opener
from .acks import ACK_OK, Acker
from .commit import GroupCommit
from .keys import NODE_ID
from .logs import RateLimiter
from .metrics import GatewayMetrics
from .replay import Admitted, ReplayBook, Verdict

log = logging.getLogger("smemet.gateway.admission")
UNKNOWN_NAMES = 256


class Link(Protocol):
    """Where a frame came from and its ACK goes back to."""

    name: str

    def send(self, data: bytes, address) -> None: ...


class Admission:
    def __init__(self, book: ReplayBook, commit: GroupCommit, key_for, acker: Acker, metrics: GatewayMetrics,
                 clock=time.time) -> None:
        self._book = book
        self._commit = commit
        self._key_for = key_for
        self._acker = acker
        self._metrics = metrics
        self._clock = clock
        self._log_limit = RateLimiter(10.0)
        # Counted in plain dicts, read by the metrics when scraped: a
        # prometheus inc()/set() per frame (a lock each) showed in profiles.
        self._received: dict[str, int] = {}  # link -> frames
        self._rejected: dict[str, object] = {}  # metric children, cached
        self._last_seen_at: dict[str, float] = {}
        metrics.live_counter("frames_received", "Frames received, by link", "link", lambda: self._received)
        metrics.live_gauge("node_last_seen_timestamp_seconds", "When a node's last valid frame arrived", "node",
                           lambda: self._last_seen_at)
        self._peer: dict[str, tuple[str, object]] = {}
        self._synced: dict[str, bool] = {}
        self.rejects: dict[str, dict[str, int]] = {}  # registered node -> reason -> count
        self.rejects_total: dict[str, int] = {}  # reason -> count, every sender
        # Frames from nodes without a key, by the id they claim (a node whose
        # key was added but not loaded shows here), for at most
        # UNKNOWN_NAMES names: anyone can send any id.
        self.unknown: dict[str, int] = {}
        metrics.live_counter("unknown_node_frames", "Frames rejected as unknown-node, by the node id they claim "
                             f"(the first {UNKNOWN_NAMES} ids)", "node", lambda: self.unknown)

    @property
    def last_seen(self) -> dict[str, float]:
        """node -> when its last valid frame arrived (Unix s)."""
        return self._last_seen_at

    @property
    def peers(self) -> dict[str, tuple[str, object]]:
        """node -> (link name, address) its last valid frame came from."""
        return self._peer

    @property
    def clock_synced(self) -> dict[str, bool]:
        """node -> whether its last valid frame carried absolute times (a
        node sends an age only with relative times, before its clock syncs)."""
        return self._synced

    def ever_committed(self, node: str) -> bool:
        """Whether a frame of ``node`` was ever stored (its replay window
        exists), also before this start."""
        return node in self._book.windows

    def handle(self, frame: bytes, link: Link, address) -> None:
        """One frame from ``link``."""
        now = self._clock()
        received = self._received
        received[link.name] = received.get(link.name, 0) + 1
        header = None
        try:
            header = opener.read_header(frame)
            opener.authenticate(header, self._key_for)
        except ProtocolError as exc:
            self._reject(exc, link, address, getattr(exc, "node", None), header)
            return
        kid, seq = header.kid, header.seq
        node = messages.node_name(kid)
        verdict, waiting = self._book.classify(node, seq, header.tag)
        if verdict is Verdict.STORED:
            self._metrics.frames_duplicate.inc()
            self._acker.send(kid, [seq], ACK_OK, [(link, address)])
            return
        if verdict is Verdict.REUSED:
            self._reject(error("replayed", f"sequence number {seq} was already used by another frame"), link, address, node)
            return
        if verdict is Verdict.TOO_OLD:
            self._reject(error("replayed", f"sequence number {seq} is below the replay window"), link, address, node)
            return
        if verdict is Verdict.WAITING:  # retransmitted before its commit: ACKed with the original
            self._metrics.frames_duplicate.inc()
            if (link, address) not in waiting.replies:
                waiting.replies.append((link, address))
            return
        try:
            opened = opener.decode(frame, header, now)
        except ProtocolError as exc:
            self._reject(exc, link, address, node)
            return
        self._seen(node, now, link, address, header.age_ms is None)
        self._commit.admit(Admitted(opened, [(link, address)]))

    def _seen(self, node: str, now: float, link: Link, address, synced: bool) -> None:
        self._last_seen_at[node] = now
        self._peer[node] = (link.name, address)
        self._synced[node] = synced

    def _reject(self, exc: ProtocolError, link: Link, address, node: str | None, header=None) -> None:
        counter = self._rejected.get(exc.reason)
        if counter is None:
            counter = self._rejected[exc.reason] = self._metrics.frames_rejected.labels(exc.reason)
        counter.inc()
        self.rejects_total[exc.reason] = self.rejects_total.get(exc.reason, 0) + 1
        if node is not None and self._key_for(node.encode()) is not None:  # registered nodes only: bounded labels
            self._metrics.node_frames_rejected.labels(node, exc.reason).inc()
            per_node = self.rejects.setdefault(node, {})
            per_node[exc.reason] = per_node.get(exc.reason, 0) + 1
        elif exc.reason == "unknown-node" and header is not None:
            claimed = messages.node_name(header.kid)
            if claimed in self.unknown or (len(self.unknown) < UNKNOWN_NAMES and NODE_ID.match(claimed)):
                self.unknown[claimed] = self.unknown.get(claimed, 0) + 1
        allowed, suppressed = self._log_limit.allow(exc.reason)
        if allowed:
            log.warning(
                "frame rejected",
                extra={"reason": exc.reason, "detail": str(exc), "link": link.name, "peer": _peer(address),
                       "node": node or "-", "suppressed": suppressed},
            )


def _peer(address) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)
