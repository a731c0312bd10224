"""Which measurement ids a sink may mark delivered.

Confirmations (MQTT PUBACKs) can complete out of order across concurrent
deliveries; the durable cursor may only move to the highest id below which
*everything* was confirmed, or a crash would skip what was still in flight.
"""

from __future__ import annotations

from collections import deque


class Delivery:
    """One delivery in flight: the ids up to ``last_id`` it covers."""

    __slots__ = ("last_id", "oldest_time", "confirmed")

    def __init__(self, last_id: int, oldest_time: float | None) -> None:
        self.last_id = last_id
        self.oldest_time = oldest_time  # measurement time of its oldest reading, for lag
        self.confirmed = False


class AckTracker:
    def __init__(self, cursor: int) -> None:
        self.acked = cursor  # every id <= acked is delivered (or not selected)
        self._pending: deque[Delivery] = deque()  # in send order

    def add(self, last_id: int, oldest_time: float | None = None) -> Delivery:
        """Register a delivery (or a stretch of unselected ids) in send
        order; pass it to ``done`` once confirmed."""
        entry = Delivery(last_id, oldest_time)
        self._pending.append(entry)
        return entry

    def skip(self, last_id: int) -> None:
        """Ids up to ``last_id`` needed no delivery (not selected)."""
        self.done(self.add(last_id))

    def done(self, entry: Delivery) -> None:
        entry.confirmed = True
        pending = self._pending
        while pending and pending[0].confirmed:
            self.acked = max(self.acked, pending.popleft().last_id)

    @property
    def in_flight(self) -> int:
        return sum(1 for e in self._pending if not e.confirmed)

    def oldest_time(self) -> float | None:
        """Measurement time of the oldest reading not yet confirmed."""
        times = [e.oldest_time for e in self._pending if not e.confirmed and e.oldest_time is not None]
        return min(times) if times else None
