"""The delivery loop: one per sink, the same for every sink.

It owns what every output needs and none should write again: the durable
cursor (advanced only past what the sink confirmed, in order), reading the
outbox after it, the sink's selection, reconnecting with backoff, one clear
log line per outage, and the metrics (connected, failures, delivered, lag in
measurements, frames and seconds).  A sink that cannot keep up only falls
behind: its backlog stays in the outbox, other sinks are not held up, and it
drains in order when it can.

A sink may carry ``terms`` (an agreement's, ``agreements/terms.py``): the
loop applies them between its selection and ``deliver``.  They may hold
frames back (not consumed: read again once ``wake`` is reached), keep the
cursor below what open aggregation periods still need (``hold``), and ask
for a call at ``wake`` without new frames; nothing else changes.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from contextlib import suppress
from dataclasses import dataclass

from ..errors import OutboxFull
from ..logs import Spell
from ..outbox import Outbox
from .metrics import SinkMetrics
from .sink import Sink, SinkError
from .tracker import AckTracker

log = logging.getLogger("smemet.gateway.delivery")

FRAME_BATCH = 64  # processed frames read (and handed to the sink) at once
CURSOR_SAVE_INTERVAL = 0.5  # seconds; a crash only re-sends (dedup removes it)
LAG_INTERVAL = 1.0  # seconds between lag updates while busy
BACKOFF_MIN, BACKOFF_MAX = 0.5, 30.0
OUTAGE_LOG_INTERVAL = 60.0  # at most one "still down" line per minute per sink
DRAIN_TIMEOUT = 5.0  # on stop, wait this long for outstanding confirmations
HELD_LAG_INTERVAL = 5.0  # seconds between lag updates while a sink's terms hold everything back


@dataclass(slots=True)
class SinkState:
    """What the loop knows about its sink right now (health, console)."""

    connected: bool = False
    down_since: float | None = None  # monotonic
    last_error: str = ""
    cursor: int = 0
    lag_measurements: int = 0
    lag_frames: int = 0
    lag_seconds: float = 0.0
    held_back: bool = False  # the sink's terms hold back what is left (an embargo, open periods)


class DeliveryLoop:
    def __init__(self, sink: Sink, outbox: Outbox, metrics: SinkMetrics) -> None:
        self.sink = sink
        self.outbox = outbox
        self.metrics = metrics.bind(sink)
        self.state = SinkState()
        self._saved = 0
        self._last_save = 0.0
        self._last_lag = 0.0
        self._outage = _OutageLog(sink)
        self._cursor_saves = Spell(log, f"sink {sink.name}: saving its cursor")

    @property
    def name(self) -> str:
        return self.sink.name

    async def run(self, stop: asyncio.Event) -> None:
        sink, state = self.sink, self.state
        if sink.durable:
            state.cursor = self._saved = self.outbox.load_cursor(sink.name)
        else:
            state.cursor = max(0, self.outbox.last_measurement_id - sink.replay)
        backoff = BACKOFF_MIN
        while not stop.is_set():
            started = time.monotonic()
            try:
                await self._session(stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a sink never crashes the gateway
                self._down(exc)
                if time.monotonic() - started > 10 * BACKOFF_MAX:
                    backoff = BACKOFF_MIN  # it was a long healthy session: retry soon
                await wait_any(stop.wait(), timeout=backoff * random.uniform(0.8, 1.2))
                backoff = min(BACKOFF_MAX, backoff * 2)
            else:
                backoff = BACKOFF_MIN
        self._set_connected(False)

    def _down(self, exc: BaseException) -> None:
        self._set_connected(False)
        self.metrics.failure()
        self._save_cursor(force=True)
        reason = self.sink.explain(exc)
        self.state.last_error = self.sink.stats.last_error = reason
        if self.state.down_since is None:
            self.state.down_since = time.monotonic()
        with suppress(Exception):  # never let a log line or a lag read end the loop
            self._outage.down(reason)
            self._update_lag(None, force=True)

    def _set_connected(self, up: bool) -> None:
        self.state.connected = up
        self.metrics.connected(up)

    async def _session(self, stop: asyncio.Event) -> None:
        sink = self.sink
        opening = asyncio.ensure_future(sink.open())
        if not await _until_done_or(opening, stop):
            return
        tracker = AckTracker(self.state.cursor)
        clean = False
        try:
            self._set_connected(True)
            self._outage.up(self.state.cursor)
            self.state.down_since = None
            self.state.last_error = ""
            try:
                await _first_error(self._pump(tracker, stop), sink.broken())
                clean = True
            finally:
                self.state.cursor = tracker.acked
                self._report(tracker)
                self._save_cursor(force=True)
        finally:
            if not clean:
                self._set_connected(False)
            with suppress(Exception):
                await sink.close(clean)

    async def _pump(self, tracker: AckTracker, stop: asyncio.Event) -> None:
        sink, outbox, select, terms = self.sink, self.outbox, self.sink.selection.of, self.sink.terms
        read_pos = tracker.acked
        if terms is not None:
            terms.start(read_pos)
        wake = None  # terms: when held-back measurements become due
        while not stop.is_set():
            frames = outbox.read_frames(read_pos, FRAME_BATCH)
            if not frames and (wake is None or time.time() < wake):
                self._progress(tracker, idle=True)
                timeout = 1.0 if wake is None else min(1.0, max(0.0, wake - time.time()))
                await wait_any(outbox.wait_beyond(read_pos, timeout=timeout), stop.wait())
                continue
            last_id = frames[-1].last_id if frames else read_pos
            chosen = [picked for picked in map(select, frames) if picked is not None]
            limit, held, receipt = last_id, False, None
            if terms is not None:  # the agreement's terms (agreements/terms.py)
                release = terms.apply(chosen, time.time(), reached_end=last_id >= outbox.last_measurement_id)
                chosen, wake, receipt = release.frames, release.wake, release.receipt
                if release.resume_after is not None:  # not due yet: read again from there
                    last_id = limit = max(read_pos, release.resume_after)
                    held = True
                if release.hold is not None:  # open periods: the cursor must not pass them
                    limit = min(limit, release.hold - 1)
                self.state.held_back = held or release.hold is not None
            if chosen:
                delivery = tracker.add(limit, min(min(f.times) for f in chosen))
                if receipt is None:
                    confirm = lambda delivery=delivery: tracker.done(delivery)  # noqa: E731
                else:
                    def confirm(delivery=delivery, receipt=receipt) -> None:
                        terms.confirmed(receipt)  # before the cursor may pass what it covers
                        tracker.done(delivery)
                await sink.deliver(chosen, confirm)
            else:
                tracker.skip(limit)
            read_pos = last_id
            self._progress(tracker, idle=held)
            if held:  # the next frame is embargoed: nothing is due before ``wake`` (lag refreshed meanwhile)
                await wait_any(stop.wait(), timeout=min(HELD_LAG_INTERVAL, max(0.0, wake - time.time())))
        # stopping: give outstanding confirmations a moment so we resend less
        with suppress(Exception):
            await sink.drain(DRAIN_TIMEOUT)

    def _progress(self, tracker: AckTracker, idle: bool) -> None:
        self.state.cursor = tracker.acked
        self._save_cursor(force=idle)
        self._report(tracker)
        self._update_lag(tracker, force=idle)

    def _report(self, tracker: AckTracker) -> None:
        self.metrics.delivered(self.state.cursor, self.sink.stats)

    def _save_cursor(self, force: bool) -> None:
        if not self.sink.durable:
            return
        now = time.monotonic()
        cursor = self.state.cursor
        if cursor > self._saved and (force or now - self._last_save >= CURSOR_SAVE_INTERVAL):
            try:
                self.outbox.save_cursor(self.sink.name, cursor)
            except OutboxFull as exc:  # a full disk: the storage alarm says it; a lost save only re-sends
                self._cursor_saves.failed(str(exc))
                return
            except Exception:  # noqa: BLE001 - retried at the next progress; a lost save only re-sends
                log.exception("sink %s: cursor not saved", self.sink.name)
                return
            self._cursor_saves.ok()
            self._saved = cursor
            self._last_save = now

    def _update_lag(self, tracker: AckTracker | None, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_lag < LAG_INTERVAL:
            return
        self._last_lag = now
        state = self.state
        state.lag_measurements, state.lag_frames = self.outbox.lag(state.cursor)
        oldest = tracker.oldest_time() if tracker is not None else None
        if oldest is None and state.lag_measurements:
            waiting = self.outbox.read_frames(state.cursor, 1)
            oldest = min(waiting[0].times) if waiting else None
        state.lag_seconds = max(0.0, time.time() - oldest) if oldest is not None else 0.0
        self.metrics.lag(state.lag_measurements, state.lag_frames, state.lag_seconds)


class _OutageLog:
    """One clear line when a sink goes down, a reminder at most once a
    minute while it stays down, one line when it is back."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.down_since: float | None = None
        self.attempts = 0
        self.last_line = 0.0
        self.last_reason = ""

    def down(self, reason: str) -> None:
        now = time.monotonic()
        sink = self.sink
        self.attempts += 1
        if self.down_since is None:
            self.down_since = now
            self.attempts = 1
            log.warning("%s %s: cannot deliver to %s: %s; retrying with backoff, the backlog stays in the outbox",
                        sink.kind, sink.name, sink.description, reason)
        elif reason != self.last_reason or now - self.last_line >= OUTAGE_LOG_INTERVAL:
            log.warning("%s %s: still cannot deliver to %s after %.0f s and %d attempts: %s",
                        sink.kind, sink.name, sink.description, now - self.down_since, self.attempts, reason)
        else:
            return
        self.last_line = now
        self.last_reason = reason

    def up(self, cursor: int) -> None:
        sink = self.sink
        if self.down_since is None:
            log.info("%s %s: connected to %s, delivering after measurement %d",
                     sink.kind, sink.name, sink.description, cursor)
        else:
            log.warning("%s %s: connected to %s again after %.0f s down, delivering after measurement %d",
                        sink.kind, sink.name, sink.description, time.monotonic() - self.down_since, cursor)
        self.down_since = None
        self.last_reason = ""


