"""Prometheus metrics of the sinks, labelled by sink name, kind and
destination-neutral: the same for every output.  Without a registry every
update is a no-op, so the loop never checks."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from .sink import Sink, SinkStats


class SinkMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.enabled = registry is not None
        if not self.enabled:
            return
        labels = ["sink", "kind"]
        self._connected = Gauge("smemet_sink_connected", "1 while the sink's session is up", labels, registry=registry)
        self._failures = Counter("smemet_sink_failures", "Failed connections and broken sessions", labels,
                                 registry=registry)
        self._cursor = Gauge("smemet_sink_cursor", "Last measurement id the sink delivered (confirmed)", labels,
                             registry=registry)
        self._messages = Counter("smemet_sink_messages_confirmed", "Messages the destination confirmed (MQTT: PUBACK)",
                                 labels, registry=registry)
        self._lag_measurements = Gauge("smemet_sink_lag_measurements",
                                       "Measurements processed but not yet delivered by the sink", labels,
                                       registry=registry)
        self._lag_frames = Gauge("smemet_sink_lag_frames", "Processed frames not yet (wholly) delivered by the sink",
                                 labels, registry=registry)
        self._lag_seconds = Gauge("smemet_sink_lag_seconds", "Age of the oldest measurement the sink has not delivered",
                                  labels, registry=registry)

    def bind(self, sink: Sink) -> BoundSinkMetrics:
        return BoundSinkMetrics(self, sink)


class BoundSinkMetrics:
    """One sink's children (labels() once, not per update)."""

    def __init__(self, metrics: SinkMetrics, sink: Sink) -> None:
        self.enabled = metrics.enabled
        self._reported = 0
        if not self.enabled:
            return
        labels = (sink.name, sink.kind)
        self._connected = metrics._connected.labels(*labels)  # noqa: SLF001
        self._failures = metrics._failures.labels(*labels)  # noqa: SLF001
        self._cursor = metrics._cursor.labels(*labels)  # noqa: SLF001
        self._messages = metrics._messages.labels(*labels)  # noqa: SLF001
        self._lag_measurements = metrics._lag_measurements.labels(*labels)  # noqa: SLF001
        self._lag_frames = metrics._lag_frames.labels(*labels)  # noqa: SLF001
        self._lag_seconds = metrics._lag_seconds.labels(*labels)  # noqa: SLF001

    def connected(self, up: bool) -> None:
        if self.enabled:
            self._connected.set(1 if up else 0)

    def failure(self) -> None:
        if self.enabled:
            self._failures.inc()

    def delivered(self, cursor: int, stats: SinkStats) -> None:
        if not self.enabled:
            return
        self._cursor.set(cursor)
        if stats.messages_confirmed > self._reported:
            self._messages.inc(stats.messages_confirmed - self._reported)
            self._reported = stats.messages_confirmed

    def lag(self, measurements: int, frames: int, seconds: float) -> None:
        if self.enabled:
            self._lag_measurements.set(measurements)
            self._lag_frames.set(frames)
            self._lag_seconds.set(seconds)
