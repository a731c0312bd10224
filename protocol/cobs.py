"""COBS framing for serial links (SPEC.md §7): each frame is COBS-encoded
and followed by one 0x00 delimiter, so a receiver can resynchronise after
noise at the next zero byte."""

from .errors import ProtocolError, error


def encode(data):
    """COBS encoding of ``data`` (without the trailing delimiter)."""
    out = bytearray(b"\x00")
    code_at = 0
    code = 1
    for byte in data:
        if byte == 0:
            out[code_at] = code
            code_at = len(out)
            out.append(0)
            code = 1
        else:
            out.append(byte)
            code += 1
            if code == 0xFF:
                out[code_at] = code
                code_at = len(out)
                out.append(0)
                code = 1
    out[code_at] = code
    return bytes(out)


def decode(data):
    """Inverse of :func:`encode`; raises a malformed ProtocolError on a zero byte or a
    code that runs past the end."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise error("malformed", "COBS packet contains a zero byte")
        end = i + code
        if end > n:
            raise error("malformed", "COBS packet truncated")
        out.extend(data[i + 1 : end])
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def frame(data):
    """Bytes to write on the wire: COBS(data) + 0x00."""
    return encode(data) + b"\x00"


class Deframer:
    """Splits a serial byte stream into decoded packets.

    ``feed(chunk)`` returns a list of decoded packets; bytes of a broken
    packet are counted in ``errors`` and skipped up to the next delimiter.
    A packet longer than ``max_packet`` is discarded as it arrives so noise
    cannot grow the buffer without bound.
    """

    def __init__(self, max_packet=1100):
        self.max_packet = max_packet
        self.buffer = bytearray()
        self.errors = 0
        self.overflowing = False

    def feed(self, chunk):
        packets = []
        for byte in chunk:
            if byte == 0:
                if self.overflowing:
                    self.overflowing = False
                elif self.buffer:
                    try:
                        packets.append(decode(self.buffer))
                    except ProtocolError:
                        self.errors += 1
                self.buffer = bytearray()
            elif not self.overflowing:
                if len(self.buffer) >= self.max_packet:
                    self.errors += 1
                    self.overflowing = True
                    self.buffer = bytearray()
                else:
                    self.buffer.append(byte)
        return packets
