"""Durable commit: admitted frames stored in groups (one transaction, one
fsync) on the writer thread, then ACKed on the link each came from, then
handed on to processing as a ``CommittedBatch``.

A group closes when it holds ``commit_max_frames`` frames or
``commit_max_delay`` after its first frame.  When the outbox is full (its
size limit, or a disk that is full, failing or read-only), valid new frames
are answered ACK status "full" and not stored: the nodes keep them and back
off; an alarm metric is set and one loud line logged every 10 s until space
returns (maintenance looks every second).

Virtual nodes (in-process producers: the Modbus pollers) submit readings
through ``submit``: they become frames of their own and take the same path.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable

from . import opener, virtual
from .acks import ACK_FULL, ACK_OK, Acker
from .backpressure import Backlog
from .config import OutboxConfig
from .errors import OutboxError, OutboxFull
from .metrics import GatewayMetrics
from .outbox import Outbox, StoredFrame
from .replay import Admitted, ReplayBook
from .spine import CommittedBatch, Reading
from .writer import Writer

log = logging.getLogger("smemet.gateway.commit")
FULL_LOG_INTERVAL = 10.0  # seconds between "outbox full" lines while it stays full


def _advice(reason: str) -> str:
    """What the operator does about a full outbox, from why it is full."""
    if "read-only" in reason:
        return "the file system went read-only (a disk error?): check dmesg, then remount it read-write or restart"
    if "I/O error" in reason:
        return "the disk reports I/O errors: check it (dmesg, smartctl) and move the outbox to a healthy disk"
    if "disk full" in reason or "quota" in reason:
        return "free space on that disk (the gateway accepts again by itself)"
    return "a route not delivering? (smemet_sink_lag_measurements) or raise [outbox] max_bytes"


class GroupCommit:
    def __init__(self, outbox: Outbox, writer: Writer, book: ReplayBook, acker: Acker, metrics: GatewayMetrics,
                 config: OutboxConfig, backlog: Backlog, on_committed: Callable[[CommittedBatch], None],
                 clock=time.time) -> None:
        self._outbox = outbox
        self._writer = writer
        self._book = book
        self._acker = acker
        self._metrics = metrics
        self._config = config
        self._backlog = backlog
        self._on_committed = on_committed
        self._clock = clock
        self.full = False
        self.full_reason = ""
        self.refused = 0  # frames answered ACK "full" since start
        self.closing = False
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._last_full_log = -FULL_LOG_INTERVAL
        self._announced = False  # the "full" line was logged for this spell of fullness
        self._virtual_next: dict[str, int] = {}

    async def start(self) -> None:
        state = await self._writer.run(self._outbox.storage_state)
        self.set_full(bool(state), state)
        self._task = asyncio.create_task(self._loop(), name="group commit")

    async def drain(self) -> None:
        """Commit and ACK what is held, then stop."""
        self.closing = True
        self._wakeup.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    # ------------------------------------------------------------ from admission

    def admit(self, entry: Admitted) -> None:
        if self.closing:  # not ACKed: the node retransmits to the next run
            return
        if self.full:
            self.refuse(entry.frame.kid, entry.replies)
            return
        self._book.hold(entry)
        self._backlog.add(1)
        held = len(self._book.held)
        if held == 1 or held >= self._config.commit_max_frames:
            self._wakeup.set()

    def refuse(self, kid: bytes, replies) -> None:
        """ACK status full: nothing stored, the node keeps the frame and backs off."""
        self._metrics.frames_refused_full.inc()
        self.refused += 1
        self._acker.send(kid, [], ACK_FULL, replies)
        self._log_full()

    def _log_full(self) -> None:
        now = time.monotonic()
        if now - self._last_full_log >= FULL_LOG_INTERVAL:
            self._last_full_log = now
            self._announced = True
            log.error(
                f"outbox full: refusing frames (nodes keep them and back off): {self.full_reason}; "
                f"{_advice(self.full_reason)}",
                extra={"path": self._outbox.path, "max_bytes": self._outbox.max_bytes,
                       "refused": self.refused},
            )

    def set_full(self, full: bool, why: str = "") -> None:
        """Raise or clear the storage alarm.  The log says so at most every
        10 s, also when a disk at its edge flips between full and not."""
        if full:
            self.full_reason = why or self.full_reason or "outbox full"
            if not self.full:
                self._log_full()
        elif self.full:
            if self._announced:
                log.warning("outbox has space again: accepting frames", extra={"path": self._outbox.path})
                self._announced = False
            self.full_reason = ""
        self.full = full
        self._metrics.storage_full.set(1 if full else 0)

    # ------------------------------------------------------------ virtual nodes

    async def submit(self, node: str, readings: list[Reading]) -> int:
        """Commit a virtual node's readings (a Modbus device) durably, as
        frames of their own; returns the sequence number of the last frame.
        Raises OutboxFull when the outbox is full (the caller keeps the
        readings and retries)."""
        if not readings:
            raise ValueError("no readings to submit")
        if self._acker_key(node) is not None:
            raise ValueError(f"virtual node {node!r} has the name of a keyed node; rename the device")
        if self.full:
            raise OutboxFull(f"outbox full ({self._outbox.path}); keep the readings and retry")
        if self.closing:
            raise OutboxError("the gateway is stopping")
        now = self._clock()
        waits = []
        loop = asyncio.get_running_loop()
        for frame in virtual.frames(node, readings, self._next_virtual_seq):
            header = opener.read_header(frame)
            future = loop.create_future()
            self._book.hold(Admitted(opener.decode(frame, header, now), [], future))
            self._backlog.add(1)
            waits.append(future)
        self._wakeup.set()
        results = await asyncio.gather(*waits, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results[-1]

    def _acker_key(self, node: str):
        return self._acker.key_for(node.encode())

    def _next_virtual_seq(self, node: str) -> int:
        seq = self._virtual_next.get(node)
        if seq is None:
            seq = self._book.next_seq(node)
        self._virtual_next[node] = seq + 1
        return seq

    # ------------------------------------------------------------ the loop

    async def _loop(self) -> None:
        while True:
            if not self._book.held:
                if self.closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                if not self._book.held:
                    continue
                if len(self._book.held) < self._config.commit_max_frames and not self.closing:
                    await asyncio.sleep(self._config.commit_max_delay)  # let the group fill
            await self._commit_group()

    async def _commit_group(self) -> None:
        group = self._book.take(self._config.commit_max_frames)
        rows = [StoredFrame(e.frame.node, e.frame.seq, e.frame.content_type, e.frame.received, e.frame.frame)
                for e in group]
        started = time.perf_counter()
        try:
            last_id = await self._writer.run(self._outbox.commit_frames, rows)
        except OutboxFull as exc:
            self._book.release(group)
            self._backlog.done(len(group))
            self.set_full(True, str(exc))
            for entry in group:
                if entry.done is not None:
                    self._fail(entry, OutboxFull(str(exc)))
                else:
                    self.refuse(entry.frame.kid, entry.replies)
            return
        except sqlite3.IntegrityError:  # already stored (cannot happen while windows and frames agree)
            self._split_stored(group)
            return
        except RuntimeError:  # the writer is shut down: stopping; nodes retransmit to the next run
            self._book.release(group)
            self._backlog.done(len(group))
            return
        except Exception:  # noqa: BLE001 - a database failure must not stop ingest; nodes retransmit
            log.exception("group commit failed; frames not ACKed (nodes will retransmit)", extra={"frames": len(group)})
            self._book.release(group)
            self._backlog.done(len(group))
            for entry in group:
                self._fail(entry, OutboxError("the outbox could not commit; see the gateway log"))
            await asyncio.sleep(0.5)
            return
        self._metrics.commit_seconds.observe(time.perf_counter() - started)
        self._metrics.commit_frames.observe(len(group))
        self._metrics.frames_accepted.inc(len(group))
        self._book.committed(group, last_id)
        acks: dict[tuple, list[int]] = {}
        for entry in group:
            for link, address in entry.replies:
                acks.setdefault((entry.frame.kid, link, address), []).append(entry.frame.seq)
        for (kid, link, address), seqs in acks.items():
            self._acker.send(kid, seqs, ACK_OK, [(link, address)])
        for entry in group:
            if entry.done is not None and not entry.done.done():
                entry.done.set_result(entry.frame.seq)
        self._on_committed(CommittedBatch(last_id - len(group) + 1, [entry.frame for entry in group]))

    def _fail(self, entry: Admitted, exc: Exception) -> None:
        if entry.done is not None and not entry.done.done():
            entry.done.set_exception(exc)
            self._virtual_next.pop(entry.frame.node, None)  # recompute from the persisted window next time

    def _split_stored(self, group: list[Admitted]) -> None:
        """A group hit (node, seq) UNIQUE: re-ACK the frames already stored,
        hold the others again."""
        log.error("group commit met frames already stored; re-ACKing them", extra={"frames": len(group)})
        again = []
        for entry in group:
            if self._outbox.has_frame(entry.frame.node, entry.frame.seq):
                self._metrics.frames_duplicate.inc()
                self._backlog.done(1)
                self._acker.send(entry.frame.kid, [entry.frame.seq], ACK_OK, entry.replies)
                if entry.done is not None and not entry.done.done():
                    entry.done.set_result(entry.frame.seq)
            else:
                again.append(entry)
        self._book.release([e for e in group if e not in again])
        self._book.requeue(again)
        self._wakeup.set()

