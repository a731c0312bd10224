"""The web console as a sink: the delivery loop hands it every frame (data
and status), it folds them into its in-memory state and confirms at once;
``start``/``stop`` hold the HTTP server and the once-a-second sampler.

It is an in-memory view (``durable = False``): after a restart it fills
again from the recent past in the outbox, and it never holds back pruning.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from contextlib import suppress

from ...delivery import Selection, Sink
from ...spine import ProcessedFrame
from .activity import Activity
from .config import WebConfig
from .console import HISTORY_POINTS, ConsoleState
from .server import ConsoleServer
from .views import Views

log = logging.getLogger("smemet.gateway.sinks.web")

SAMPLE_INTERVAL = 1.0  # seconds between samples of the gateway's counters


class _Everything(Selection):
    """Every measurement of every frame, data and status: the console shows
    all, so the loop's per-frame selection is skipped (no pattern matching,
    no per-frame dict)."""

    def of(self, frame: ProcessedFrame) -> ProcessedFrame:
        return frame


class WebSink(Sink):
    kind = "web"
    durable = False

    def __init__(self, config: WebConfig, status) -> None:
        super().__init__()
        self.name = "web-console"
        self.config = config
        self.selection = _Everything(kinds=("data", "status"))
        self.console = ConsoleState(step=config.history / HISTORY_POINTS)
        self.activity = Activity(status)
        self.views = Views(config, status, self.console, self.activity)
        self.server = ConsoleServer(config, self.views)
        self.description = self.server.url
        self._sampler: asyncio.Task | None = None

    @property
    def url(self) -> str:
        return self.server.url

    async def start(self) -> None:
        await self.server.start()
        self.description = self.server.url
        self._sampler = asyncio.create_task(self._sample(), name="web console sampler")

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with suppress(asyncio.CancelledError):
                await self._sampler
        await self.server.stop()

    async def _sample(self) -> None:
        while True:
            try:
                self.activity.sample()
            except Exception:  # noqa: BLE001 - a figure missing for a second is not worth stopping the console
                log.exception("web console: sampling the gateway's counters failed")
            await asyncio.sleep(SAMPLE_INTERVAL)

    async def open(self) -> None:
        return None

    async def deliver(self, frames: Sequence[ProcessedFrame], confirm: Callable[[], None]) -> None:
        self.console.fold(frames)
        self.stats.messages_sent += len(frames)
        self.stats.messages_confirmed += len(frames)
        confirm()
