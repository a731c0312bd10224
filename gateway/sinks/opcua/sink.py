"""The OPC UA server as a sink: latest values, node diagnostics and recent
history for a plant's DCS, MES and historians.

``start()`` opens the asyncua server (a port in use stops the gateway with
one line); the delivery loop hands it processed frames like any sink.
``deliver`` only notes the newest measurement per channel and confirms at
once (an in-memory view: ``durable = False``); a flush task writes what
changed into the address space at most every ``FLUSH_INTERVAL``, so a
burst of frames costs one update per channel, not one per measurement, and
the data path never waits on OPC UA.  A watch task marks silent nodes stale
and refreshes the diagnostics.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from statistics import median

from asyncua import Server, ua
from asyncua.server.internal_session import InternalSession

from ...delivery import Selection, Sink
from ...errors import ConfigError
from ...spine import KIND_STATUS, ProcessedFrame
from .certs import load_or_create
from .config import NAMESPACE_URI, OpcuaConfig
from .history import OutboxHistory
from .security import ReadOnlyAttributes, ReadOnlyRules, TrustList
from .space import STATUS_RECORDS, AddressSpace
from .users import UserFile

log = logging.getLogger("smemet.gateway.sinks.opcua")

FLUSH_INTERVAL = 0.05  # s between address-space updates: bounds the cost under load, adds <= 50 ms latency
WATCH_INTERVAL = 1.0  # s between stale checks
DIAGNOSTICS_INTERVAL = 5.0  # s between diagnostics refreshes
DEFAULT_PERIOD = 20.0  # s assumed for a node until two of its frames were seen
_NEG = float("-inf")
_POLICIES = {
    "Basic256Sha256": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    "Aes128_Sha256_RsaOaep": ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
    "Aes256_Sha256_RsaPss": ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
    "None": ua.SecurityPolicyType.NoSecurity,
}


@dataclass(slots=True)
class NodeActivity:
    """When a node was last heard and how often it sends, for staleness."""

    last_arrival: float = _NEG
    last_newest: float = _NEG  # the newest measurement time of its last data frame
    intervals: deque = field(default_factory=lambda: deque(maxlen=9))
    stale: bool = False

    def saw(self, received: float, newest: float) -> None:
        self.last_arrival = max(self.last_arrival, received)
        if newest > self.last_newest:
            if self.last_newest != _NEG:
                self.intervals.append(newest - self.last_newest)
            self.last_newest = newest

    @property
    def period(self) -> float:
        """The node's sending period: the median step of its frames' newest
        readings (robust to a backlog replayed in a burst)."""
        return median(self.intervals) if self.intervals else DEFAULT_PERIOD


class OpcuaSink(Sink):
    kind = "opcua"
    durable = False
    replay = 200_000  # at start the address space is filled again from the outbox's recent past

    def __init__(self, config: OpcuaConfig, outbox, status=None) -> None:
        super().__init__()
        self.config = config
        self.name = "opcua"
        self.description = config.endpoint
        self.selection = Selection(config.include, config.exclude, ("data", "status"))
        self.history = config.history
        self.outbox = outbox
        self.status = status
        self.server: Server | None = None
        self.space: AddressSpace | None = None
        self.identity = None
        self.users: UserFile | None = None
        self.trust: TrustList | None = None
        self._pending: dict[str, tuple] = {}  # "node/channel" -> its newest measurement not yet shown
        self._newest: dict[str, float] = {}  # "node/channel" -> time of the newest measurement taken
        self._status_pending: dict[tuple[str, str], tuple] = {}  # (node, record) -> (value, time)
        self._nodes: dict[str, NodeActivity] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    # ------------------------------------------------------------ server

    async def start(self) -> None:
        cfg = self.config
        where = "opcua"
        _quiet_asyncua()
        self.identity = load_or_create(cfg.certificate, cfg.private_key, cfg.application_uri,
                                       _hostnames(cfg), where)
        self.users = UserFile(cfg.users_file, cfg.allow_anonymous, f"{where}.users_file")
        self.trust = TrustList(cfg.pki)
        _check_port(cfg)
        server = Server(user_manager=self.users)
        await server.init()
        server.set_server_name(f"SME-MET Edge gateway {cfg.gateway_id}")
        server.product_uri = "urn:smemet-edge"
        server.manufacturer_name = "SME-MET Edge"
        server.set_endpoint(cfg.endpoint)
        server.socket_address = (cfg.bind, cfg.port)
        await server.set_application_uri(cfg.application_uri)
        await server.load_certificate(cfg.certificate)
        await server.load_private_key(cfg.private_key)
        server.set_security_policy([_POLICIES[p] for p in cfg.security_policies], permission_ruleset=ReadOnlyRules())
        tokens = [ua.UserNameIdentityToken] if cfg.users_file else []
        if cfg.allow_anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        server.set_certificate_validator(self.trust)
        iserver = server.iserver
        iserver.attribute_service = ReadOnlyAttributes(iserver.aspace)
        InternalSession.max_connections = cfg.max_sessions
        namespace = await server.register_namespace(NAMESPACE_URI)
        steps_for = getattr(self.status, "steps_for", None)
        self.space = space = AddressSpace(server, namespace, cfg.gateway_id, steps_for)
        space.build_gateway()
        iserver.history_manager = OutboxHistory(self.outbox, self._channel_of)
        try:
            await server.start()
        except OSError as exc:
            with suppress(Exception):
                await server.stop()
            raise _listen_error(cfg, exc) from None
        self.server = server
        self._tasks = [asyncio.create_task(self._flush_loop(), name="opcua flush"),
                       asyncio.create_task(self._watch_loop(), name="opcua watch")]
        log.info("opcua: serving %s (%s; %s)", cfg.endpoint, ", ".join(cfg.security_policies),
                 "anonymous allowed" if cfg.allow_anonymous else "users only")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.server is not None:
            server, self.server = self.server, None
            await server.stop()

    def _channel_of(self, nodeid: ua.NodeId) -> tuple[str, str] | None:
        var = self.space.by_nodeid.get(nodeid) if self.space else None
        return None if var is None else (var.node, var.channel)

    # ------------------------------------------------------------ the sink

    async def open(self) -> None:
        return None  # the server runs from start() to stop(), across sessions

    async def deliver(self, frames: Sequence[ProcessedFrame], confirm: Callable[[], None]) -> None:
        pending, newest, nodes = self._pending, self._newest, self._nodes
        taken = 0
        for frame in frames:
            node = frame.node
            activity = nodes.get(node)
            if activity is None:
                activity = nodes[node] = NodeActivity()
            channels, times = frame.channels, frame.times
            if frame.kind == KIND_STATUS:
                activity.saw(frame.received, _NEG)
                for i, record in enumerate(channels):
                    self._status_pending[(node, record)] = (frame.values[i], times[i])
                continue
            activity.saw(frame.received, max(times))
            values, units, quality, reasons = frame.values, frame.units, frame.quality, frame.reasons
            calibrations = frame.calibrations
            prefix = node + "/"
            for i, channel in enumerate(channels):
                key = prefix + channel
                moment = times[i]
                if moment >= newest.get(key, _NEG):
                    newest[key] = moment
                    pending[key] = (node, channel, values[i], moment, units[i], quality[i], reasons[i],
                                    calibrations[i] if calibrations is not None else None)
            taken += len(channels)
        self.stats.messages_sent += taken
        self.stats.messages_confirmed += taken
        self._wake.set()
        confirm()

    async def _flush_loop(self) -> None:
        space = self.space
        assert space is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                if self._pending:
                    batch, self._pending = self._pending, {}
                    await space.update(batch.values())
                    for node in {entry[0] for entry in batch.values()}:
                        activity = self._nodes.get(node)
                        if activity is not None:
                            activity.stale = False
                if self._status_pending:
                    records, self._status_pending = self._status_pending, {}
                    for (node, record), (value, moment) in records.items():
                        name = STATUS_RECORDS.get(record, record)
                        if isinstance(value, str):
                            await space.set_diagnostic(node, name, value, ua.VariantType.String, moment)
                        elif isinstance(value, (int, float)) and not isinstance(value, bool):
                            await space.set_diagnostic(node, name, float(value), ua.VariantType.Double, moment)
                self.stats.extra["channels"] = len(space.channels)
            except Exception:  # noqa: BLE001 - one bad update must not stop the server's updates
                log.exception("opcua: updating the address space failed")
            await asyncio.sleep(FLUSH_INTERVAL)

    async def _watch_loop(self) -> None:
        last_diagnostics = 0.0
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            try:
                await self._mark_silent_nodes()
                if time.monotonic() - last_diagnostics >= DIAGNOSTICS_INTERVAL:
                    last_diagnostics = time.monotonic()
                    await self._refresh_diagnostics()
            except Exception:  # noqa: BLE001 - diagnostics must not stop the server
                log.exception("opcua: stale check or diagnostics failed")

    async def _mark_silent_nodes(self) -> None:
        space, cfg = self.space, self.config
        assert space is not None
        now = time.time()
        seen = self._last_seen()
        stale = 0
        for node, activity in self._nodes.items():
            last = max(activity.last_arrival, seen.get(node) or _NEG)
            limit = max(cfg.stale_min, cfg.stale_periods * activity.period)
            if now - last > limit:
                stale += 1
                if not activity.stale:
                    activity.stale = True
                    if await space.mark_stale(node):
                        log.info("opcua: node %s silent for %.0f s (period %.1f s): its values are stale",
                                 node, now - last, activity.period)
        self.stats.extra["stale_nodes"] = stale

    def _last_seen(self) -> dict[str, float | None]:
        if self.status is None:
            return {}
        try:
            return {node.node: node.last_seen for node in self.status.nodes()}
        except Exception:  # noqa: BLE001 - a gateway still starting
            return {}

    async def _refresh_diagnostics(self) -> None:
        space, status = self.space, self.status
        assert space is not None
        node_status = {}
        if status is not None:
            with suppress(Exception):
                node_status = {n.node: n for n in status.nodes()}
        for node, activity in self._nodes.items():
            if node not in space.node_objects:
                continue
            info = node_status.get(node)
            last = max(activity.last_arrival, (info.last_seen or _NEG) if info else _NEG)
            if last != _NEG:
                await space.set_diagnostic(node, "LastSeen", _utc(last), ua.VariantType.DateTime)
            await space.set_diagnostic(node, "Period", float(activity.period), ua.VariantType.Double)
            await space.set_diagnostic(node, "Stale", activity.stale, ua.VariantType.Boolean)
            if info is not None:
                await space.set_diagnostic(node, "Rejects", sum(info.rejects.values()), ua.VariantType.UInt64)
                await space.set_diagnostic(node, "Registered", info.registered, ua.VariantType.Boolean)
                await space.set_diagnostic(node, "Link", info.link, ua.VariantType.String)
        if status is not None:
            with suppress(Exception):
                stats = status.outbox()
                await space.set_diagnostic(None, "Version", status.version, ua.VariantType.String)
                await space.set_diagnostic(None, "StartTime", _utc(status.started_at), ua.VariantType.DateTime)
                await space.set_diagnostic(None, "OutboxMeasurements", stats.measurements, ua.VariantType.UInt64)
                await space.set_diagnostic(None, "OutboxBytes", stats.bytes, ua.VariantType.UInt64)
                await space.set_diagnostic(None, "StorageFull", status.storage_full, ua.VariantType.Boolean)
                await space.set_diagnostic(None, "IngestPaused", status.ingest_paused, ua.VariantType.Boolean)

    def explain(self, exc: BaseException) -> str:
        return str(exc) or type(exc).__name__


def _utc(seconds: float):
    from .space import utc

    return utc(seconds)


def _hostnames(cfg: OpcuaConfig) -> list[str]:
    names = [cfg.hostname, socket.gethostname(), "localhost", "127.0.0.1"]
    if cfg.bind not in ("0.0.0.0", "::"):
        names.append(cfg.bind)
    return names


def _check_port(cfg: OpcuaConfig) -> None:
    """Bind the port once ourselves first: asyncua logs a traceback when it
    cannot, and the operator needs one line."""
    family = socket.AF_INET6 if ":" in cfg.bind else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server does
        try:
            probe.bind((cfg.bind, cfg.port))
        except OSError as exc:
            raise _listen_error(cfg, exc) from None


def _listen_error(cfg: OpcuaConfig, exc: OSError) -> ConfigError:
    return ConfigError("opcua", f"cannot listen on {cfg.bind}:{cfg.port} ({exc.strerror or exc}); is another OPC "
                                "UA server using the port, or the address not on this machine? Change [opcua] "
                                "bind/port, or set port = 0 to switch the server off")


def _quiet_asyncua() -> None:
    """asyncua logs every session at INFO and every refused certificate
    with a traceback; the gateway says what matters itself."""
    library = logging.getLogger("asyncua")
    if library.level == logging.NOTSET:
        library.setLevel(logging.WARNING)
    for noisy in ("asyncua.crypto.truststore", "asyncua.server.uaprocessor", "asyncua.server.binary_server_asyncio"):
        logger = logging.getLogger(noisy)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.CRITICAL)
