"""Transports: one frame per UDP datagram, or COBS over a UART / serial
device.  Both offer ``send(frame)`` and ``async recv()`` (one frame)."""

import asyncio
import socket

from protocol import cobs, cose


class UdpLink:
    def __init__(self, host, port):
        addr = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0]
        self.sock = socket.socket(addr[0], socket.SOCK_DGRAM)
        self.sock.connect(addr[-1])
        self.sock.setblocking(False)
        self._reader = asyncio.StreamReader(self.sock)
        self.errors = 0

    def send(self, frame):
        try:
            self.sock.send(frame)
        except OSError:
            self.errors += 1  # e.g. ECONNREFUSED: nobody listening yet
            raise

    async def recv(self):
        try:
            return await self._reader.read(cose.MAX_FRAME + 64)
        except OSError:
            self.errors += 1
            await asyncio.sleep_ms(100)
            return None

    def close(self):
        self.sock.close()


class SerialLink:
    """COBS frames over a byte stream.  Half-duplex RS-485 friendly: the
    driver-enable pin (if any) is raised only while a frame is written."""

    def __init__(self, stream, de=None):
        self.stream = stream
        self.de = de
        self.deframer = cobs.Deframer(cose.MAX_FRAME + 64)
        self._reader = asyncio.StreamReader(stream)
        self._queue = []

    def send(self, frame):
        if self.de:
            self.de(1)
        self.stream.write(cobs.frame(frame))
        if self.de:
            if hasattr(self.stream, "flush"):
                self.stream.flush()
            self.de(0)

    async def recv(self):
        while not self._queue:
            chunk = await self._reader.read(256)
            if chunk:
                self._queue.extend(self.deframer.feed(chunk))
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
    attrs[6][termios.VMIN] = 0
    attrs[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
    return f
