"""Transports: one frame per UDP datagram, or COBS over a UART / serial
device.  Both offer ``send(frame)`` and ``async recv()`` (one frame).

They wait for input on asyncio's poller directly (no StreamReader), and the
serial one loads the COBS codec only when it is used."""

import gc
import asyncio
import socket

from micropython import const

_MAX_IN = const(1088)  # the largest gateway frame (1024 B) with slack
_SMALL_IN = const(320)  # an ACK for a full window (8 frames) with room to spare


def readable(stream):
    """Await until ``stream`` has input (what StreamReader does inside)."""
    yield asyncio.core._io_queue.queue_read(stream)


class UdpLink:
    def __init__(self, host, port):
        addr = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0]
        self.sock = socket.socket(addr[0], socket.SOCK_DGRAM)
        self.sock.connect(addr[-1])
        self.sock.setblocking(False)
        self.errors = 0

    def send(self, frame):
        try:
            self.sock.send(frame)
        except OSError:
            self.errors += 1  # e.g. ECONNREFUSED: nobody listening yet
            raise

    async def recv(self):
        await readable(self.sock)
        # recv, not readinto into a buffer made once: a stream read joins
        # queued datagrams.  recv needs its size in one piece of heap first;
        # when a fragmented heap has no 1 KB piece the datagram is still
        # queued and is read into less: an ACK fits, a bigger frame arrives
        # cut, fails its MAC check and is counted (the gateway resends).
        for size in (_MAX_IN, _SMALL_IN):
            try:
                return self.sock.recv(size)
            except OSError:
                self.errors += 1
                await asyncio.sleep_ms(100)
                return None
            except MemoryError:
                self.errors += 1
                gc.collect()
        await asyncio.sleep_ms(50)
        return None

    def close(self):
        self.sock.close()


class SerialLink:
    """COBS frames over a byte stream.  Half-duplex RS-485 friendly: the
    driver-enable pin (if any) is raised only while a frame is written."""

    def __init__(self, stream, de=None):
        from protocol import cobs

        self.cobs = cobs
        self.stream = stream
        self.de = de
        self.deframer = cobs.Deframer(_MAX_IN)
        self._chunk = bytearray(256)
        self._queue = []

    def send(self, frame):
        if self.de:
            self.de(1)
        self.stream.write(self.cobs.frame(frame))
        if self.de:
            if hasattr(self.stream, "flush"):
                self.stream.flush()
            self.de(0)

    async def recv(self):
        while not self._queue:
            await readable(self.stream)
            n = self.stream.readinto(self._chunk)
            if n:
                self._queue.extend(self.deframer.feed(memoryview(self._chunk)[:n]))
            else:
                await asyncio.sleep_ms(20)
        return self._queue.pop(0)


def open_serial_device(path, baudrate):
    """A tty / PTY on the unix port, raw and non-blocking in effect (VMIN=0,
    VTIME=0, so a read returns what is there)."""
    import termios

    f = open(path, "r+b")
    fd = f.fileno()
    termios.setraw(fd)
    attrs = termios.tcgetattr(fd)
    cc = attrs[6]
    # MicroPython's termios has no VMIN/VTIME names: Linux's indices
    cc[getattr(termios, "VMIN", 6)] = 0
    cc[getattr(termios, "VTIME", 5)] = 0
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
    return f