async def _until_done_or(task: asyncio.Future, stop: asyncio.Event) -> bool:
    """Wait for ``task``; False (task cancelled) when ``stop`` is set first.
    The task's exception propagates."""
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not task.done():
        task.cancel()
        with suppress(BaseException):
            await task
        return False
    task.result()
    return True


async def _first_error(main, *watchers) -> None:
    """Run ``main``; if a watcher finishes first (with an error), cancel
    ``main`` and raise that error (the earliest watcher's, if several)."""
    main_task = asyncio.ensure_future(main)
    watch_tasks = [asyncio.ensure_future(w) for w in watchers]
    try:
        await asyncio.wait([main_task, *watch_tasks], return_when=asyncio.FIRST_COMPLETED)
        await asyncio.sleep(0)  # let a refusal and the disconnect it causes both land
    finally:
        for task in watch_tasks:
            task.cancel()
        for task in watch_tasks:
            with suppress(BaseException):
                await task
    if not main_task.done():
        main_task.cancel()
        with suppress(asyncio.CancelledError):
            await main_task
        for task in watch_tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()
        raise SinkError("connection lost")
    main_task.result()


async def wait_any(*aws, timeout: float | None = None) -> None:
    """Until the first of ``aws`` is done (or ``timeout``); the others are
    cancelled, and their errors left to whoever handles them."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        for task in tasks:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: errors are handled elsewhere
