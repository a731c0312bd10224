"""Routes to partners: each partner's MQTT broker, fed from the durable outbox.

``parse_routes`` validates the ``[[routes]]`` tables of gateway.toml;
``run_routes`` runs every route concurrently until ``stop`` is set.  Each
route keeps its own durable cursor, so a slow or unreachable partner never
holds up the others and its backlog drains in order when it returns.  See
docs/integrator.md for what partners receive.
"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from ..model import MeasurementSource
from .config import RouteConfig, TlsConfig, parse_routes
from .metrics import RouteMetrics
from .route import Route

__all__ = ["RouteConfig", "TlsConfig", "parse_routes", "run_routes"]


async def run_routes(
    routes: list[RouteConfig],
    source: MeasurementSource,
    stop: asyncio.Event,
    registry: CollectorRegistry | None = None,
) -> None:
    """Run every route until ``stop`` is set; returns once all have sent
    their "offline" status and saved their cursors."""
    metrics = RouteMetrics(registry)
    tasks = [asyncio.create_task(Route(r, source, metrics).run(stop), name=f"route {r.name}") for r in routes]
    try:
        # Each route catches its own errors; gather only sees a bug.
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
