"""The real gateway as a process: ``smemet gateway run --config gateway.toml``
started, SIGKILLed and restarted by the tests, its Prometheus endpoint read
for the reject counters and the storage alarm."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from smemet.processes import stop_gracefully

HOST = "127.0.0.1"


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def to_toml(doc: dict) -> str:
    """TOML for the shapes gateway.toml uses: tables of scalars, inline
    tables, arrays of tables (``routes``, ``ingest.serial``)."""
    lines: list[str] = []

    def table(name: str, body: dict) -> None:
        scalars = {k: v for k, v in body.items() if not isinstance(v, dict) and not _is_table_array(v)}
        subs = {k: v for k, v in body.items() if isinstance(v, dict)}
        arrays = {k: v for k, v in body.items() if _is_table_array(v)}
        if name and (scalars or not subs and not arrays):
            lines.append(f"[{name}]")
        for k, v in scalars.items():
            lines.append(f"{k} = {_toml_value(v)}")
        for k, v in subs.items():
            table(f"{name}.{k}" if name else k, v)
        for k, items in arrays.items():
            for item in items:
                lines.append(f"[[{name + '.' if name else ''}{k}]]")
                for ik, iv in item.items():
                    lines.append(f"{ik} = {_toml_value(iv)}")

    table("", doc)
    return "\n".join(lines) + "\n"


def _is_table_array(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(i, dict) for i in v)


class GatewayProcess:
    """One gateway.  ``keys`` maps node ids to keys (bytes); ``routes`` are
    ``[[routes]]`` tables; ``serial`` device paths to ingest from."""

    def __init__(self, directory: Path, keys: dict[str, bytes], routes: list[dict], *, serial=(), outbox: dict | None = None,
                 udp: bool = True, udp_port: int | None = None, extra: dict | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.keys = dict(keys)
        self.udp_port = (udp_port or free_port(socket.SOCK_DGRAM)) if udp else None
        self.metrics_port = free_port()
        self.config_path = self.directory / "gateway.toml"
        self.log_path = self.directory / "gateway.log"
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.kills = 0
        keys_path = self.directory / "keys.toml"
        keys_path.write_text("".join(f'"{n}" = "{k.hex()}"\n' for n, k in self.keys.items()))
        keys_path.chmod(0o600)
        doc: dict = {
            "gateway": {"id": "hil-gw", "shutdown_grace": 2.0},
            "keys": {"file": str(keys_path)},
            "ingest": {},
            "outbox": {"path": str(self.directory / "outbox.db"), "prune_interval": "1s", **(outbox or {})},
            "metrics": {"bind": HOST, "port": self.metrics_port},
            "log": {"level": "info"},
        }
        doc["ingest"]["udp"] = {"enabled": True, "bind": HOST, "port": self.udp_port} if udp else {"enabled": False}
        if serial:
            doc["ingest"]["serial"] = [{"device": d, "baud": 115200, "retry": "0.2s"} for d in serial]
        doc.update(extra or {})
        if routes:
            doc["routes"] = routes
        self.config_path.write_text(to_toml(doc))

    @property
    def address(self) -> tuple[str, int]:
        return (HOST, self.udp_port)

    def start(self, timeout: float = 20.0) -> GatewayProcess:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "smemet", "gateway", "run", "--config", str(self.config_path)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.directory,
        )
        log.close()
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode}: {self.log_tail()}")
            try:
                self.metrics_text()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"gateway did not serve metrics within {timeout} s: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: a crash or power cut of the gateway host."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.kills += 1

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.process is None:
            return None
        return stop_gracefully(self.process, timeout)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    # ------------------------------------------------------------ metrics

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://{HOST}:{self.metrics_port}/metrics", timeout=2) as r:
            return r.read().decode()

    def metrics(self) -> dict[tuple, float]:
        """{(sample name, sorted labels): value}."""
        out = {}
        for family in text_string_to_metric_families(self.metrics_text()):
            for s in family.samples:
                out[s.name, tuple(sorted(s.labels.items()))] = s.value
        return out

    def metric(self, name: str, **labels) -> float:
        want = tuple(sorted(labels.items()))
        values = self.metrics()
        return values.get((name, want), values.get((name + "_total", want), 0.0))

    def rejects(self) -> dict[str, float]:
        out = {}
        for (name, labels), value in self.metrics().items():
            if name in ("smemet_gateway_frames_rejected_total", "smemet_gateway_frames_rejected"):
                out[dict(labels).get("reason", "?")] = value
        return out


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what() if callable(what) else what}")
        time.sleep(interval)
