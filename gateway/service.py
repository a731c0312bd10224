"""The gateway service: builds the stages from the config, wires them one
way, and runs them until SIGTERM/SIGINT.

    links -> Admission -> GroupCommit -> ProcessingStage -> outbox -> DeliveryLoop per sink

Shutdown goes in the same order: links stop taking frames, the commit
finishes its group and its ACKs, processing stores what was committed, the
sinks get ``shutdown_grace`` seconds to deliver, the outbox closes.  SIGHUP
re-reads the key file (a newly commissioned node is known at once)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time

from . import health, logs, native, sinks
from .acks import Acker
from .admission import Admission
from .backpressure import Backlog
from .calibration.book import CalibrationBook
from .calibration.config import uses_records
from .chains import warmup_seconds
from .commit import GroupCommit
from .config import GatewayConfig
from .delivery import DeliveryLoop, Sink, make_loops, run_loops
from .errors import GatewayError, OutboxFull
from .ingest import SerialLink, UdpLink
from .keys import KeyStore
from .metrics import GatewayMetrics
from .outbox import Outbox
from .processing import Processor
from .processing_stage import ProcessingStage
from .replay import ReplayBook
from .status import VERSION, GatewayStatus
from .writer import Writer

log = logging.getLogger("smemet.gateway")
_GC_DEFAULT = gc.get_threshold()

try:
    from .modbus import ModbusServerSink, run_pollers
except ImportError:  # pragma: no cover - a build without Modbus
    ModbusServerSink = run_pollers = None


class Gateway:
    """All parts of one running gateway.  ``start`` opens everything (raising
    GatewayError for what the operator must fix), ``stop`` shuts down."""

    def __init__(self, config: GatewayConfig, keys: KeyStore | None = None, metrics: GatewayMetrics | None = None) -> None:
        self.config = config
        self.keys = keys if keys is not None else KeyStore.load(config.keys_file)
        self.keys_loaded_at = time.time()
        self._keys_mtime = _mtime(config.keys_file)
        self.health = health.HealthBoard()
        self.metrics = metrics if metrics is not None else GatewayMetrics()
        self.outbox: Outbox | None = None
        self.writer: Writer | None = None
        self.commit: GroupCommit | None = None
        self.processing: ProcessingStage | None = None
        self.admission: Admission | None = None
        self.book: ReplayBook | None = None
        self.backlog = Backlog(config.backlog_frames, on_change=self._paused)
        self.udp: UdpLink | None = None
        self.serial: list[SerialLink] = []
        self.sinks: list[Sink] = []
        self.loops: list[DeliveryLoop] = []
        self.stopping = asyncio.Event()
        self._sinks_stop = asyncio.Event()
        self._modbus_stop = asyncio.Event()
        self._pollers: asyncio.Task | None = None
        self.modbus_states: dict = {}  # device name -> DeviceState (modbus/poller.py), for status pages
        self.calibration: CalibrationBook | None = None  # when a chain applies records or counts a life
        self._tasks: list[asyncio.Task] = []
        self._started_sinks: list[Sink] = []
        self._metrics_server = None
        self.started = False
        self.started_at = time.time()
        self.status = GatewayStatus(self)

    # ------------------------------------------------------------ start

    async def start(self) -> None:
        config = self.config
        self.outbox = outbox = Outbox(config.outbox.path, config.outbox.max_bytes)
        outbox.bind_loop(asyncio.get_running_loop())
        self.metrics.outbox_max_bytes.set(config.outbox.max_bytes)
        self.writer = Writer()
        book = self.book = ReplayBook(outbox.load_windows(), outbox.frame_tag)
        book.covered_frame_id = outbox.last_frame_id
        acker = Acker(self.keys.get)
        self.metrics.live_counter("acks_sent", "ACK frames sent, by status", "status", lambda: acker.sent)
        if uses_records(config.channels):
            calibration = CalibrationBook(config.outbox.path, config.calibration)
            calibration.start()
            self._calibration_metrics = calibration.collector()
            self.metrics.registry.register(self._calibration_metrics)
            self.calibration = calibration
        processor = Processor(config.steps_for, config.unit_for, warmup_s=warmup_seconds(config.channels),
                              calibration=self.calibration)
        self.processing = ProcessingStage(outbox, self.writer, processor, self.metrics, config.outbox, self.backlog)
        self.commit = GroupCommit(outbox, self.writer, book, acker, self.metrics, config.outbox, self.backlog,
                                  self.processing.submit)
        self.admission = Admission(book, self.commit, self.keys.get, acker, self.metrics)
        for serial in config.serial:  # a missing port is a start error; check before binding anything
            link = SerialLink(self.admission.handle, serial.device, serial.baud, serial.retry,
                              on_state=self.metrics.serial_port_up.labels(serial.device).set,
                              on_malformed=self.metrics.frames_rejected.labels("malformed").inc)
            link.open()
            self.serial.append(link)
            self.backlog.register(link)
        self.metrics.set_build(VERSION, native.implementation())
        self.metrics.live_gauge("node_key_loaded", "1 for every node whose key the gateway holds (loaded or reloaded)",
                                "node", lambda: dict.fromkeys(self.keys.nodes(), 1))
        await self.processing.start()
        await self.commit.start()
        self.sinks = self._build_sinks()
        for sink in self.sinks:  # listening servers: a port in use is a start error
            await sink.start()
            self._started_sinks.append(sink)
        if config.udp is not None:
            self.udp = await UdpLink.open(
                self.admission.handle, config.udp.bind, config.udp.port, config.udp.receive_buffer
            )
            self.backlog.register(self.udp)
        if config.metrics.port:  # last of the listeners: once it answers, the links take frames (tests and probes wait for it)
            self._metrics_server = self.metrics.serve(config.metrics.bind, config.metrics.port, self.health.response)
        self.loops = make_loops(self.sinks, outbox, self.metrics.registry)
        if self.loops:
            self._tasks.append(asyncio.create_task(run_loops(self.loops, self._sinks_stop), name="sinks"))
        if config.modbus is not None and config.modbus.devices:
            if run_pollers is None:
                raise RuntimeError("[modbus] configured but smemet.gateway.modbus is not installed")
            self._pollers = asyncio.create_task(
                run_pollers(config.modbus, self.commit, self._modbus_stop, self.metrics.registry, self.modbus_states),
                name="modbus pollers")
        self._tasks.append(asyncio.create_task(self._maintain(), name="outbox maintenance"))
        # Long-lived objects made at start (configuration, modules, chains)
        # need no more cyclic-GC passes: freezing them keeps each collection
        # to what the data path allocates since.
        gc.collect()
        gc.freeze()
        # The data path makes no reference cycles (refcounting frees it); a
        # collection every 700 allocations only re-scanned what was about to
        # be freed anyway: ~8 % of the gateway's CPU end to end.
        gc.set_threshold(50_000, 20, 20)
        self.started = True
        self._update_gauges()
        if not len(self.keys):
            log.warning("the key file lists no node: every node's frames are rejected as unknown-node; add keys with "
                        "smemet gateway keys add NODE --config ... and reload", extra={"file": config.keys_file})
        log.info(
            "gateway started",
            extra={"id": config.gateway_id, "nodes": len(self.keys), "udp": _udp_text(self.udp),
                   "serial": ",".join(s.device for s in config.serial) or "-",
                   "sinks": ",".join(f"{s.kind}:{s.name}" for s in self.sinks) or "-",
                   "outbox": config.outbox.path, "native": native.implementation()},
        )

    def _build_sinks(self) -> list[Sink]:
        context = sinks.SinkContext(self.config.gateway_id, self.outbox, self.metrics.registry, self.status,
                                    ledger=self.config.ledger)
        built: list[Sink] = []
        for kind in sinks.kinds():
            section = self.config.sinks.get(kind.SECTION)
            if section:
                built.extend(kind.sinks(section, context))
        modbus = self.config.modbus
        if modbus is not None and modbus.server is not None and modbus.server.enabled:
            if ModbusServerSink is None:
                raise RuntimeError("[modbus.server] configured but smemet.gateway.modbus is not installed")
            built.append(ModbusServerSink(modbus.server))
        return built

    def _paused(self, paused: bool) -> None:
        self.metrics.ingest_paused.set(1 if paused else 0)
        if paused:
            self.metrics.ingest_pauses.inc()
            log.info("ingest paused: the commit/processing backlog reached its bound (nodes keep their frames)",
                     extra={"frames": self.backlog.frames, "bound": self.backlog.high})

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
        self.keys_loaded_at = time.time()
        self._keys_mtime = _mtime(self.config.keys_file)
        after = set(self.keys.nodes())
        log.info("keys reloaded", extra={"nodes": len(after), "added": len(after - before), "removed": len(before - after)})

    def key_file_changed(self) -> bool:
        """Whether the key file was modified after the keys were (re)loaded."""
        mtime = _mtime(self.config.keys_file)
        return mtime is not None and self._keys_mtime is not None and mtime > self._keys_mtime

    # ------------------------------------------------------------ stop

    async def stop(self) -> None:
        """Stop ingest, drain the stages, let sinks deliver, close."""
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
        if self.commit is not None:
            await self.commit.drain()
        if self.processing is not None:
            await self.processing.drain()
        if self.book is not None and self.writer is not None:
            try:  # a start then replays no frames into the windows
                await self.writer.run(self.outbox.save_windows, *self.book.snapshot())
            except OutboxFull as exc:  # the next start replays the frames instead
                log.warning("replay windows not saved at stop; the next start rebuilds them from the frames",
                            extra={"why": str(exc)})
            except Exception:  # noqa: BLE001 - the next start replays the frames instead
                log.exception("replay windows not saved at stop; the next start rebuilds them from the frames")
        for link in links:
            link.close()
        if self.loops and self.outbox is not None:
            await self._wait_sinks_delivered(self.config.shutdown_grace)
        self._sinks_stop.set()
        for task in self._tasks:
            if task.get_name() != "sinks":
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for sink in self._started_sinks:
            try:
                await sink.stop()
            except Exception:  # noqa: BLE001 - shutdown goes on
                log.exception("sink %s did not stop cleanly", sink.name)
        if self.writer is not None:
            self.writer.shutdown()
        if self._metrics_server is not None:
            server, _thread = self._metrics_server
            server.shutdown()
            server.server_close()
        if self.calibration is not None:
            self.metrics.registry.unregister(self._calibration_metrics)
            self.calibration.close()
        if self.outbox is not None:
            self.outbox.close()
        gc.unfreeze()
        gc.set_threshold(*_GC_DEFAULT)
        if self.started:
            log.info("gateway stopped")

    async def _wait_sinks_delivered(self, grace: float) -> None:
        assert self.outbox is not None
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            last = self.outbox.last_measurement_id
            if all(loop.state.cursor >= last or loop.state.held_back for loop in self.loops):
                return  # (what an agreement holds back, an embargo or open periods, stays for the next start)
            await asyncio.sleep(0.05)

    # ------------------------------------------------------------ maintenance

    async def _maintain(self) -> None:
        """Prune, checkpoint and refresh the gauges; while the outbox is full
        (or a write failed for want of storage), look every second for
        freed space."""
        assert self.outbox is not None and self.writer is not None and self.commit is not None and self.book is not None
        outbox, writer, commit, config = self.outbox, self.writer, self.commit, self.config.outbox
        durable = [sink.name for sink in self.sinks if sink.durable]
        pruning = logs.Spell(log, "pruning the outbox")
        storing_cursors = logs.Spell(log, "storing the sinks' cursors")
        last_prune = 0.0
        while True:
            now = time.monotonic()
            try:
                if now - last_prune >= config.prune_interval or commit.full:
                    last_prune = now
                    windows, covered = self.book.snapshot()
                    try:
                        frames, measurements = await writer.run(outbox.prune, time.time(), config.audit_retention,
                                                                durable, windows, covered, self._history_hold())
                        if frames or measurements:
                            await writer.run(outbox.checkpoint)
                            log.debug("pruned", extra={"frames": frames, "measurements": measurements})
                        pruning.ok()
                    except OutboxFull as exc:  # the alarm below says it loudly; this is why space may not return
                        pruning.failed(str(exc))
                elif outbox.cursors_waiting:  # quiet: no processing transaction to carry them
                    try:
                        await writer.run(outbox.flush_cursors)
                        storing_cursors.ok()
                    except OutboxFull as exc:  # kept noted; the alarm below says why
                        storing_cursors.failed(str(exc))
                if commit.full or outbox.write_failure:
                    state = await writer.run(outbox.storage_state)
                    commit.set_full(bool(state), state)
                self._update_gauges()
            except RuntimeError:  # the writer is shut down: we are stopping
                return
            except Exception:  # noqa: BLE001 - maintenance must not stop the gateway
                log.exception("outbox maintenance failed")
            await asyncio.sleep(1.0)

    def _history_hold(self) -> float:
        """Seconds of processed data kept for sinks' history reads (Sink.history);
        0 while storage is full or three quarters used: history yields to
        measurements not yet delivered."""
        hold = max((sink.history for sink in self.sinks), default=0.0)
        if hold and self.outbox is not None and self.commit is not None:
            if self.commit.full or self.outbox.stats().bytes >= 0.75 * self.outbox.max_bytes:
                return 0.0
        return hold

    def _update_gauges(self) -> None:
        assert self.outbox is not None
        stats, m = self.outbox.stats(), self.metrics
        m.outbox_frames.set(stats.frames)
        m.outbox_measurements.set(stats.measurements)
        m.outbox_bytes.set(stats.bytes)
        m.processing_lag.set(max(0, stats.last_frame_id - stats.processed_frame_id))
        m.backlog_frames.set(self.backlog.frames)
        if self.udp is not None:
            drops = self.udp.kernel_drops()
            if drops is not None:
                m.udp_receive_drops.set(drops)
        self.health.update(health.document(self.status))


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _udp_text(udp: UdpLink | None) -> str:
    if udp is None:
        return "off"
    host, port = udp.address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
