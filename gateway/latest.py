"""The latest processed measurement of selected channels, in memory, for the
Modbus TCP server (PLC/SCADA read current values, not history).  Only the
configured "node/channel" keys are tracked, so the cost is nil for
everything else.  Empty after a restart until new data arrives (the server
reports "no data" meanwhile)."""

from __future__ import annotations

from collections.abc import Iterable

from .model import Measurement
from .outbox import ID_SPACE, KIND_NAMES, QUALITY_NAMES


class LatestValues:
    def __init__(self, keys: Iterable[str]) -> None:
        self._watched: dict[str, set[str]] = {}
        for key in keys:
            node, _, channel = key.partition("/")
            self._watched.setdefault(node, set()).add(channel)
        self._latest: dict[str, Measurement] = {}

    def __bool__(self) -> bool:
        return bool(self._watched)

    def update(self, processed: Iterable[tuple]) -> None:
        """Take processed frames (as ``Processor.rows`` gives them)."""
        watched = self._watched
        for frame_id, node, seq, kind, _received, rows in processed:
            channels = watched.get(node)
            if not channels:
                continue
            for index, (channel, time, value, unit, quality, reason) in enumerate(rows):
                if channel in channels:
                    key = f"{node}/{channel}"
                    previous = self._latest.get(key)
                    if previous is None or time >= previous.time:
                        self._latest[key] = Measurement(
                            frame_id * ID_SPACE + index, node, seq, channel, time, value, unit,
                            QUALITY_NAMES[quality], reason, KIND_NAMES[kind],
                        )

    def get(self, key: str) -> Measurement | None:
        return self._latest.get(key)
