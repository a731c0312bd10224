"""Which outbox ids a route may mark delivered.

PUBACKs can complete out of order across concurrent publishes; the durable
cursor may only move to the highest id below which *everything* was
acknowledged, or a crash would skip a message that was still in flight.
"""

from __future__ import annotations

from collections import deque


class AckTracker:
    def __init__(self, cursor: int) -> None:
        self.acked = cursor  # every id <= acked is delivered (or not selected)
        self._pending: deque[list] = deque()  # [last_id, done, oldest_time], in send order

    def add(self, last_id: int, oldest_time: float | None = None) -> list:
        """Register a message (or a stretch of unselected ids) in send order;
        returns the token to pass to ``done``."""
        entry = [last_id, False, oldest_time]
        self._pending.append(entry)
        return entry

    def skip(self, last_id: int) -> None:
        """Ids up to ``last_id`` needed no message (filtered out)."""
        self.done(self.add(last_id))

    def done(self, entry: list) -> None:
        entry[1] = True
        pending = self._pending
        while pending and pending[0][1]:
            self.acked = max(self.acked, pending.popleft()[0])

    @property
    def in_flight(self) -> int:
        return sum(1 for e in self._pending if not e[1])

    def oldest_time(self) -> float | None:
        """Measurement time of the oldest reading not yet acknowledged."""
        times = [e[2] for e in self._pending if not e[1] and e[2] is not None]
        return min(times) if times else None
