"""A real Outbox filled with given measurements, for tests and benchmarks of
sinks that do not need the whole gateway: ``add`` groups consecutive
measurements of one (node, seq) into a processed frame and stores it the way
the processing stage does."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from smemet.gateway.outbox import Outbox
from smemet.gateway.spine import KIND_NAMES, QUALITY_CODES, Measurement, ProcessedFrame


class OutboxMeasurements(Outbox):
    """An Outbox with ``add(measurements)``; everything else is the real one."""

    def __init__(self, path: Path | str, max_bytes: int = 1 << 30) -> None:
        super().__init__(str(path), max_bytes)
        self._frames = 0

    def add(self, measurements: Iterable[Measurement], received: float = 0.0) -> int:
        """Store measurements (their ``id`` is ignored: the outbox gives the
        next ones), a processed frame per run of one (node, seq), each
        ``received`` (arrival, Unix s) at that time; returns the last id;
        wakes waiting sinks."""
        groups: list[list[Measurement]] = []
        for m in measurements:
            if groups and (groups[-1][0].node, groups[-1][0].seq, groups[-1][0].kind) == (m.node, m.seq, m.kind):
                groups[-1].append(m)
            else:
                groups.append([m])
        frames = []
        next_id = self.last_measurement_id + 1
        for group in groups:
            self._frames += 1
            frames.append(_frame(next_id, self._frames, group, received))
            next_id += len(group)
        last = self.write_processed(frames, self.processing_cursor())
        self.notify()
        return last

    def last_id(self) -> int:
        return self.last_measurement_id


def _frame(first_id: int, frame_id: int, group: Sequence[Measurement], received: float = 0.0) -> ProcessedFrame:
    head = group[0]
    return ProcessedFrame(
        first_id, frame_id, head.node, head.seq, KIND_NAMES.index(head.kind), received,
        tuple(m.channel for m in group), tuple(m.time for m in group), tuple(m.value for m in group),
        tuple(m.unit for m in group), bytes(QUALITY_CODES[m.quality] for m in group), tuple(m.reason for m in group),
        calibrations=tuple(m.calibration for m in group) if any(m.calibration for m in group) else None,
    )


def frames(nodes: Sequence[str], channels: Sequence[str], count: int, start_time: float = 1.7e9,
           unit: str = "Cel") -> list[Measurement]:
    """``count`` frames per node, round-robin, each with one reading per
    channel: seq 1..count, value = seq + channel index / 10."""
    out = []
    for seq in range(1, count + 1):
        for node in nodes:
            for i, channel in enumerate(channels):
                out.append(Measurement(id=0, node=node, seq=seq, channel=channel, time=start_time + seq,
                                       value=seq + i / 10, unit=unit))
    return out
