"""The links frames arrive on: UDP (one frame per datagram) and serial ports
(COBS packets, 0x00-delimited, SPEC.md §7).  Each link hands frames to the
admission stage with an address its ACK goes back to."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import termios
import tty

from smemet.protocol import cobs

from .errors import IngestError

log = logging.getLogger("smemet.gateway.ingest")

_BAUD = {
    rate: getattr(termios, f"B{rate}")
    for rate in (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 500000, 576000, 921600,
                 1000000, 1152000, 1500000, 2000000, 2500000, 3000000, 3500000, 4000000)
    if hasattr(termios, f"B{rate}")
}



class UdpLink:
    """UDP ingest: every datagram is one frame; the ACK goes to its sender.

    The socket is read directly (``loop.add_reader``), every queued datagram
    up to ``READ_BATCH`` per readiness event, instead of through asyncio's
    datagram transport, which reads one datagram per event-loop iteration:
    at thousands of frames a second the loop's per-iteration work was a
    per-frame cost (docs/benchmarks.md)."""

    name = "udp"
    # Datagrams per wake-up, then the loop runs commits, ACKs and sinks.  More
    # (256) read faster still but let ingest outrun processing: 1,000 nodes
    # bursting pushed peak RSS to 160 MB (docs/benchmarks.md).
    READ_BATCH = 32
    MAX_DATAGRAM = 65536

    def __init__(self, handle, sock: socket.socket) -> None:
        self._handle = handle
        self._sock: socket.socket | None = sock
        self._loop = asyncio.get_running_loop()
        self.accepting = True
        self._reading = False
        self._inode = _socket_inode(sock)
        self.resume()

    def pause(self) -> None:
        """Stop reading the socket (back-pressure): datagrams wait in the
        kernel's buffer, and beyond it are dropped (``kernel_drops``)."""
        if self._reading and self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._reading = False

    def resume(self) -> None:
        if not self._reading and self._sock is not None:
            self._loop.add_reader(self._sock.fileno(), self._read_ready)
            self._reading = True

    def kernel_drops(self) -> int | None:
        """Datagrams the kernel dropped on this socket since it was opened
        (its receive buffer was full), from /proc/net/udp; None where the
        system does not say."""
        if self._sock is None or self._inode is None:
            return None
        table = "/proc/net/udp6" if self._sock.family == socket.AF_INET6 else "/proc/net/udp"
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if len(fields) >= 13 and fields[9] == self._inode:
                        return int(fields[12])
        except (OSError, StopIteration, ValueError):
            return None
        return None

    @classmethod
    async def open(cls, handle, bind: str, port: int, receive_buffer: int = 8 * 2**20) -> "UdpLink":
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        sock = None
        try:
            infos = await loop.getaddrinfo(bind, port, family=family, type=socket.SOCK_DGRAM)
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.bind(infos[0][4])
        except OSError as exc:
            if sock is not None:
                sock.close()
            raise IngestError(f"cannot listen for UDP on [{bind}]:{port}: {explain_bind(exc, 'udp', port)} "
                              "([ingest.udp] port/bind)") from None
        # A burst of frames must wait in the kernel, not be dropped, while a
        # commit runs or ingest is paused: ask for receive_buffer bytes (root
        # may exceed net.core.rmem_max; others get what it allows).
        for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            if option is None:
                continue
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, receive_buffer)
                break
            except OSError:
                continue
        return cls(handle, sock)

    @property
    def address(self) -> tuple:
        assert self._sock is not None
        return self._sock.getsockname()

    def _read_ready(self) -> None:
        sock = self._sock
        if sock is None:
            return
        recvfrom, handle = sock.recvfrom, self._handle
        for _ in range(self.READ_BATCH):
            try:
                data, addr = recvfrom(self.MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP unreachable after an ACK: harmless
                log.debug("udp error", extra={"error": str(exc)})
                return
            if self.accepting:  # at shutdown: ignored, the node retransmits to the next run
                try:
                    handle(data, self, addr)
                except Exception:  # noqa: BLE001 - a bug on one frame must not stop ingest; the node retransmits
                    log.exception("frame handling failed", extra={"link": self.name})

    def datagram_received(self, data: bytes, addr) -> None:
        """One datagram, as if read from the socket (tests, other drivers)."""
        if self.accepting:
            self._handle(data, self, addr)

    def send(self, data: bytes, address) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto(data, address)
        except (BlockingIOError, InterruptedError):  # send buffer full: the node retransmits, gets a re-ACK
            log.debug("udp ACK not sent: send buffer full", extra={"peer": str(address)})

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._loop.remove_reader(self._sock.fileno())
            except (RuntimeError, ValueError):  # the loop is closed already
                pass
            self._sock.close()
            self._sock = None


def explain_bind(exc: OSError, kind: str, port: int) -> str:
    """Why a port cannot be bound, and what to do, by errno."""
    if exc.errno == errno.EADDRINUSE:
        return (f"port {port} is in use by another program (another gateway? see `ss -{kind[0]}lpn | grep :{port}`); "
                "stop it or choose another port")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (f"permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE "
                "(AmbientCapabilities=CAP_NET_BIND_SERVICE in the systemd unit), or choose a port of 1024 or more")
    if exc.errno == errno.EADDRNOTAVAIL:
        return "this machine has no such address; bind to one of its addresses, 0.0.0.0 or ::"
    return exc.strerror or str(exc)


def _socket_inode(sock: socket.socket) -> str | None:
    try:
        target = os.readlink(f"/proc/self/fd/{sock.fileno()}")  # "socket:[12345]"
    except OSError:
        return None
    return target[8:-1] if target.startswith("socket:[") else None


def check_serial_device(device: str) -> None:
    """Raise IngestError with what to do when a configured port is missing."""
    if not os.path.exists(device):
        raise IngestError(
            f"serial port {device} does not exist; check the cable/adapter and the device name "
            f"(ls /dev/serial/by-id/) or remove it from [[ingest.serial]]"
        )
    if not os.access(device, os.R_OK | os.W_OK):
        raise IngestError(f"serial port {device} is not readable and writable by this user; {port_access_advice(device)}")


def port_access_advice(device: str) -> str:
    """What to do about a serial port this user may not open: join its group
    when that is a group for devices (dialout, uucp, tty), else a udev rule;
    never "join group root"."""
    import grp
    import pwd

    info = os.stat(device)
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    try:
        owner = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        owner = str(info.st_uid)
    mode = f"{owner}:{group} mode {info.st_mode & 0o777:03o}"
    if info.st_gid != 0 and info.st_mode & 0o060 == 0o060:
        return f"it is {mode}: add the user to group {group} (sudo usermod -aG {group} USER), then log in again"
    return (f"it is {mode}, so no group gives access: add a udev rule giving it to group dialout "
            f"(SUBSYSTEM==\"tty\", KERNEL==\"{os.path.basename(device)}\", GROUP=\"dialout\", MODE=\"0660\"), "
            "or run as root")


class SerialLink:
    """One serial port, raw 8N1, COBS packets.  A port that disappears (USB
    adapter unplugged) is reopened every ``retry`` seconds; the gateway keeps
    running."""

    def __init__(self, handle, device: str, baud: int = 115200, retry: float = 2.0, on_state=None,
                 on_malformed=None) -> None:
        self._handle = handle
        self.device = device
        self.baud = baud
        self.retry = retry
        self.name = "serial"
        self._on_state = on_state or (lambda up: None)
        self._on_malformed = on_malformed or (lambda count: None)  # broken COBS packets
        self._fd: int | None = None
        self._deframer = cobs.Deframer()
        self._task: asyncio.Task | None = None
        self._closed = False
        self.malformed = 0
        self.accepting = True
        self._paused = False

    def open(self) -> None:
        """Open now (raises IngestError: used at start, where a missing port is an error)."""
        check_serial_device(self.device)
        self._open()

    def _open(self) -> None:
        try:
            fd = os.open(self.device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as exc:
            raise IngestError(f"cannot open serial port {self.device} ({exc.strerror})") from None
        try:
            tty.setraw(fd)
            attrs = termios.tcgetattr(fd)
            speed = _BAUD.get(self.baud)
            if speed is None:
                raise IngestError(f"serial port {self.device}: baud rate {self.baud} is not supported; use one of {sorted(_BAUD)}")
            attrs[4] = attrs[5] = speed
            attrs[2] |= termios.CLOCAL | termios.CREAD
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        except termios.error as exc:
            os.close(fd)
            raise IngestError(f"cannot configure serial port {self.device} ({exc})") from None
        except IngestError:
            os.close(fd)
            raise
        self._fd = fd
        self._deframer = cobs.Deframer()
        if not self._paused:
            asyncio.get_running_loop().add_reader(fd, self._readable)
        self._on_state(True)
        log.info("serial port open", extra={"device": self.device, "baud": self.baud})

    def _readable(self) -> None:
        try:
            chunk = os.read(self._fd, 65536)  # type: ignore[arg-type]
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(exc.strerror)
            return
        if not chunk:
            self._lost("end of file")
            return
        errors = self._deframer.errors
        for packet in self._deframer.feed(chunk):
            if self.accepting:
                self._handle(packet, self, None)
        if self._deframer.errors != errors:
            self.malformed += self._deframer.errors - errors
            self._on_malformed(self._deframer.errors - errors)

    def _lost(self, why: str) -> None:
        log.error("serial port lost; retrying", extra={"device": self.device, "error": why, "retry_s": self.retry})
        self._close_fd()
        if not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._reopen())

    async def _reopen(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.retry)
            if self._closed:
                return
            try:
                self._open()
                return
            except IngestError as exc:
                log.debug("serial port still unavailable", extra={"device": self.device, "error": str(exc)})

    def pause(self) -> None:
        """Stop reading the port (back-pressure); the driver's buffer and the
        nodes' retransmissions hold the rest."""
        self._paused = True
        if self._fd is not None:
            try:
                asyncio.get_running_loop().remove_reader(self._fd)
            except RuntimeError:
                pass

    def resume(self) -> None:
        self._paused = False
        if self._fd is not None:
            asyncio.get_running_loop().add_reader(self._fd, self._readable)

    def send(self, data: bytes, address) -> None:
        if self._fd is None:
            return
        packet = cobs.frame(data)
        try:
            written = os.write(self._fd, packet)
        except BlockingIOError:
            written = 0
        except OSError as exc:
            self._lost(exc.strerror)
            return
        if written < len(packet):  # output buffer full: the node retransmits and gets a re-ACK
            log.debug("serial ACK truncated", extra={"device": self.device})

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                asyncio.get_running_loop().remove_reader(self._fd)
            except RuntimeError:
                pass
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
            self._on_state(False)

    def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
        self._close_fd()
