"""gateway.toml, validated at start into ``GatewayConfig``.

Every mistake raises ``ConfigError`` whose ``where`` names the file and key
path (``gateway.toml: outbox.max_bytes``) and whose message says what would be
valid.  Relative paths in the file are relative to the file's directory.  The
documented reference is docs/gateway.toml.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from typing import Any

from .calibration.config import CalibrationConfig, parse_calibration
from .errors import ConfigError
from .ledger.config import parse_ledger
from .settings import Table

DEFAULT_UDP_PORT = 47000
DEFAULT_METRICS_PORT = 9470
DEFAULT_RECEIVE_BUFFER = 8 * 2**20

_LEVELS = ("debug", "info", "warning", "error")
_FORMATS = ("logfmt", "json")


@dataclass(frozen=True, slots=True)
class UdpConfig:
    bind: str = "0.0.0.0"
    port: int = DEFAULT_UDP_PORT
    # Bytes the kernel may hold for the gateway while a commit runs or ingest
    # is paused; what does not fit is dropped there (and retransmitted).
    receive_buffer: int = DEFAULT_RECEIVE_BUFFER


@dataclass(frozen=True, slots=True)
class SerialConfig:
    device: str
    baud: int = 115200
    retry: float = 2.0  # seconds between attempts to reopen a vanished port


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    path: str
    max_bytes: int = 2 * 2**30
    audit_retention: float = 7 * 86400.0
    commit_max_frames: int = 1024
    commit_max_delay: float = 0.002
    process_batch_frames: int = 2048
    prune_interval: float = 30.0


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    bind: str = "127.0.0.1"
    port: int = DEFAULT_METRICS_PORT  # 0: no metrics endpoint


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"
    format: str = "logfmt"


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    source: str  # the config file, for messages
    gateway_id: str
    keys_file: str
    outbox: OutboxConfig
    udp: UdpConfig | None = UdpConfig()
    serial: tuple[SerialConfig, ...] = ()
    metrics: MetricsConfig = MetricsConfig()
    log: LogConfig = LogConfig()
    # channel pattern ("node/channel", glob allowed) -> its steps, in file order
    channels: tuple[tuple[str, list], ...] = ()
    # channel pattern -> the unit of its processed values (a thermocouple turns V into Cel)
    units: tuple[tuple[str, str], ...] = ()
    # sink section ("routes", ...) -> its parsed config, for every configured kind (sinks/__init__.py)
    sinks: dict = field(default_factory=dict)
    modbus: Any = None  # ModbusConfig from smemet.gateway.modbus, or None
    shutdown_grace: float = 5.0  # seconds sinks get to deliver at SIGTERM
    backlog_frames: int = 4096  # frames between admission and processed storage before the links pause
    ledger: Any = None  # LedgerConfig (ledger/config.py): ledger database, signing key, retention, checkpoints
    calibration: CalibrationConfig = CalibrationConfig()  # [calibration]: due-date warnings

    @property
    def routes(self) -> list:
        """The MQTT routes (RouteConfig), as ``[[routes]]`` configured them."""
        return self.sinks.get("routes", [])

    def steps_for(self, node: str, channel: str) -> list | None:
        """The processing steps of one channel: an exact entry wins, else the
        first matching pattern; None when the channel passes unprocessed."""
        return _lookup(self.channels, f"{node}/{channel}")

    def unit_for(self, node: str, channel: str) -> str | None:
        """The configured unit of a processed channel (None: the node's)."""
        return _lookup(self.units, f"{node}/{channel}")


def _lookup(entries: tuple, name: str):
    for pattern, value in entries:
        if pattern == name:
            return value
    for pattern, value in entries:
        if fnmatch.fnmatchcase(name, pattern):
            return value
    return None


def load_config(path: str, *, sinks: bool = True) -> GatewayConfig:
    """Read and validate ``path``; raises ConfigError.  ``sinks=False``
    leaves the outputs' sections unread (still checked to be known keys):
    tools that only need the key file, outbox and metrics then do not need
    the partners' passwords or certificates."""
    from .settings import read_toml

    return parse_config(read_toml(path, "config file", "see docs/gateway.toml for a reference"), path, sinks=sinks)


def parse_config(data: dict, source: str, *, sinks: bool = True) -> GatewayConfig:
    from . import sinks as sink_kinds

    base = os.path.dirname(os.path.abspath(source))
    kinds = sink_kinds.kinds()
    root = Table(data, f"{source}: ",
                 ("gateway", "keys", "ingest", "outbox", "metrics", "log", "channels", "modbus", "ledger", "calibration",
                  *(kind.SECTION for kind in kinds)))
    root.finish()

    gateway = root.table("gateway", ("id", "shutdown_grace", "backlog_frames"))
    gateway.finish()
    gateway_id = gateway.text("id", os.uname().nodename)
    shutdown_grace = gateway.number("shutdown_grace", 5.0, 0.0, 600.0)
    backlog_frames = gateway.integer("backlog_frames", 4096, 64, 1_000_000)

    if "keys" not in data:
        raise ConfigError(f"{source}: keys", "missing [keys] table with file = \"path to the node key file\"")
    keys = root.table("keys", ("file",))
    keys.finish()
    keys_file = keys.path("file", base)

    ingest = root.table("ingest", ("udp", "serial"))
    ingest.finish()
    udp: UdpConfig | None = UdpConfig()
    if ingest.has("udp"):
        table = ingest.table("udp", ("enabled", "bind", "port", "receive_buffer"))
        table.finish()
        enabled = table.boolean("enabled", True)
        udp = UdpConfig(
            table.address("bind", "0.0.0.0"),
            table.integer("port", DEFAULT_UDP_PORT, 0, 65535),
            table.size("receive_buffer", DEFAULT_RECEIVE_BUFFER),
        ) if enabled else None
    serial = []
    for table in ingest.tables("serial", ("device", "baud", "retry")):
        table.finish()
        serial.append(SerialConfig(table.text("device"), table.integer("baud", 115200, 50, 4_000_000),
                                   table.duration("retry", 2.0)))
    if udp is None and not serial and not data.get("modbus", {}).get("devices"):
        raise ConfigError(f"{source}: ingest", "no ingest enabled: enable [ingest.udp], add an [[ingest.serial]] port or [[modbus.devices]]")

    if "outbox" not in data:
        raise ConfigError(f"{source}: outbox", "missing [outbox] table with path = \"outbox database file\"")
    table = root.table(
        "outbox",
        ("path", "max_bytes", "audit_retention", "commit_max_frames", "commit_max_delay", "process_batch_frames", "prune_interval"),
    )
    table.finish()
    outbox = OutboxConfig(
        path=table.path("path", base),
        max_bytes=table.size("max_bytes", 2 * 2**30),
        audit_retention=table.duration("audit_retention", 7 * 86400.0),
        commit_max_frames=table.integer("commit_max_frames", 1024, 1, 100_000),
        commit_max_delay=table.duration("commit_max_delay", 0.002),
        process_batch_frames=table.integer("process_batch_frames", 2048, 1, 100_000),
        prune_interval=table.duration("prune_interval", 30.0),
    )
    if outbox.commit_max_delay > 1.0:
        raise table.error("commit_max_delay", "must be at most 1s (nodes wait for the ACK)")
    if outbox.max_bytes < 1 << 16:
        raise table.error("max_bytes", f"must be at least 64KiB, not {outbox.max_bytes} bytes")

    table = root.table("metrics", ("bind", "port"))
    table.finish()
    metrics = MetricsConfig(table.address("bind", "127.0.0.1"), table.integer("port", DEFAULT_METRICS_PORT, 0, 65535))

    table = root.table("log", ("level", "format"))
    table.finish()
    log = LogConfig(table.choice("level", _LEVELS, "info"), table.choice("format", _FORMATS, "logfmt"))

    channels, units = _channels(data.get("channels", {}), source)
    context = sink_kinds.ParseContext(source, base, gateway_id)
    outputs = {kind.SECTION: kind.parse(data[kind.SECTION], context)
               for kind in kinds if kind.SECTION in data} if sinks else {}
    modbus = _modbus(data["modbus"], source) if "modbus" in data else None
    ledger = parse_ledger(data.get("ledger", {}), source, base)
    calibration = parse_calibration(data.get("calibration", {}), source)
    return GatewayConfig(
        source=source, gateway_id=gateway_id, keys_file=keys_file, outbox=outbox, udp=udp,
        serial=tuple(serial), metrics=metrics, log=log, channels=channels, units=units, sinks=outputs, modbus=modbus,
        shutdown_grace=shutdown_grace, backlog_frames=backlog_frames, ledger=ledger, calibration=calibration,
    )


def _channels(data: Any, source: str) -> tuple[tuple[tuple[str, list], ...], tuple[tuple[str, str], ...]]:
    from .chains import chain_from_config  # validates each step list once, at load

    if not isinstance(data, dict):
        raise ConfigError(f"{source}: channels", "must be a table of \"node/channel\" = { steps = [...] }")
    channels = []
    units = []
    for pattern, raw in data.items():
        where = f'{source}: channels."{pattern}"'
        if pattern.count("/") != 1 or pattern.startswith("/") or pattern.endswith("/"):
            raise ConfigError(where, "a channel is named \"node/channel\" (glob patterns such as \"furnace-*/t_*\" allowed)")
        table = Table(raw, where, ("steps", "unit"))
        table.finish()
        unit = table.text("unit", None)
        if unit is not None:
            units.append((pattern, unit))
        steps = table.get("steps")
        if steps is None:
            raise table.missing("steps", "a list of step tables")
        chain_from_config(steps, f"{where}.steps")
        channels.append((pattern, steps))
    return tuple(channels), tuple(units)


def _modbus(table: Any, source: str):
    try:
        from .modbus import parse_modbus
    except ImportError:
        raise ConfigError(f"{source}: modbus", "this gateway build has no Modbus module") from None
    return parse_modbus(table, source)
