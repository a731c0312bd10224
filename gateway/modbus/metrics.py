"""Prometheus metrics of the Modbus pollers, labelled by device (virtual node).
Without a registry every update is a no-op, so the poller never checks."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class PollerMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.enabled = registry is not None
        if not self.enabled:
            return
        self._polls = Counter(
            "smemet_modbus_polls_total", "Polls of a device (complete or not)", ["device"],
            registry=registry,
        )
        self._failures = Counter(
            "smemet_modbus_poll_failures_total",
            "Read requests that failed after their retries, by reason "
            "(timeout, bad-frame, disconnected, exception-N, error)",
            ["device", "reason"], registry=registry,
        )
        self._retries = Counter(
            "smemet_modbus_retries_total", "Read requests sent again after a timeout or garbled frame",
            ["device"], registry=registry,
        )
        self._registers = Counter(
            "smemet_modbus_registers_read_total", "Registers read successfully", ["device"],
            registry=registry,
        )
        self._overruns = Counter(
            "smemet_modbus_overruns_total", "Polls that started late because the previous one overran its period",
            ["device"], registry=registry,
        )
        self._held = Counter(
            "smemet_modbus_submit_retries_total",
            "Submissions to the outbox retried (readings kept, never dropped), by reason",
            ["device", "reason"], registry=registry,
        )
        self._latency = Histogram(
            "smemet_modbus_poll_seconds", "Time to poll every register block of a device", ["device"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )

    def polled(self, device: str, seconds: float) -> None:
        if self.enabled:
            self._polls.labels(device).inc()
            self._latency.labels(device).observe(seconds)

    def failure(self, device: str, reason: str) -> None:
        if self.enabled:
            self._failures.labels(device, reason).inc()

    def retry(self, device: str) -> None:
        if self.enabled:
            self._retries.labels(device).inc()

    def registers(self, device: str, n: int) -> None:
        if self.enabled:
            self._registers.labels(device).inc(n)

    def overrun(self, device: str) -> None:
        if self.enabled:
            self._overruns.labels(device).inc()

    def held(self, device: str, reason: str) -> None:
        if self.enabled:
            self._held.labels(device, reason).inc()
