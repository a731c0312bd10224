"""The values that pass between the gateway's parts, and the two interfaces
that join them:

* ``MeasurementSource`` — what the durable outbox offers routes: processed
  measurements in commit order, each with a row id, and a durable cursor per
  route (a route advances its cursor only after its broker acknowledged).
* ``ReadingSink`` — what the pipeline offers in-process producers such as the
  Modbus pollers: submit readings as a virtual node; they get sequence numbers
  and the same durability as node frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

QUALITY_GOOD = "good"
QUALITY_UNCERTAIN = "uncertain"
QUALITY_BAD = "bad"


@dataclass(frozen=True, slots=True)
class Measurement:
    """One processed measurement, as routes deliver it.

    ``id`` orders measurements in the outbox (strictly increasing in commit
    order); ``(node, seq)`` names the frame it came from, and integrators
    deduplicate on ``(node, seq, channel, time)``.
    """

    id: int
    node: str
    seq: int
    channel: str
    time: float  # Unix seconds
    value: float | str | bool | None
    unit: str | None
    quality: str = QUALITY_GOOD
    reason: str | None = None
    kind: str = "data"  # "data" or "status"


@dataclass(frozen=True, slots=True)
class Reading:
    """A reading from an in-process producer (a Modbus poller)."""

    channel: str
    time: float
    value: float | None
    unit: str | None
    quality: str = QUALITY_GOOD
    reason: str | None = None


class MeasurementSource(Protocol):
    async def wait_beyond(self, after_id: int, timeout: float | None = None) -> None:
        """Return when a measurement with id > ``after_id`` exists (or on timeout)."""

    def read(self, after_id: int, limit: int) -> Sequence[Measurement]:
        """Up to ``limit`` measurements with id > ``after_id``, ascending."""

    def load_cursor(self, route: str) -> int:
        """The last id the route delivered (0 when it never did)."""

    def save_cursor(self, route: str, last_id: int) -> None:
        """Durably record that the route delivered everything up to ``last_id``."""


class ReadingSink(Protocol):
    async def submit(self, node: str, readings: Sequence[Reading]) -> int:
        """Commit readings of virtual node ``node`` durably; returns the
        sequence number given to them.  Raises ``OutboxFull`` when storage is
        full (the caller keeps them and retries)."""
