"""Test support for the field tools' tests (tools/tests): a real gateway
process kept running like systemd keeps it (restarted whenever it exits, so
``--restart-gateway 'kill -TERM $(cat PIDFILE)'`` behaves like
``systemctl restart``), free loopback ports, and a runner for ``smemet``
commands as subprocesses."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from smemet.processes import stop_gracefully

from .gateway_toml import write_gateway_config

HOST = "127.0.0.1"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def smemet(*args: str, timeout: float = 120, cwd=None, env=None) -> subprocess.CompletedProcess:
    """Run ``python -m smemet ARGS`` to the end; text output captured."""
    return subprocess.run([sys.executable, "-m", "smemet", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env=env, stdin=subprocess.DEVNULL)


def write_keys(path: Path, keys: dict[str, bytes]) -> Path:
    path.write_text("".join(f'"{node}" = "{key.hex()}"\n' for node, key in keys.items()))
    path.chmod(0o600)
    return path


class SupervisedGateway:
    """``smemet gateway run`` in ``directory``, restarted when it exits
    (until ``stop``).  ``pid_file`` always holds the current pid."""

    def __init__(self, directory: Path, routes: list[dict] = (), keys: dict[str, bytes] | None = None,
                 outbox: dict | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.metrics_port = free_port()
        self.keys_file = self.directory / "keys.toml"
        if keys is not None:
            write_keys(self.keys_file, keys)
        self.config = write_gateway_config(self.directory, udp_port=self.udp_port, metrics_port=self.metrics_port,
                                           routes=list(routes), keys_file=str(self.keys_file), log_level="info",
                                           outbox=outbox)
        self.pid_file = self.directory / "gateway.pid"
        self.log_path = self.directory / "gateway.log"
        self.starts = 0
        self._process: subprocess.Popen | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return int(self.pid_file.read_text())

    @property
    def restart_command(self) -> str:
        return f"kill -TERM $(cat {self.pid_file})"

    @property
    def metrics_url(self) -> str:
        return f"http://{HOST}:{self.metrics_port}/metrics"

    def _spawn(self) -> subprocess.Popen:
        with open(self.log_path, "ab") as log:
            process = subprocess.Popen([sys.executable, "-m", "smemet", "gateway", "run", "--config", str(self.config)],
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        self.pid_file.write_text(str(process.pid))
        self.starts += 1
        return process

    def _supervise(self) -> None:
        while not self._stopping:
            process = self._process
            assert process is not None
            process.wait()
            if self._stopping:
                return
            time.sleep(0.2)
            self._process = self._spawn()

    def start(self, timeout: float = 20.0) -> SupervisedGateway:
        self._process = self._spawn()
        self.wait_ready(timeout)
        self._thread = threading.Thread(target=self._supervise, name="gateway supervisor", daemon=True)
        self._thread.start()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.metrics_url, timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"gateway did not start: {self.log_tail()}")

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        self._stopping = True
        if self._process is not None:
            stop_gracefully(self._process, 15)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> SupervisedGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def is_private(path: Path) -> bool:
    return os.stat(path).st_mode & 0o777 == 0o600
