"""From a frame on a link to an ACK and measurement rows.

``Pipeline.handle`` runs on the event loop for every frame a link receives:
verify (fast path), classify against the node's replay window, decode, queue.
A committer task stores queued frames in groups (one transaction, one fsync)
on the outbox's writer thread, then moves the replay windows, ACKs every frame
of the group on the link it came from, and hands the group to processing.
Processing runs on the same writer thread, in commit order.

A retransmission of a committed frame is re-ACKed and goes no further; one of
a frame still waiting for its commit is ACKed with it.  When the outbox is
full, valid new frames are answered ACK_FULL and not stored.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from smemet.protocol import cose, gateway_side, messages
from smemet.protocol.errors import ProtocolError
from smemet.protocol.error_classes import Replayed
from smemet.protocol.window import NEW, SEEN

from . import fastpath, virtual
from .acks import Acker
from .config import OutboxConfig
from .logs import RateLimiter
from .metrics import GatewayMetrics
from .errors import OutboxError, OutboxFull
from .outbox import FrameRow, Outbox
from .windows import TaggedWindow
from .processing import STATUS_STORE_DEPTH, Processor

log = logging.getLogger("smemet.gateway.pipeline")
SWITCH_INTERVAL = 0.0005  # seconds; see Pipeline.start
# At most this many frames are run through the chains again at start (~1.5 s
# at 32 readings a frame): a very busy gateway warms up on the newest ones.
WARMUP_MAX_FRAMES = 20000


class Link(Protocol):
    """Where a frame came from and its ACK goes back to."""

    name: str

    def send(self, data: bytes, address) -> None: ...


def _tag_of(frame: bytes) -> bytes:
    """The MAC tag of a verified frame: its last 8 bytes (the final bstr)."""
    return frame[-cose.MAC_LEN:]


@dataclass(slots=True)
class _Pending:
    opened: fastpath.Opened
    received: float
    replies: list = field(default_factory=list)  # (link, address)
    done: asyncio.Future | None = None  # a virtual node's submit() waits on it


class Pipeline:
    def __init__(
        self,
        outbox: Outbox,
        key_for,
        processor: Processor,
        metrics: GatewayMetrics,
        config: OutboxConfig,
        clock=time.time,
        latest=None,
    ) -> None:
        self.outbox = outbox
        self.key_for = key_for
        self.processor = processor
        self.metrics = metrics
        self.config = config
        self.clock = clock
        self.acker = Acker(key_for, clock)
        self.latest = latest  # LatestValues for the Modbus server, or None
        self.windows: dict[str, TaggedWindow] = outbox.load_windows()
        self.full = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-writer")
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._inflight: dict[tuple[str, int], _Pending] = {}
        self._processing: deque[tuple[int, list[fastpath.Opened]]] = deque()
        self._commit_wakeup = asyncio.Event()
        self._process_wakeup = asyncio.Event()
        self._closing = False
        self._tasks: list[asyncio.Task] = []
        self._log_limit = RateLimiter(10.0)
        self._received = {}
        self._last_seen = {}  # node -> its node_last_seen gauge (labels() per frame showed in profiles)
        self._rejected = {}
        self._acks_sent = {}
        self._last_full_log = 0.0
        self._virtual_next: dict[str, int] = {}

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Process what a previous run committed but did not process, then
        start the committer and the processor."""
        # The writer thread and the event loop pass the GIL back and forth for
        # every commit; CPython's default 5 ms switch interval made each
        # hand-over wait up to 5 ms, which showed up directly in latency.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
        await self.run_in_writer(self._recover)
        self.outbox.notify()
        self.full = await self.run_in_writer(self.outbox.is_full)
        self._set_full(self.full)
        self._tasks = [
            asyncio.create_task(self._commit_loop(), name="group commit"),
            asyncio.create_task(self._process_loop(), name="processing"),
        ]

    async def drain(self) -> None:
        """Commit and ACK what is queued, process everything committed, stop."""
        self._closing = True
        self._commit_wakeup.set()
        self._process_wakeup.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def run_in_writer(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    # ------------------------------------------------------------ ingest (event loop)

    def handle(self, frame: bytes, link: Link, address) -> None:
        """One frame from ``link``; never raises for bad input."""
        now = self.clock()
        counter = self._received.get(link.name)
        if counter is None:
            counter = self._received[link.name] = self.metrics.frames_received.labels(link.name)
        counter.inc()
        try:
            header = fastpath.verify(frame, self.key_for)
        except ProtocolError as exc:
            self._reject(exc, link, address, None)
            return
        node = messages.node_name(header.kid)
        seq = header.seq
        window = self.windows.get(node)
        state = window.check(seq) if window is not None else NEW
        if state != NEW:
            # Only the very frame we stored is ACKed again (the node missed
            # its ACK).  Another frame reusing the number must not be ACKed:
            # the node would delete data we never stored (SPEC.md §5.3).
            stored = window.tag_of(seq) if state == SEEN else self.outbox.frame_tag(node, seq)
            if stored == header.tag:
                self.metrics.frames_duplicate.inc()
                self._send_acks(header.kid, [seq], gateway_side.ACK_OK, [(link, address)])
            elif state == SEEN:
                self._reject(Replayed(f"sequence number {seq} was already used by another frame"), link, address, node)
            else:
                self._reject(Replayed(f"sequence number {seq} is below the replay window"), link, address, node)
            return
        key = (node, seq)
        waiting = self._pending.get(key) or self._inflight.get(key)
        if waiting is not None and _tag_of(waiting.opened.frame) != header.tag:
            self._reject(Replayed(f"sequence number {seq} was already used by another frame"), link, address, node)
            return
        if waiting is not None:  # retransmitted before its commit: ACK it with the original
            self.metrics.frames_duplicate.inc()
            if (link, address) not in waiting.replies:
                waiting.replies.append((link, address))
            return
        try:
            opened = fastpath.decode(frame, header, now)
        except ProtocolError as exc:
            self._reject(exc, link, address, node)
            return
        seen = self._last_seen.get(node)
        if seen is None:
            seen = self._last_seen[node] = self.metrics.node_last_seen.labels(node)
        seen.set(now)
        if self._closing:  # not ACKed: the node retransmits to the next run
            return
        if self.full:
            self._refuse_full(header.kid, [(link, address)])
            return
        self._pending[key] = _Pending(opened, now, [(link, address)])
        if len(self._pending) == 1 or len(self._pending) >= self.config.commit_max_frames:
            self._commit_wakeup.set()

    def _reject(self, exc: ProtocolError, link: Link, address, node: str | None) -> None:
        counter = self._rejected.get(exc.reason)
        if counter is None:
            counter = self._rejected[exc.reason] = self.metrics.frames_rejected.labels(exc.reason)
        counter.inc()
        node = node or getattr(exc, "node", None)  # registered nodes only: bounded labels
        if node is not None:
            self.metrics.node_frames_rejected.labels(node, exc.reason).inc()
        allowed, suppressed = self._log_limit.allow(exc.reason)
        if allowed:
            log.warning(
                "frame rejected",
                extra={"reason": exc.reason, "detail": str(exc), "link": link.name, "peer": _peer(address),
                       "node": node or "-", "suppressed": suppressed},
            )

    def _refuse_full(self, kid: bytes, replies) -> None:
        self.metrics.frames_refused_full.inc()
        self._send_acks(kid, [], messages.ACK_FULL, replies)
        now = time.monotonic()
        if now - self._last_full_log >= 10.0:
            self._last_full_log = now
            log.error(
                "outbox full: refusing frames (nodes keep them); free space or raise [outbox] max_bytes",
                extra={"path": self.outbox.path, "max_bytes": self.outbox.max_bytes},
            )

    def _send_acks(self, kid: bytes, seqs: list[int], status: int, replies) -> None:
        try:
            frames = self.acker.frames(kid, seqs, status)
        except Exception:  # noqa: BLE001 - a bug here must not stop the committer; nodes retransmit
            log.exception("cannot build ACK", extra={"node": messages.node_name(kid)})
            return
        for link, address in replies:
            for data in frames:
                try:
                    link.send(data, address)
                except OSError as exc:  # a link that just went away: the node retransmits
                    log.debug("ACK not sent", extra={"link": link.name, "error": str(exc)})
        counter = self._acks_sent.get(status)
        if counter is None:
            counter = self._acks_sent[status] = self.metrics.acks_sent.labels("ok" if status == gateway_side.ACK_OK else "full")
        counter.inc(len(frames) * len(replies))

    def _set_full(self, full: bool) -> None:
        if full != self.full:
            if full:
                log.error("outbox full: new frames are refused until space is freed", extra={"path": self.outbox.path})
            else:
                log.warning("outbox has space again: accepting frames", extra={"path": self.outbox.path})
        self.full = full
        self.metrics.storage_full.set(1 if full else 0)

    # ------------------------------------------------------------ group commit

    async def _commit_loop(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._commit_wakeup.clear()
                await self._commit_wakeup.wait()
                if not self._pending:
                    continue
                if len(self._pending) < self.config.commit_max_frames and not self._closing:
                    await asyncio.sleep(self.config.commit_max_delay)  # let the group fill
            await self._commit_group()

    async def _commit_group(self) -> None:
        batch: list[_Pending] = []
        limit = self.config.commit_max_frames
        for key in list(self._pending)[:limit]:
            entry = self._pending.pop(key)
            self._inflight[key] = entry
            batch.append(entry)
        moved: dict[str, TaggedWindow] = {}
        for entry in batch:
            node = entry.opened.node
            window = moved.get(node)
            if window is None:
                live = self.windows.get(node)
                window = moved[node] = live.copy() if live else TaggedWindow()
            window.accept(entry.opened.seq, _tag_of(entry.opened.frame))
        rows = [FrameRow(e.opened.node, e.opened.seq, e.opened.content_type, e.received, e.opened.frame) for e in batch]
        started = time.perf_counter()
        try:
            last_id = await self.run_in_writer(self.outbox.commit_frames, rows, list(moved.items()))
        except OutboxFull as exc:
            self._set_full(True)
            for entry in batch:
                del self._inflight[(entry.opened.node, entry.opened.seq)]
                if entry.done is not None:
                    self._fail(entry, OutboxFull(str(exc)))
                else:
                    self._refuse_full(entry.opened.kid, entry.replies)
            return
        except sqlite3.IntegrityError:  # already stored (cannot happen while windows and frames agree)
            self._split_stored(batch)
            return
        except Exception:  # noqa: BLE001 - a database failure must not stop ingest; nodes retransmit
            log.exception("group commit failed; frames not ACKed (nodes will retransmit)", extra={"frames": len(batch)})
            for entry in batch:
                del self._inflight[(entry.opened.node, entry.opened.seq)]
                self._fail(entry, OutboxError("the outbox could not commit; see the gateway log"))
            await asyncio.sleep(0.5)
            return
        self.metrics.commit_seconds.observe(time.perf_counter() - started)
        self.metrics.commit_frames.observe(len(batch))
        self.metrics.frames_accepted.inc(len(batch))
        self.windows.update(moved)
        first_id = last_id - len(batch) + 1
        for offset, entry in enumerate(batch):
            entry.opened.frame_id = first_id + offset
        acks: dict[tuple, list[int]] = {}
        for entry in batch:
            del self._inflight[(entry.opened.node, entry.opened.seq)]
            for link, address in entry.replies:
                acks.setdefault((entry.opened.kid, link, address), []).append(entry.opened.seq)
        for (kid, link, address), seqs in acks.items():
            self._send_acks(kid, seqs, gateway_side.ACK_OK, [(link, address)])
        for entry in batch:
            if entry.done is not None and not entry.done.done():
                entry.done.set_result(entry.opened.seq)
        self._processing.append((last_id, [e.opened for e in batch]))
        self._process_wakeup.set()

    def _fail(self, entry: _Pending, exc: Exception) -> None:
        if entry.done is not None and not entry.done.done():
            entry.done.set_exception(exc)
        if entry.done is not None and entry.opened.node in self._virtual_next:
            del self._virtual_next[entry.opened.node]  # recompute from the persisted window next time

    # ------------------------------------------------------------ virtual nodes (ReadingSink)

    async def submit(self, node: str, readings) -> int:
        """``ReadingSink.submit``: commit a virtual node's readings (a Modbus
        device) durably, as frames of their own; returns the sequence number
        of the last frame.  Raises OutboxFull when the outbox is full (the
        caller keeps the readings and retries)."""
        if not readings:
            raise ValueError("no readings to submit")
        if self.key_for(node.encode()) is not None:
            raise ValueError(f"virtual node {node!r} has the name of a keyed node; rename the device")
        if self.full:
            raise OutboxFull(f"outbox full ({self.outbox.path}); keep the readings and retry")
        if self._closing:
            raise OutboxError("the gateway is stopping")
        now = self.clock()
        waits = []
        for frame in virtual.frames(node, readings, self._next_virtual_seq):
            header = fastpath.read_header(frame)
            assert header is not None
            opened = fastpath.decode(frame, header, now)
            future = asyncio.get_running_loop().create_future()
            self._pending[(node, opened.seq)] = _Pending(opened, now, [], future)
            waits.append(future)
        self._commit_wakeup.set()
        results = await asyncio.gather(*waits, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results[-1]

    def _next_virtual_seq(self, node: str) -> int:
        seq = self._virtual_next.get(node)
        if seq is None:
            window = self.windows.get(node)
            seq = window.highest + 1 if window is not None else 1
        self._virtual_next[node] = seq + 1
        return seq

    def _split_stored(self, batch: list[_Pending]) -> None:
        """A group hit (node, seq) UNIQUE: re-ACK the frames already stored,
        queue the others again."""
        log.error("group commit met frames already stored; re-ACKing them", extra={"frames": len(batch)})
        for entry in batch:
            key = (entry.opened.node, entry.opened.seq)
            del self._inflight[key]
            if self.outbox.has_frame(*key):
                self.metrics.frames_duplicate.inc()
                self._send_acks(entry.opened.kid, [entry.opened.seq], gateway_side.ACK_OK, entry.replies)
            else:
                self._pending[key] = entry
        self._commit_wakeup.set()

    # ------------------------------------------------------------ processing

    async def _process_loop(self) -> None:
        while True:
            if not self._processing:
                if self._closing and all(t.done() for t in self._tasks[:1]):
                    return
                self._process_wakeup.clear()
                try:
                    await asyncio.wait_for(self._process_wakeup.wait(), 0.5 if self._closing else None)
                except TimeoutError:
                    pass
                continue
            frames: list[fastpath.Opened] = []
            last_id = 0
            while self._processing and (not frames or len(frames) + len(self._processing[0][1]) <= self.config.process_batch_frames):
                last_id, batch = self._processing.popleft()
                frames.extend(batch)
            try:
                count = await self.run_in_writer(self._process, frames, last_id)
            except Exception:  # noqa: BLE001 - the frames stay committed; try them again
                log.exception("processing failed; retrying (the frames stay in the outbox)",
                              extra={"frames": len(frames), "last_frame_id": last_id})
                if self._closing:
                    return  # the next start processes them (they are after the processing cursor)
                self._processing.appendleft((last_id, frames))
                await asyncio.sleep(1.0)
                continue
            self.metrics.measurements.inc(count)
            self.outbox.notify()

    def _process(self, frames: list[fastpath.Opened], last_id: int) -> int:
        """Writer thread: rows for ``frames`` and the cursor, one transaction."""
        processed = self.processor.rows(frames)
        self.outbox.write_processed(processed, last_id)
        if self.latest:
            self.latest.update(processed)
        for frame in frames:
            if frame.content_type == messages.CT_STATUS:
                for name, value in zip(frame.names, frame.values):
                    if name == STATUS_STORE_DEPTH and isinstance(value, (int, float)) and not isinstance(value, bool):
                        self.metrics.node_store_depth.labels(frame.node).set(value)
        return sum(len(entry[5]) for entry in processed)

    def _warm_up(self) -> None:
        """Writer thread, at start: run the frames processed in the last
        ``processor.warmup_s`` through the chains again, output discarded, so
        their state (an open aggregation window, an EMA) continues where the
        previous run left it instead of starting afresh."""
        if not self.processor.warmup_s:
            return
        rows = self.outbox.processed_frames_since(self.processor.warmup_s, WARMUP_MAX_FRAMES)
        frames = [frame for frame in (redecode(raw, received) for _id, _n, _s, _ct, received, raw in rows) if frame]
        for start in range(0, len(frames), self.config.process_batch_frames):
            self.processor.rows(frames[start:start + self.config.process_batch_frames])
        if frames:
            log.info("processing chains warmed up on the frames processed before the restart",
                     extra={"frames": len(frames), "seconds": self.processor.warmup_s})

    def _recover(self) -> None:
        """Writer thread, at start: warm the chains up, then process frames
        committed but not processed."""
        self._warm_up()
        cursor = self.outbox.processing_cursor()
        recovered = 0
        while True:
            rows = self.outbox.unprocessed_frames(cursor, self.config.process_batch_frames)
            if not rows:
                break
            frames = []
            for frame_id, _node, _seq, _ct, received, raw in rows:
                frame = redecode(raw, received)
                if frame is not None:
                    frame.frame_id = frame_id
                    frames.append(frame)
            cursor = rows[-1][0]
            self._process(frames, cursor)
            recovered += len(rows)
        if recovered:
            log.info("processed frames left by the previous run", extra={"frames": recovered})


def redecode(raw: bytes, received: float) -> fastpath.Opened | None:
    """Decode a stored (already verified) frame as it was at arrival."""
    header = fastpath.read_header(raw)
    try:
        if header is None:
            header = fastpath.Header.of(cose.parse(raw))
        return fastpath.decode(raw, header, received)
    except ProtocolError:  # cannot happen for a frame that was accepted; do not block the rest
        log.error("stored frame no longer decodes; skipped", extra={"bytes": len(raw)})
        return None


def _peer(address) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)
