"""Delivery: every sink fed from the durable outbox by one loop each.

``run_sinks(sinks, outbox, stop, registry)`` runs a ``DeliveryLoop`` per
sink until ``stop`` is set.  Each keeps its own durable cursor, so a slow or
unreachable destination never holds up the others and its backlog drains in
order when it returns.  The interface a sink implements is in ``sink.py``.
"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from ..outbox import Outbox
from .loop import DeliveryLoop, SinkState, wait_any
from .metrics import SinkMetrics
from .selection import Selection
from .sink import Sink, SinkError, SinkStats

__all__ = ["DeliveryLoop", "Selection", "Sink", "SinkError", "SinkState", "SinkStats", "make_loops", "run_loops", "wait_any"]


def make_loops(sinks: list[Sink], outbox: Outbox, registry: CollectorRegistry | None = None) -> list[DeliveryLoop]:
    metrics = SinkMetrics(registry)
    return [DeliveryLoop(sink, outbox, metrics) for sink in sinks]


async def run_loops(loops: list[DeliveryLoop], stop: asyncio.Event) -> None:
    """Run every loop until ``stop`` is set; returns once all have closed
    their sessions and saved their cursors."""
    tasks = [asyncio.create_task(loop.run(stop), name=f"sink {loop.name}") for loop in loops]
    try:
        await asyncio.gather(*tasks)  # each loop catches its own errors; gather only sees a bug
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
