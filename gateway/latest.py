"""The latest processed measurement per channel, in memory: what PLCs (the
Modbus server), the web console and OPC UA read as "current value".

``LatestSink`` is a sink like any other (delivery/sink.py), but an in-memory
one: it takes every frame its selection allows, confirms at once, keeps no
durable cursor and starts from the recent past after a restart (so the
table is filled again from the outbox, not empty until new data arrives).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from .delivery import Selection, Sink
from .spine import Measurement, ProcessedFrame


class LatestTable:
    """"node/channel" -> its newest measurement (by measurement time).
    ``keys``: track only these (None: every channel)."""

    def __init__(self, keys: Iterable[str] | None = None) -> None:
        self._watched: dict[str, set[str]] | None = None
        if keys is not None:
            self._watched = {}
            for key in keys:
                node, _, channel = key.partition("/")
                self._watched.setdefault(node, set()).add(channel)
        self._latest: dict[str, Measurement] = {}

    def update(self, frame: ProcessedFrame) -> None:
        channels = None
        if self._watched is not None:
            channels = self._watched.get(frame.node)
            if not channels:
                return
        latest = self._latest
        for i, channel in enumerate(frame.channels):
            if channels is not None and channel not in channels:
                continue
            key = f"{frame.node}/{channel}"
            previous = latest.get(key)
            if previous is None or frame.times[i] >= previous.time:
                latest[key] = frame.measurement(i)

    def get(self, key: str) -> Measurement | None:
        return self._latest.get(key)

    def items(self) -> list[tuple[str, Measurement]]:
        return list(self._latest.items())

    def __len__(self) -> int:
        return len(self._latest)


class LatestSink(Sink):
    """Feeds a LatestTable from the delivery loop."""

    kind = "latest"
    durable = False

    def __init__(self, name: str, table: LatestTable, selection: Selection | None = None,
                 on_frame: Callable[[ProcessedFrame], None] | None = None) -> None:
        super().__init__()
        self.name = name
        self.description = "the in-memory latest values"
        self.table = table
        self.selection = selection or Selection(kinds=("data", "status"))
        self._on_frame = on_frame

    async def open(self) -> None:
        return None

    async def deliver(self, frames: Sequence[ProcessedFrame], confirm: Callable[[], None]) -> None:
        for frame in frames:
            self.table.update(frame)
            if self._on_frame is not None:
                self._on_frame(frame)
        self.stats.messages_sent += len(frames)
        self.stats.messages_confirmed += len(frames)
        confirm()
