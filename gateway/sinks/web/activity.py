"""Figures over time, sampled from the gateway's own counters once a second
(never per frame, so the data path pays nothing for them): ingest rates,
rejects in the last minutes, each node's usual frame period (from the
arrival times admission keeps), and each route's lag for a sparkline."""

from __future__ import annotations

import statistics
import time
from collections import deque
from dataclasses import dataclass

RATE_WINDOW = 10  # samples (seconds) a rate is averaged over
REJECT_WINDOW = 300.0  # seconds: "rejects in the last minutes"
REJECT_SNAPSHOT = 10.0  # seconds between snapshots of the reject counters
PERIOD_INTERVALS = 15  # arrival intervals kept per node; the period is their median
LAG_POINTS = 150  # per route: lag samples kept (one per LAG_STEP)
LAG_STEP = 2.0


@dataclass(frozen=True, slots=True)
class Rates:
    frames_per_s: float
    measurements_per_s: float
    rejects_per_s: float


class Activity:
    """``sample()`` once a second; the rest reads what it gathered."""

    def __init__(self, status, clock=time.monotonic) -> None:
        self._status = status
        self._clock = clock
        self._counters: deque[tuple[float, int, int, int]] = deque(maxlen=RATE_WINDOW + 1)
        self._reject_snapshots: deque[tuple[float, dict[str, int]]] = deque(
            maxlen=int(REJECT_WINDOW / REJECT_SNAPSHOT) + 2)
        self._last_seen: dict[str, float] = {}
        self._intervals: dict[str, deque[float]] = {}
        self._lags: dict[str, deque[tuple[float, float, int]]] = {}
        self._last_lag = -float("inf")

    def sample(self) -> None:
        status, now = self._status, self._clock()
        rejects = status.rejects()
        self._counters.append((now, status.frames_stored, status.measurements_processed, sum(rejects.values())))
        if not self._reject_snapshots or now - self._reject_snapshots[-1][0] >= REJECT_SNAPSHOT:
            self._reject_snapshots.append((now, rejects))
        seen, intervals = self._last_seen, self._intervals
        for node, arrived in status.last_seen().items():
            before = seen.get(node)
            if before is not None and arrived > before:
                kept = intervals.get(node)
                if kept is None:
                    kept = intervals[node] = deque(maxlen=PERIOD_INTERVALS)
                kept.append(arrived - before)
            seen[node] = arrived
        if now - self._last_lag >= LAG_STEP:
            self._last_lag = now
            wall = time.time()
            for sink in status.sinks():
                lags = self._lags.get(sink.name)
                if lags is None:
                    lags = self._lags[sink.name] = deque(maxlen=LAG_POINTS)
                lags.append((wall, sink.lag_seconds, sink.lag_measurements))

    def rates(self) -> Rates:
        if len(self._counters) < 2:
            return Rates(0.0, 0.0, 0.0)
        (t0, f0, m0, r0), (t1, f1, m1, r1) = self._counters[0], self._counters[-1]
        span = t1 - t0
        if span <= 0:
            return Rates(0.0, 0.0, 0.0)
        return Rates((f1 - f0) / span, (m1 - m0) / span, (r1 - r0) / span)

    def recent_rejects(self) -> tuple[float, dict[str, int]]:
        """(seconds covered, reason -> rejects in that time), up to
        REJECT_WINDOW; the current counters against the oldest snapshot."""
        now = self._clock()
        current = self._status.rejects()
        base_time, base = now, current
        for taken, snapshot in self._reject_snapshots:
            if now - taken <= REJECT_WINDOW:
                base_time, base = taken, snapshot
                break
        recent = {reason: count - base.get(reason, 0) for reason, count in current.items()}
        return now - base_time, {reason: n for reason, n in recent.items() if n > 0}

    def period(self, node: str) -> float | None:
        """The node's usual time between frames (median of recent arrival
        intervals, as sampled: at least about a second), None until known."""
        kept = self._intervals.get(node)
        if not kept or len(kept) < 2:
            return None
        return statistics.median(kept)

    def lag_history(self, sink: str, since: float) -> tuple[list[float], list[float], list[int]]:
        """(Unix s, lag seconds, lag measurements) samples of a sink since ``since``."""
        times, seconds, measurements = [], [], []
        for taken, lag_s, lag_m in self._lags.get(sink, ()):
            if taken >= since:
                times.append(taken)
                seconds.append(round(lag_s, 3))
                measurements.append(lag_m)
        return times, seconds, measurements
