"""A node's USB serial console, as the field tools use it: check that the
port is there and ours to open, restart the node, read what it prints.

The same code serves a board on ``/dev/ttyUSB0`` and a SimNode's PTY
(``/dev/pts/N``): both are MicroPython REPLs on a serial line.
"""

from __future__ import annotations

import os
import re
import stat
import threading
import time

from .errors import UserError

# Leave the raw REPL (Ctrl-B), then soft reset at the friendly REPL (Ctrl-D):
# MicroPython runs main.py again, on a board as on the sim board.
_SOFT_RESET = b"\r\x02\x04"


def check_port(port: str) -> None:
    """Raise UserError unless ``port`` exists and we may read and write it."""
    try:
        info = os.stat(port)
    except FileNotFoundError:
        raise UserError(
            f"no such port {port}: is the node plugged in? list the ports with `ls /dev/serial/by-id/` "
            "(or `ls /dev/ttyUSB* /dev/ttyACM*`) and pass the right one with --port"
        ) from None
    except OSError as exc:
        raise UserError(f"cannot use port {port}: {exc.strerror}") from None
    if not stat.S_ISCHR(info.st_mode):
        raise UserError(f"{port} is not a serial device (give the node's port, e.g. /dev/ttyUSB0)")
    if not os.access(port, os.R_OK | os.W_OK):
        from smemet.gateway.ingest import port_access_advice  # one piece of advice for gateway and tools

        raise UserError(f"no permission to open {port}: {port_access_advice(port)}")


def open_serial(port: str):
    import serial

    check_port(port)
    try:
        return serial.Serial(port, 115200, timeout=0.1)
    except (serial.SerialException, OSError) as exc:
        raise UserError(f"cannot open {port}: {exc} (is another program using it? close screen, minicom, Thonny)") from None


class Console:
    """The node's console, read in a background thread while open; lines
    (without line ends) go to ``on_line`` and are kept in ``lines``."""

    def __init__(self, port: str, on_line=None) -> None:
        self.port = port
        self.on_line = on_line
        self.lines: list[str] = []
        self._serial = open_serial(port)
        self._partial = b""
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read_loop, name=f"console {port}", daemon=True)
        self._thread.start()

    def _read_loop(self) -> None:
        while not self._closed:
            try:
                data = self._serial.read(4096)
            except Exception:  # noqa: BLE001 - the port went away (node unplugged): stop reading
                return
            if not data:
                continue
            data = self._partial + data
            *complete, self._partial = re.split(rb"\r?\n", data)
            for raw in complete:
                line = raw.decode(errors="replace").strip("\r")
                with self._lock:
                    self.lines.append(line)
                if self.on_line:
                    self.on_line(line)

    def soft_reset(self) -> None:
        """Restart the node's firmware (main.py), as Ctrl-D at the REPL does."""
        self._serial.write(_SOFT_RESET)
        self._serial.flush()

    def wait_for(self, pattern: str, timeout: float, start: int = 0) -> re.Match | None:
        """The first line from index ``start`` matching ``pattern``, or None."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                lines = self.lines[start:]
            for line in lines:
                match = regex.search(line)
                if match:
                    return match
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def close(self) -> None:
        self._closed = True
        self._thread.join(1)
        try:
            self._serial.close()
        except Exception:  # noqa: BLE001 - closing a vanished port
            pass

    def __enter__(self) -> Console:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
