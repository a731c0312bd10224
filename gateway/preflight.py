"""What ``gateway run`` needs from the machine, checked without running it,
for ``check-config`` (and ``run`` itself, before it opens anything): a config
that parses is not yet a gateway that starts.

    the outbox's folder exists and this user may write there (a real write
    test: a read-only file system passes os.access), the database file too;
    the key file (owner, mode, format; a warning when it lists no node);
    every serial port exists and is ours to open;
    the UDP port and every listening port (metrics, web console, OPC UA,
    Modbus server) can be bound now.

``check(config)`` returns a ``Report``: problems (each one line: what is
wrong and what to do) and warnings.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from .config import GatewayConfig
from .errors import GatewayError
from .ingest import check_serial_device, explain_bind
from .storage import disk_space, size_text, write_test


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    nodes: int = 0  # keys in the key file

    @property
    def ok(self) -> bool:
        return not self.problems


def check(config: GatewayConfig, *, ports: bool = True) -> Report:
    """Everything ``run`` will need; ``ports=False`` skips the bind tests
    (a gateway is running and holds them)."""
    report = Report()
    _outbox(config, report)
    _keys(config, report)
    for serial in config.serial:
        try:
            check_serial_device(serial.device)
        except GatewayError as exc:
            report.problems.append(str(exc))
    if ports:
        for what, kind, bind, port in listening(config):
            problem = bind_test(kind, bind, port)
            if problem:
                report.problems.append(f"{what}: cannot listen on {_address(bind, port)}/{kind}: {problem}")
    return report


def _outbox(config: GatewayConfig, report: Report) -> None:
    path = config.outbox.path
    directory = os.path.dirname(os.path.abspath(path))
    where = f"{config.source}: outbox.path"
    if not os.path.isdir(directory):
        report.problems.append(f"{where}: folder {directory} does not exist; create it, owned by the gateway's user "
                               f"(install -d -o smemet -m 700 {directory})")
        return
    problem = write_test(directory)
    if problem == "permission denied":
        report.problems.append(f"{where}: folder {directory} is not writable by this user (permission denied); "
                               f"run the gateway as its owner or chown it: chown smemet: {directory}")
        return
    if problem:
        report.problems.append(f"{where}: cannot write in {directory}: {problem}")
        return
    for name in (path, path + "-wal", path + "-shm"):
        if os.path.exists(name) and not os.access(name, os.R_OK | os.W_OK):
            report.problems.append(f"{where}: {name} is not readable and writable by this user (permission denied); "
                                   f"chown it to the gateway's user: chown smemet: {name}")
            return
    if os.path.exists(path) and os.stat(path).st_mode & 0o077:
        report.warnings.append(f"{path}: the outbox (plant data) is readable by other users; chmod 600 {path}*")
    disk = disk_space(directory)
    if disk is not None and disk.free < disk.reserve:
        report.warnings.append(f"{directory}: only {size_text(disk.free)} free on its disk; the gateway refuses "
                               f"frames below {size_text(disk.reserve)} (outbox full)")


def _keys(config: GatewayConfig, report: Report) -> None:
    from .keys import KeyStore

    try:
        keys = KeyStore.load(config.keys_file)
    except GatewayError as exc:
        report.problems.append(str(exc))
        return
    report.nodes = len(keys)
    if not len(keys):
        report.warnings.append(f"{config.keys_file}: the key file lists no node, so every node's frames will be "
                               "rejected (unknown-node); add one with smemet gateway keys add NODE --config "
                               f"{config.source}")


def listening(config: GatewayConfig) -> list[tuple[str, str, str, int]]:
    """(what, "udp" | "tcp", bind, port) of every socket ``run`` listens on."""
    found = []
    if config.udp is not None:
        found.append((f"{config.source}: ingest.udp.port", "udp", config.udp.bind, config.udp.port))
    if config.metrics.port:
        found.append((f"{config.source}: metrics.port", "tcp", config.metrics.bind, config.metrics.port))
    for section, parsed in config.sinks.items():
        for item in parsed if isinstance(parsed, (list, tuple)) else [parsed]:
            bind, port = getattr(item, "bind", None), getattr(item, "port", None)
            if isinstance(bind, str) and isinstance(port, int) and port:
                found.append((f"{config.source}: {section}.port", "tcp", bind, port))
    server = getattr(config.modbus, "server", None)
    if server is not None and server.enabled:
        found.append((f"{config.source}: modbus.server.port", "tcp", server.host, server.port))
    return found


def bind_test(kind: str, bind: str, port: int) -> str | None:
    """None when ``bind:port`` can be bound now (it is released at once),
    else why not and what to do."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM) as sock:
        if kind == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
        try:
            sock.bind((bind, port))
        except OSError as exc:
            return explain_bind(exc, kind, port)
    return None


def _address(bind: str, port: int) -> str:
    return f"[{bind}]:{port}" if ":" in bind else f"{bind}:{port}"
