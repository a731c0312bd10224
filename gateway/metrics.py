"""The gateway's Prometheus metrics, on a registry of their own (tests and
several gateways in one process must not collide on the global one).

Served with prometheus-client's WSGI app on a small threaded server, bound
to 127.0.0.1 by default (metrics name nodes, and nodes are plant topology),
with ``/healthz`` beside them (health.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import platform
import socket
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector,
                               make_wsgi_app)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .errors import MetricsError

PREFIX = "smemet_gateway"



class _Live:
    """A metric read at scrape time from a dict the hot path keeps (label
    value -> number): no lock and no call per frame, where a prometheus
    child's inc()/set() took both."""

    def __init__(self, family, name: str, documentation: str, label: str, values: Callable[[], Mapping]) -> None:
        self._family, self.name, self._documentation, self._label = family, name, documentation, label
        self._values = values

    def collect(self):
        family = self._family(self.name, self._documentation, labels=[self._label])
        for label_value, value in list(self._values().items()):
            family.add_metric([label_value], value)
        yield family

    def describe(self):
        yield self._family(self.name, self._documentation, labels=[self._label])


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._lives: dict[str, _Live] = {}
        r = self.registry
        self.frames_accepted = Counter(f"{PREFIX}_frames_accepted", "New frames committed to the outbox", registry=r)
        self.frames_duplicate = Counter(
            f"{PREFIX}_frames_duplicate", "Retransmissions of committed frames (re-ACKed, not delivered again)", registry=r
        )
        self.frames_rejected = Counter(f"{PREFIX}_frames_rejected", "Frames rejected, by protocol reason code", ["reason"], registry=r)
        # Per node only for registered nodes (bounded labels): a node flashed
        # with the wrong key shows up here as bad-mac.
        self.node_frames_rejected = Counter(
            f"{PREFIX}_node_frames_rejected", "Frames rejected from a registered node, by reason", ["node", "reason"], registry=r
        )
        self.frames_refused_full = Counter(
            f"{PREFIX}_frames_refused_full", "Valid frames not stored because the outbox was full (ACK status full)", registry=r
        )
        self.measurements = Counter(f"{PREFIX}_measurements_processed", "Measurement rows written by processing", registry=r)
        self.commit_seconds = Histogram(
            f"{PREFIX}_commit_seconds", "Duration of a group commit (fsync included)",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0), registry=r,
        )
        self.commit_frames = Histogram(
            f"{PREFIX}_commit_frames", "Frames per group commit", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096), registry=r,
        )
        self.outbox_frames = Gauge(f"{PREFIX}_outbox_frames", "Frames held in the outbox (audit and unprocessed)", registry=r)
        self.outbox_measurements = Gauge(f"{PREFIX}_outbox_measurements", "Measurements held for routes", registry=r)
        self.outbox_bytes = Gauge(f"{PREFIX}_outbox_bytes", "Outbox database bytes in use", registry=r)
        self.outbox_max_bytes = Gauge(f"{PREFIX}_outbox_max_bytes", "Configured outbox size limit", registry=r)
        self.storage_full = Gauge(f"{PREFIX}_storage_full", "1 while the outbox is full and frames are refused (alarm)", registry=r)
        self.processing_lag = Gauge(f"{PREFIX}_processing_lag_frames", "Committed frames not yet processed", registry=r)
        self.backlog_frames = Gauge(
            f"{PREFIX}_backlog_frames", "Frames between admission and processed storage (bounded: see ingest_paused)",
            registry=r,
        )
        self.ingest_paused = Gauge(
            f"{PREFIX}_ingest_paused", "1 while the links are not read because the backlog reached its bound", registry=r
        )
        self.ingest_pauses = Counter(f"{PREFIX}_ingest_pauses", "Times the links were paused by back-pressure", registry=r)
        self.udp_receive_drops = Gauge(
            f"{PREFIX}_udp_receive_drops",
            "Datagrams the kernel dropped on the ingest socket (receive buffer full), since the socket was opened; "
            "nodes retransmit them",
            registry=r,
        )
        self.node_store_depth = Gauge(
            f"{PREFIX}_node_store_depth", "Frames a node holds unacknowledged (from its status reports)", ["node"], registry=r
        )
        self.serial_port_up = Gauge(f"{PREFIX}_serial_port_up", "1 while a serial port is open", ["device"], registry=r)
        # What runs: the version and the process (CPU, memory, open files, start time).
        self.build_info = Gauge(f"{PREFIX}_build_info", "1, labelled with the gateway's version and implementation",
                                ["version", "implementation", "python"], registry=r)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)

    def set_build(self, version: str, implementation: str) -> None:
        self.build_info.labels(version, implementation, platform.python_version()).set(1)

    def live_counter(self, name: str, documentation: str, label: str, values: Callable[[], Mapping]) -> None:
        """A counter by ``label`` whose values ``values()`` gives when scraped
        (registered again by a gateway started again: the newest counts)."""
        self._live(_Live(CounterMetricFamily, f"{PREFIX}_{name}", documentation, label, values))

    def live_gauge(self, name: str, documentation: str, label: str, values: Callable[[], Mapping]) -> None:
        self._live(_Live(GaugeMetricFamily, f"{PREFIX}_{name}", documentation, label, values))

    def _live(self, collector: _Live) -> None:
        old = self._lives.pop(collector.name, None)
        if old is not None:
            self.registry.unregister(old)
        self.registry.register(collector)
        self._lives[collector.name] = collector

    def serve(self, bind: str, port: int, health=None):
        """Serve the metrics (any path) and, with ``health`` (a callable
        giving (HTTP status, JSON bytes)), ``/healthz``; returns (server,
        thread) or None when port is 0."""
        if port == 0:
            return None
        metrics_app = make_wsgi_app(self.registry)

        def app(environ, start_response):
            if health is not None and environ.get("PATH_INFO") == "/healthz":
                code, body = health()
                start_response(f"{code} {'OK' if code == 200 else 'Service Unavailable'}",
                               [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                                ("Cache-Control", "no-store")])
                return [body]
            return metrics_app(environ, start_response)

        server_class = _Server6 if ":" in bind else _Server
        try:
            server = make_server(bind, port, app, server_class, handler_class=_QuietHandler)
        except OSError as exc:
            from .ingest import explain_bind

            raise MetricsError(f"cannot serve metrics on {bind}:{port}: {explain_bind(exc, 'tcp', port)} "
                               "([metrics] port; 0 for none)") from None
        thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
        thread.start()
        return server, thread


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's name; a scrape is no log line
        pass
