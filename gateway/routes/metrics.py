"""Prometheus metrics of the routes, labelled by route name.  Without a
registry every update is a no-op, so the route code never checks."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class RouteMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.enabled = registry is not None
        if not self.enabled:
            return
        self._published = Counter(
            "smemet_route_published_total", "Messages the broker acknowledged (PUBACK)", ["route"],
            registry=registry,
        )
        self._failures = Counter(
            "smemet_route_failures_total", "Failed connections and broken publishing sessions", ["route"],
            registry=registry,
        )
        self._lag_messages = Gauge(
            "smemet_route_lag_messages", "Measurements in the outbox not yet delivered by the route", ["route"],
            registry=registry,
        )
        self._lag_seconds = Gauge(
            "smemet_route_lag_seconds", "Age of the oldest measurement the route has not delivered", ["route"],
            registry=registry,
        )
        self._connected = Gauge(
            "smemet_route_connected", "1 while the route is connected to its broker", ["route"],
            registry=registry,
        )

    def published(self, route: str, n: int = 1) -> None:
        if self.enabled:
            self._published.labels(route).inc(n)

    def failure(self, route: str) -> None:
        if self.enabled:
            self._failures.labels(route).inc()

    def lag(self, route: str, messages: int, seconds: float) -> None:
        if self.enabled:
            self._lag_messages.labels(route).set(max(0, messages))
            self._lag_seconds.labels(route).set(max(0.0, seconds))

    def connected(self, route: str, up: bool) -> None:
        if self.enabled:
            self._connected.labels(route).set(1 if up else 0)
