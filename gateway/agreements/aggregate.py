"""Aggregation for agreements with a coarser resolution than raw: per
(node, channel), the mean, minimum, maximum and count of each period.

Periods are aligned: one of ``period`` seconds starts at a multiple of
``period`` since the Unix epoch (1-minute periods start on the minute, UTC).
A period closes when a reading of its channel falls past it, or when the
stream has been read ``grace`` past its end (the channel went quiet): while
a backlog drains (after an outage) that is the arrival time of the frames
read so far, never the wall clock, so a backlog's periods are not cut
short; once the route is caught up, it is the wall clock less the delay.  A closed period becomes four (or fewer) measurements
named ``<channel>.mean``, ``.min``, ``.max``, ``.count``, timed at the
period's start, in one frame per node and period.

Only numbers are aggregated.  A reading with quality ``bad`` (no value) is
left out and makes the period ``uncertain`` (all of them: ``bad``, values
null); an ``uncertain`` reading is included and makes it ``uncertain``.
Text and boolean readings do not travel at an aggregated resolution.  A
reading for a period that has already closed (out of order by more than a
period) is counted as late and left out.

Restarts: ``hold()`` is the lowest measurement id an open period still
needs; the delivery loop keeps its cursor below it, so after a restart the
open periods are read again whole.  Periods the destination confirmed are
remembered per channel (``confirmed``, stored by the caller): their readings,
read again, are skipped instead of opening a partial period.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..spine import BAD, GOOD, KIND_DATA, UNCERTAIN, ProcessedFrame
from .config import Resolution


@dataclass(slots=True)
class _Period:
    node: str
    channel: str
    start: float
    first_id: int  # the lowest measurement id in it
    unit: str | None
    seq: int
    received: float
    count: int = 0  # numbers aggregated
    total: float = 0.0
    low: float | int | None = None
    high: float | int | None = None
    bad: int = 0
    uncertain: int = 0


class Aggregator:
    def __init__(self, resolution: Resolution, delay: float) -> None:
        assert resolution.period is not None
        self.period = resolution.period
        self.aggregates = resolution.aggregates
        self.grace = resolution.grace
        self.closing_lag = resolution.period + delay + resolution.grace  # start -> closed by the wall clock
        self._open: dict[tuple[str, str], _Period] = {}
        self._closed_upto: dict[tuple[str, str], float] = {}  # newest closed period start per channel
        self.late = 0

    def reset(self, confirmed: dict[tuple[str, str], float]) -> None:
        """A new session: forget open periods; periods up to ``confirmed``
        (per channel) were delivered."""
        self._open.clear()
        self._closed_upto = dict(confirmed)

    def hold(self) -> int | None:
        return min((p.first_id for p in self._open.values()), default=None)

    def wake_at(self) -> float | None:
        """When the oldest open period closes by the clock (if no reading closes it first)."""
        start = min((p.start for p in self._open.values()), default=None)
        return None if start is None else start + self.closing_lag

    def add(self, frame: ProcessedFrame) -> tuple[list[ProcessedFrame], list[tuple[str, str, float]]]:
        """Take a data frame's readings; returns the periods they closed (as
        frames) and their (node, channel, start)."""
        closed: list[_Period] = []
        node, period, open_, done = frame.node, self.period, self._open, self._closed_upto
        for i, (channel, t, value, unit, quality) in enumerate(
                zip(frame.channels, frame.times, frame.values, frame.units, frame.quality)):
            if type(t) not in (float, int) or not math.isfinite(t):
                self.late += 1  # no usable time: no period to put it in
                continue
            start = math.floor(t / period) * period
            key = (node, channel)
            current = open_.get(key)
            if current is None or start > current.start:
                if start <= done.get(key, -math.inf):
                    self.late += 1
                    continue
                if current is not None:
                    closed.append(current)
                    done[key] = current.start
                current = open_[key] = _Period(node, channel, start, frame.id_of(i), unit, frame.seq, frame.received)
            elif start < current.start:
                self.late += 1
                continue
            _take(current, value, quality, unit, frame)
        return self._frames(closed)

    def expire(self, horizon: float) -> tuple[list[ProcessedFrame], list[tuple[str, str, float]]]:
        """Close the periods that ended ``grace`` before ``horizon``: the time
        up to which the stream is read (the channel went quiet)."""
        if not self._open:
            return [], []
        deadline = horizon - self.period - self.grace
        closed = [p for p in self._open.values() if p.start <= deadline]
        for p in closed:
            key = (p.node, p.channel)
            del self._open[key]
            self._closed_upto[key] = p.start
        return self._frames(closed)

    def _frames(self, closed: Sequence[_Period]) -> tuple[list[ProcessedFrame], list[tuple[str, str, float]]]:
        groups: dict[tuple[str, float], list[_Period]] = {}
        for p in closed:
            if p.count or p.bad:  # a period of text readings only: nothing to say
                groups.setdefault((p.node, p.start), []).append(p)
        frames = [self._frame(periods) for periods in groups.values()]
        return frames, [(p.node, p.channel, p.start) for periods in groups.values() for p in periods]

    def _frame(self, periods: list[_Period]) -> ProcessedFrame:
        channels, values, units, quality, reasons = [], [], [], bytearray(), []
        for p in periods:
            code, reason = _verdict(p)
            for name in self.aggregates:
                channels.append(f"{p.channel}.{name}")
                if name == "count":
                    values.append(p.count)
                    units.append(None)
                else:
                    values.append(None if not p.count else (p.total / p.count if name == "mean" else
                                                              p.low if name == "min" else p.high))
                    units.append(p.unit)
                quality.append(code)
                reasons.append(reason)
        head = periods[0]
        count = len(channels)
        return ProcessedFrame(
            first_id=min(p.first_id for p in periods), frame_id=0, node=head.node, seq=max(p.seq for p in periods),
            kind=KIND_DATA, received=max(p.received for p in periods), channels=tuple(channels),
            times=(head.start,) * count, values=tuple(values), units=tuple(units), quality=bytes(quality),
            reasons=tuple(reasons),
        )


def _take(period: _Period, value, quality: int, unit: str | None, frame: ProcessedFrame) -> None:
    if frame.seq > period.seq:
        period.seq = frame.seq
    if frame.received > period.received:
        period.received = frame.received
    if unit is not None:
        period.unit = unit
    kind = type(value)
    if quality == BAD or value is None or (kind is float and not math.isfinite(value)):
        period.bad += 1
        return
    if kind is not float and kind is not int:
        return  # text, boolean, bytes: not a number to aggregate
    period.count += 1
    period.total += value
    if period.low is None or value < period.low:
        period.low = value
    if period.high is None or value > period.high:
        period.high = value
    if quality == UNCERTAIN:
        period.uncertain += 1


def _verdict(period: _Period) -> tuple[int, str | None]:
    if not period.count:
        return BAD, f"no valid reading in the period ({period.bad} bad)"
    if period.bad:
        return UNCERTAIN, f"{period.bad} of {period.bad + period.count} readings bad, left out"
    if period.uncertain:
        return UNCERTAIN, f"{period.uncertain} of {period.count} readings uncertain"
    return GOOD, None
