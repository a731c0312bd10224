"""The terms of an agreement as a delivery stage: what the delivery loop
applies to a sink's frames between reading them (and its selection: the
agreement's channels) and ``sink.deliver``.  Transport-neutral: any sink
with a ``terms`` attribute gets it (``delivery/loop.py``).

In order, per frame:

1. **validity**: only measurements taken in [from, until) are shared, and
   only while the agreement is in force (from ``from`` until ``until`` plus
   the delay); outside it nothing goes out and ``state()`` says why;
2. **pseudonyms**: with aliases defined, only nodes that have one are
   shared, under their alias (checked first, so a node that is not shared
   never holds the others back);
3. **delay** (embargo): a frame is due when its newest measurement (no later
   than its arrival: a node clock running ahead must not stall the route) is
   older than the delay.  The first frame not due ends the batch: the loop
   reads it again once due (``Release.resume_after``, ``Release.wake``), so
   nothing newer than the delay ever leaves and nothing waits in memory;
4. **resolution**: raw, or aggregates per period (``aggregate.py``); open
   periods hold the cursor (``Release.hold``) and close by the clock
   (``Release.wake``);
5. **fields**: units and quality reasons travel only when the agreement
   says so (otherwise they are null); node diagnostics (status frames) only
   with "status" (the loop's selection, ``Agreement.kinds``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ..spine import KIND_DATA, ProcessedFrame
from .aggregate import Aggregator
from .config import Agreement


@dataclass(frozen=True, slots=True)
class Release:
    """What the terms let through now, and what the loop must do about the rest."""

    frames: list[ProcessedFrame]
    resume_after: int | None = None  # frames with ids after this were not consumed: read them again once due
    hold: int | None = None  # open periods need measurements from this id on: the cursor stays below it
    wake: float | None = None  # Unix s: apply again then, even without new frames
    receipt: object = None  # give back to ``confirmed`` once the sink confirmed ``frames``


@dataclass(slots=True)
class TermsStats:
    """Measurements the terms kept from the partner, by why (for the console)."""

    outside_validity: int = 0
    no_alias: int = 0
    late_for_period: int = 0

    def as_dict(self) -> dict:
        return {"outside_validity": self.outside_validity, "no_alias": self.no_alias,
                "late_for_period": self.late_for_period}


class WindowStore:
    """Where confirmed aggregation periods are remembered (ledger/store.py has it)."""

    def windows(self, route: str) -> dict[tuple[str, str], float]:
        return {}

    def save_windows(self, route: str, windows) -> None:
        pass


@dataclass
class Terms:
    agreement: Agreement
    route: str
    store: WindowStore = field(default_factory=WindowStore)
    stats: TermsStats = field(default_factory=TermsStats)

    def __post_init__(self) -> None:
        a = self.agreement
        self._aliases = a.aliases if a.pseudonyms else None
        self._strip_units = "unit" not in a.fields
        self._strip_reasons = "reason" not in a.fields
        self._aggregator = Aggregator(a.resolution, a.delay) if not a.resolution.raw else None
        self._confirmed: dict[tuple[str, str], float] | None = None
        self._read_upto = 0.0  # the latest arrival (Unix s) among the frames aggregated so far
        self._validity = a.valid_from is not None or a.valid_until is not None
        self._from = a.valid_from if a.valid_from is not None else -math.inf
        self._until = a.valid_until if a.valid_until is not None else math.inf
        # raw, no embargo, no campaign, real names, every field: the frames pass as they are
        self.passthrough = (self._aggregator is None and not a.delay and not self._validity
                            and self._aliases is None and not self._strip_units and not self._strip_reasons)

    def state(self, now: float) -> tuple[bool, str]:
        return self.agreement.state(now)

    def start(self, cursor: int) -> None:
        """A session starts; the loop reads again after ``cursor``."""
        if self._aggregator is not None:
            if self._confirmed is None:
                self._confirmed = self.store.windows(self.route)
            self._aggregator.reset(self._confirmed)
            self._read_upto = 0.0

    def confirmed(self, receipt) -> None:
        """The sink confirmed a release: remember its periods as delivered."""
        if receipt:
            self.store.save_windows(self.route, receipt)
            assert self._confirmed is not None
            for node, channel, start in receipt:
                if start > self._confirmed.get((node, channel), -math.inf):
                    self._confirmed[(node, channel)] = start

    def apply(self, frames: Sequence[ProcessedFrame], now: float, reached_end: bool = True) -> Release:
        """The terms on ``frames`` (the loop's selection of one read, in
        order) at ``now``; ``reached_end``: that read found nothing after
        these frames (the route is caught up)."""
        if self.passthrough:
            return Release(list(frames))
        a, aggregator = self.agreement, self._aggregator
        out: list[ProcessedFrame] = []
        receipt: list = []
        resume_after = wake = None
        expired = a.valid_until is not None and now >= a.valid_until + a.delay
        for frame in frames:
            if expired:
                self.stats.outside_validity += len(frame)
                continue
            if self._validity:
                frame = self._within_validity(frame)
                if frame is None:
                    continue
            if self._aliases is not None and frame.node not in self._aliases:
                self.stats.no_alias += len(frame)
                continue
            due = self._due(frame)
            if due > now:  # embargoed (or the agreement is not in force yet): read again then
                resume_after, wake = frame.id_of(0) - 1, due
                break
            if aggregator is not None and frame.kind == KIND_DATA:
                closed, periods = aggregator.add(frame)
                out += closed
                receipt += periods
                if frame.received > self._read_upto:
                    self._read_upto = frame.received
            else:
                out.append(frame)
        hold = None
        if aggregator is not None:
            # quiet channels: the stream is read up to the arrival of what was
            # read; once caught up (or at an embargoed frame), up to now less the delay
            horizon = self._read_upto
            if reached_end or resume_after is not None:
                horizon = max(horizon, now - a.delay)
            closed, periods = aggregator.expire(horizon)
            out += closed
            receipt += periods
            self.stats.late_for_period = aggregator.late
            hold = aggregator.hold()
            closing = aggregator.wake_at()
            if closing is not None and (wake is None or closing < wake):
                wake = closing
        return Release([self._shared(f) for f in out], resume_after, hold, wake, receipt or None)

    def _within_validity(self, frame: ProcessedFrame) -> ProcessedFrame | None:
        times, low, high = frame.times, self._from, self._until
        if math.isfinite(sum(times)) and low <= min(times) and max(times) < high:
            return frame
        keep = [i for i, t in enumerate(times) if low <= t < high]  # NaN compares false: left out
        self.stats.outside_validity += len(times) - len(keep)
        return frame.pick(keep) if keep else None

    def _due(self, frame: ProcessedFrame) -> float:
        """When ``frame`` may go out: its newest measurement plus the delay,
        and never before the agreement is in force."""
        a = self.agreement
        due = a.valid_from if a.valid_from is not None else -math.inf
        if a.delay:
            finite = [t for t in frame.times if math.isfinite(t)]
            newest = max(finite) if finite else frame.received
            if frame.received > 0:  # a node clock ahead of ours must not hold the route back
                newest = min(newest, frame.received)
            due = max(due, newest + a.delay)
        return due

    def _shared(self, frame: ProcessedFrame) -> ProcessedFrame:
        """The frame as the partner may see it: aliases, and only the agreed fields."""
        changes: dict = {}
        if self._aliases is not None:
            changes["node"] = self._aliases[frame.node]
        if self._strip_units:
            changes["units"] = (None,) * len(frame)
        if self._strip_reasons:
            changes["reasons"] = (None,) * len(frame)
        return replace(frame, **changes) if changes else frame
