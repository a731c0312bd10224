"""The processing stage: committed batches, in commit order, through the
Processor on the writer thread; the processed frames and the processing
cursor stored in one transaction; then the sinks are woken.

At start it first runs the frames processed in the last warm-up span through
the chains again, output discarded (an aggregation window open at a restart
then averages all its samples), and then processes what the previous run
committed but did not process.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence

from smemet.protocol.errors import ProtocolError

from . import opener
from .backpressure import Backlog
from .config import OutboxConfig
from .errors import OutboxFull
from .logs import Spell
from .metrics import GatewayMetrics
from .outbox import Outbox, StoredFrame
from .processing import STATUS_STORE_DEPTH, Processor
from .spine import KIND_STATUS, CommittedBatch, OpenedFrame, ProcessedFrame
from .writer import Writer

log = logging.getLogger("smemet.gateway.processing")

# At most this many frames are run through the chains again at start (~1.5 s
# at 32 readings a frame): a very busy gateway warms up on the newest ones.
WARMUP_MAX_FRAMES = 20000


class ProcessingStage:
    def __init__(self, outbox: Outbox, writer: Writer, processor: Processor, metrics: GatewayMetrics,
                 config: OutboxConfig, backlog: Backlog) -> None:
        self._outbox = outbox
        self._writer = writer
        self._processor = processor
        self._metrics = metrics
        self._config = config
        self._backlog = backlog
        self._queue: deque[CommittedBatch] = deque()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task | None = None
        self._store_depth: dict[str, object] = {}
        self._storage = Spell(log, "processing (storing processed frames)")

    async def start(self) -> None:
        await self._writer.run(self._recover)
        self._outbox.notify()
        self._task = asyncio.create_task(self._loop(), name="processing")

    def submit(self, batch: CommittedBatch) -> None:
        """A committed batch (from the commit stage), in commit order."""
        self._queue.append(batch)
        self._wakeup.set()

    async def drain(self) -> None:
        """Process everything committed, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            first_frame_id, frames = self._take()
            try:
                processed = await self._writer.run(self._process, frames, first_frame_id)
            except RuntimeError:  # the writer is shut down: the next start processes them
                return
            except OutboxFull as exc:  # a full or failing disk: the storage alarm says it loudly
                self._storage.failed(str(exc), frames=len(frames))
                if self._closing:
                    return
                self._queue.appendleft(CommittedBatch(first_frame_id, frames))
                await asyncio.sleep(1.0)
                continue
            except Exception:  # noqa: BLE001 - the frames stay committed; try them again
                log.exception("processing failed; retrying (the frames stay in the outbox)",
                              extra={"frames": len(frames), "first_frame_id": first_frame_id})
                if self._closing:
                    return  # the next start processes them (they are after the processing cursor)
                self._queue.appendleft(CommittedBatch(first_frame_id, frames))
                await asyncio.sleep(1.0)
                continue
            self._storage.ok()
            self._backlog.done(len(frames))
            self._metrics.measurements.inc(sum(len(frame) for frame in processed))
            self._note_status(frames)
            self._outbox.notify()

    def _take(self) -> tuple[int, list[OpenedFrame]]:
        """Consecutive committed batches, up to ``process_batch_frames``."""
        batch = self._queue.popleft()
        first, frames = batch.first_frame_id, list(batch.frames)
        limit = self._config.process_batch_frames
        while (self._queue and len(frames) + len(self._queue[0].frames) <= limit
               and self._queue[0].first_frame_id == first + len(frames)):
            frames.extend(self._queue.popleft().frames)
        return first, frames

    def _process(self, frames: Sequence[OpenedFrame], first_frame_id: int) -> list[ProcessedFrame]:
        """Writer thread: process, store with the cursor, one transaction."""
        processed = self._processor.process(frames, first_frame_id, self._outbox.last_measurement_id + 1)
        self._outbox.write_processed(processed, first_frame_id + len(frames) - 1, also=self._processor.write_state)
        self._processor.state_written()
        return processed

    def _note_status(self, frames: Sequence[OpenedFrame]) -> None:
        """Node health from status frames: the node's unsent-frame count."""
        for frame in frames:
            if frame.kind != KIND_STATUS:
                continue
            for name, value in zip(frame.names, frame.values):
                if name == STATUS_STORE_DEPTH and type(value) in (int, float):
                    gauge = self._store_depth.get(frame.node)
                    if gauge is None:
                        gauge = self._store_depth[frame.node] = self._metrics.node_store_depth.labels(frame.node)
                    gauge.set(value)

    # ------------------------------------------------------------ start

    def _recover(self) -> None:
        """Writer thread, at start: warm the chains up, then process frames
        committed but not processed."""
        self._warm_up()
        cursor = self._outbox.processing_cursor()
        recovered = 0
        while True:
            stored = self._outbox.frames_after(cursor, self._config.process_batch_frames)
            if not stored:
                break
            run: list[OpenedFrame] = []  # consecutive frame ids that opened
            run_first = 0
            for row in stored:
                frame = reopen(row)
                if frame is None or (run and row.id != run_first + len(run)):
                    if run:
                        self._process(run, run_first)
                    run = []
                if frame is None:
                    continue
                if not run:
                    run_first = row.id
                run.append(frame)
            if run:
                self._process(run, run_first)
            cursor = stored[-1].id
            if self._outbox.processing_cursor() < cursor:  # the last frames did not open: move past them
                self._outbox.write_processed([], cursor)
            recovered += len(stored)
        if recovered:
            log.info("processed frames left by the previous run", extra={"frames": recovered})

    def _warm_up(self) -> None:
        span = self._processor.warmup_s
        if not span:
            return
        frames = [frame for frame in map(reopen, self._outbox.processed_frames_since(span, WARMUP_MAX_FRAMES)) if frame]
        self._processor.warm_up(frames, self._config.process_batch_frames)
        if frames:
            log.info("processing chains warmed up on the frames processed before the restart",
                     extra={"frames": len(frames), "seconds": span})


def reopen(stored: StoredFrame) -> OpenedFrame | None:
    """A stored (already verified) frame, decoded as it was at arrival."""
    try:
        header = opener.read_header(stored.raw)
        return opener.decode(stored.raw, header, stored.received)
    except ProtocolError:  # cannot happen for a frame that was accepted; do not block the rest
        log.error("stored frame no longer decodes; skipped", extra={"frame_id": stored.id, "bytes": len(stored.raw)})
        return None
