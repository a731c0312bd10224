"""The gateway service: builds the parts from the config and runs them until
SIGTERM/SIGINT, then shuts down in order: stop ingest, finish the group commit
and its ACKs, process what was committed, give routes a moment to deliver,
close the outbox.  SIGHUP re-reads the key file (a newly commissioned node
is known at once, without a restart)."""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from .chains import warmup_seconds
from .config import GatewayConfig
from .errors import GatewayError
from .ingest import SerialLink, UdpLink
from .keys import KeyStore
from .latest import LatestValues
from .metrics import GatewayMetrics
from .outbox import Outbox
from .pipeline import Pipeline
from .processing import Processor

log = logging.getLogger("smemet.gateway")

try:  # the MQTT routes live in their own package
    from .routes import run_routes
except ImportError:  # pragma: no cover - a build without routes
    run_routes = None
try:
    from .modbus import run_pollers, run_server
except ImportError:  # pragma: no cover - a build without Modbus
    run_pollers = run_server = None


class Gateway:
    """All parts of one running gateway.  ``start`` opens everything (raising
    GatewayError for what the operator must fix), ``stop`` shuts down."""

    def __init__(self, config: GatewayConfig, keys: KeyStore | None = None, metrics: GatewayMetrics | None = None) -> None:
        self.config = config
        self.keys = keys if keys is not None else KeyStore.load(config.keys_file)
        self.metrics = metrics if metrics is not None else GatewayMetrics()
        self.outbox: Outbox | None = None
        self.pipeline: Pipeline | None = None
        self.udp: UdpLink | None = None
        self.serial: list[SerialLink] = []
        self.stopping = asyncio.Event()
        self._routes_stop = asyncio.Event()
        self._modbus_stop = asyncio.Event()
        self._pollers: asyncio.Task | None = None
        self._tasks: list[asyncio.Task] = []
        self._metrics_server = None
        self.started = False

    async def start(self) -> None:
        config = self.config
        self.outbox = Outbox(config.outbox.path, config.outbox.max_bytes)
        self.outbox.bind_loop(asyncio.get_running_loop())
        self.metrics.outbox_max_bytes.set(config.outbox.max_bytes)
        processor = Processor(config.steps_for, config.unit_for, warmup_s=warmup_seconds(config.channels))
        server = config.modbus.server if config.modbus is not None else None
        self.latest = LatestValues(c.key for c in server.channels) if server is not None and server.enabled else LatestValues(())
        self.pipeline = Pipeline(self.outbox, self.keys.get, processor, self.metrics, config.outbox, latest=self.latest)
        for serial in config.serial:  # a missing port is a start error; check before binding anything
            link = SerialLink(self.pipeline.handle, serial.device, serial.baud, serial.retry,
                              on_state=self.metrics.serial_port_up.labels(serial.device).set,
                              on_malformed=self.metrics.frames_rejected.labels("malformed").inc)
            link.open()
            self.serial.append(link)
        if config.metrics.port:
            self._metrics_server = self.metrics.serve(config.metrics.bind, config.metrics.port)
        await self.pipeline.start()
        if config.udp is not None:
            self.udp = await UdpLink.open(self.pipeline.handle, config.udp.bind, config.udp.port)
        if config.routes:
            if run_routes is None:
                raise RuntimeError("routes configured but smemet.gateway.routes is not installed")
            self._tasks.append(asyncio.create_task(
                run_routes(config.routes, self.outbox, self._routes_stop, self.metrics.registry), name="routes"))
        if config.modbus is not None:
            if run_pollers is None:
                raise RuntimeError("[modbus] configured but smemet.gateway.modbus is not installed")
            self._pollers = asyncio.create_task(
                run_pollers(config.modbus, self.pipeline, self._modbus_stop, self.metrics.registry), name="modbus pollers")
            if config.modbus.server is not None and config.modbus.server.enabled:
                server = asyncio.create_task(run_server(config.modbus, self.latest.get, self._modbus_stop), name="modbus server")
                self._tasks.append(server)
                await asyncio.wait({server}, timeout=0.5)  # a port in use fails at once: a start error
                if server.done() and server.exception() is not None:
                    raise server.exception()
        self._tasks.append(asyncio.create_task(self._maintain(), name="outbox maintenance"))
        self.started = True
        log.info(
            "gateway started",
            extra={"id": config.gateway_id, "nodes": len(self.keys), "udp": _udp_text(self.udp),
                   "serial": ",".join(s.device for s in config.serial) or "-", "routes": len(config.routes),
                   "outbox": config.outbox.path, "kernels": _kernel_implementation()},
        )

    def reload_keys(self) -> None:
        """Re-read the key file (SIGHUP), e.g. after ``smemet commission`` or
        ``gateway keys add``.  A broken file keeps the keys in use."""
        try:
            fresh = KeyStore.load(self.config.keys_file)
        except GatewayError as exc:
            log.error("key file not reloaded; the previous keys stay in use", extra={"error": str(exc)})
            return
        before = set(self.keys.nodes())
        self.keys.replace_with(fresh)
        after = set(self.keys.nodes())
        log.info("keys reloaded", extra={"nodes": len(after), "added": len(after - before), "removed": len(before - after)})

    async def stop(self) -> None:
        """Stop ingest, drain the pipeline, let routes deliver, close."""
        if self.started:
            log.info("gateway stopping")
        links = ([self.udp] if self.udp is not None else []) + self.serial
        for link in links:  # take no new frames, but keep the links for the last ACKs
            link.accepting = False
        self._modbus_stop.set()  # pollers submit what they hold, then stop
        if self._pollers is not None:
            try:
                await asyncio.wait_for(self._pollers, 10.0)
            except (TimeoutError, Exception):  # noqa: BLE001 - shutdown goes on
                log.exception("modbus pollers did not stop cleanly")
        if self.pipeline is not None:
            await self.pipeline.drain()
        for link in links:
            link.close()
        if self.config.routes and self.outbox is not None:
            await self._wait_routes_delivered(self.config.shutdown_grace)
        self._routes_stop.set()
        for task in self._tasks:
            if task.get_name() not in ("routes", "modbus server"):
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._metrics_server is not None:
            server, _thread = self._metrics_server
            server.shutdown()
            server.server_close()
        if self.outbox is not None:
            self.outbox.close()
        if self.started:
            log.info("gateway stopped")

    async def _wait_routes_delivered(self, grace: float) -> None:
        assert self.outbox is not None
        deadline = time.monotonic() + grace
        names = [route.name for route in self.config.routes]
        while time.monotonic() < deadline:
            cursors = self.outbox.route_cursors()
            if all(cursors.get(name, 0) >= self.outbox.last_measurement_id for name in names):
                return
            await asyncio.sleep(0.05)

    async def _maintain(self) -> None:
        """Prune, checkpoint and refresh the outbox gauges; while the outbox
        is full, look every second for freed space."""
        assert self.outbox is not None and self.pipeline is not None
        outbox, pipeline, config = self.outbox, self.pipeline, self.config.outbox
        routes = [route.name for route in self.config.routes]
        last_prune = 0.0
        while True:
            now = time.monotonic()
            try:
                if now - last_prune >= config.prune_interval or pipeline.full:
                    last_prune = now
                    frames, measurements = await pipeline.run_in_writer(outbox.prune, time.time(), config.audit_retention, routes)
                    if frames or measurements:
                        await pipeline.run_in_writer(outbox.checkpoint)
                        log.debug("pruned", extra={"frames": frames, "measurements": measurements})
                    pipeline._set_full(await pipeline.run_in_writer(outbox.is_full))  # noqa: SLF001
                self._update_gauges()
            except RuntimeError:  # the writer is shut down: we are stopping
                return
            except Exception:  # noqa: BLE001 - maintenance must not stop the gateway
                log.exception("outbox maintenance failed")
            await asyncio.sleep(1.0)

    def _update_gauges(self) -> None:
        assert self.outbox is not None
        outbox, m = self.outbox, self.metrics
        stats = outbox.stats()
        m.outbox_frames.set(stats["frames"])
        m.outbox_measurements.set(stats["measurements"])
        m.outbox_bytes.set(stats["bytes"])
        m.processing_lag.set(max(0, outbox.last_frame_id - stats["processed"]))
        cursors = stats["cursors"]
        for route in self.config.routes:
            m.route_lag.labels(route.name).set(max(0, outbox.last_measurement_id - cursors.get(route.name, 0)))


def _udp_text(udp: UdpLink | None) -> str:
    if udp is None:
        return "off"
    host, port = udp.address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _kernel_implementation() -> str:
    from . import kernels

    return kernels.IMPLEMENTATION


async def run(config: GatewayConfig, ready=None) -> None:
    """Run until SIGTERM or SIGINT.  ``ready(gateway)`` is called once the
    gateway listens (tests use it)."""
    gateway = Gateway(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, gateway.stopping.set)
    loop.add_signal_handler(signal.SIGHUP, gateway.reload_keys)
    try:
        await gateway.start()
    except BaseException:
        await gateway.stop()
        raise
    if ready is not None:
        ready(gateway)
    try:
        await gateway.stopping.wait()
    finally:
        await gateway.stop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
