"""The serial transport (node/links.py SerialLink) inside MicroPython: COBS
frames over a byte stream, read through asyncio's poller as on a UART.  A
loopback TCP connection stands in for the wire: it is a pollable stream,
and the test decides how the bytes are cut into reads."""

import asyncio
import socket

from node.links import SerialLink
from protocol import cobs


def _pair():
    """(node end, far end) of a connected loopback stream.  The unix port's
    sockets have no getsockname(), so the listening port is found by trying."""
    for port in range(47311, 47411):
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
        except OSError:
            server.close()
            continue
        server.listen(1)
        far = socket.socket()
        far.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
        node, _ = server.accept()
        server.close()
        node.setblocking(False)
        return node, far
    raise OSError("no free loopback port for the test wire")


class RecordingPin:
    """A driver-enable pin that notes, at each change, how many bytes the far
    end of the wire had received (what an RS-485 transceiver would pass)."""

    def __init__(self, far):
        far.setblocking(False)
        self.far = far
        self.received = b""
        self.changes = []

    def __call__(self, level):
        more = self.far.read(2048)
        self.received += more or b""
        self.changes.append((level, len(self.received)))


def _receive(link, count, timeout_ms=2000):
    async def main():
        got = []
        for _ in range(count):
            got.append(bytes(await asyncio.wait_for_ms(link.recv(), timeout_ms)))
        return got

    return asyncio.run(main())


def test_frames_split_and_joined_arbitrarily_arrive_whole_and_in_order():
    node, far = _pair()
    link = SerialLink(node)
    frames = [bytes([i]) * (1 + 37 * i) + b"\x00\x00end" for i in range(6)]
    wire = b"".join(cobs.frame(f) for f in frames)
    # written in uneven pieces: a frame split over reads, several in one read
    at = 0
    for size in (1, 2, 50, 3, 400, 7, 1000):
        far.write(wire[at:at + size])
        at += size
    far.write(wire[at:])
    assert _receive(link, len(frames)) == frames
    node.close()
    far.close()


def test_noise_and_a_broken_packet_are_skipped_up_to_the_next_delimiter():
    node, far = _pair()
    link = SerialLink(node)
    good = b"\xd1\x84frame after noise"
    # line noise before the first delimiter, then a COBS code running past
    # its packet's end, then a good frame
    far.write(b"\x13\x37\x42" + b"\x00" + b"\x09ab\x00" + cobs.frame(good))
    assert _receive(link, 1) == [good]
    assert link.deframer.errors >= 1
    node.close()
    far.close()


def test_a_packet_longer_than_any_gateway_frame_is_dropped_and_the_next_one_kept():
    node, far = _pair()
    link = SerialLink(node)
    far.write(cobs.frame(b"\x01" * 1500))  # longer than the 1024-byte frame limit allows
    far.write(cobs.frame(b"next"))
    assert _receive(link, 1) == [b"next"]
    node.close()
    far.close()


def test_the_driver_enable_pin_is_high_only_while_a_frame_is_written():
    node, far = _pair()
    de = RecordingPin(far)
    link = SerialLink(node, de)
    first, second = cobs.frame(b"ack me"), cobs.frame(b"and me, a longer frame")
    link.send(b"ack me")
    link.send(b"and me, a longer frame")
    # raised before a frame's first byte, lowered after its last
    assert de.changes == [(1, 0), (0, len(first)), (1, len(first)), (0, len(first) + len(second))], de.changes
    assert de.received == first + second
    node.close()
    far.close()


def test_nothing_on_the_wire_means_recv_waits():
    node, far = _pair()
    link = SerialLink(node)
    try:
        _receive(link, 1, timeout_ms=200)
    except asyncio.TimeoutError:
        pass
    else:
        raise AssertionError("recv returned without a frame")
    node.close()
    far.close()
