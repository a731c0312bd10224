"""A register-level Modbus RTU slave on the sim UART.

It answers functions 3 and 4 for the registers in the channel's map, whose
values come from the scenario (one signal per register ``name``, in
engineering units; divided by ``scale`` and encoded with the map's type and
word order); any other register or function gets an exception reply.
Faults: no-response (silence), crc-error (corrupted CRC), busy (exception 6),
device-failure (exception 4), slow-response (each answer is held back for the
signal ``response_ms``, default 100 ms: a device slower than the timeout).
"""

import struct
import time

from drivers.modbus_rtu import crc16, TYPES


def encode_value(value, kind, word_order):
    """Register bytes of a value, as the instrument holds it."""
    count, fmt = TYPES[kind]
    if fmt != ">f":
        value = int(round(value))
    raw = struct.pack(fmt, value)
    if count == 2 and word_order == "little":
        raw = raw[2:4] + raw[0:2]
    return raw


class Chip:
    def __init__(self, ch, signal):
        self.signal = signal
        self.slave = ch.get("slave", 1)
        self.map = {}
        for r in ch.get("registers", ()):
            self.map[(r.get("function", 3), r["address"])] = r
        self._in = bytearray()
        self._out = bytearray()
        self._late = []  # (ticks_ms due, answer) held back by slow-response
        self.requests = 0

    def receive(self, data):
        self._in.extend(data)
        while len(self._in) >= 8:
            frame = bytes(self._in[:8])
            if crc16(frame, 6) != frame[6] | (frame[7] << 8):
                self._in = self._in[1:]  # resynchronise
                continue
            self._in = self._in[8:]
            self.requests += 1
            self._answer(frame)

    def _reply(self, body):
        fault = self.signal.fault()
        crc = crc16(body)
        if fault == "crc-error":
            crc ^= 0x5555
        answer = body + bytes((crc & 0xFF, crc >> 8))
        if fault == "slow-response":
            self._late.append((time.ticks_add(time.ticks_ms(), int(self.signal.value("response_ms", 100))), answer))
        else:
            self._out.extend(answer)

    def _answer(self, req):
        if req[0] != self.slave:
            return
        fault = self.signal.fault()
        if fault == "no-response":
            return
        function = req[1]
        address = (req[2] << 8) | req[3]
        count = (req[4] << 8) | req[5]
        if fault in ("busy", "device-failure"):
            self._reply(bytes((self.slave, function | 0x80, 6 if fault == "busy" else 4)))
            return
        if function not in (3, 4):
            self._reply(bytes((self.slave, function | 0x80, 1)))
            return
        r = self.map.get((function, address))
        if r is None or TYPES[r.get("type", "uint16")][0] != count:
            self._reply(bytes((self.slave, function | 0x80, 2)))
            return
        value = self.signal.value(r["name"], 0.0) / r.get("scale", 1.0)
        data = encode_value(value, r.get("type", "uint16"), r.get("word_order", "big"))
        self._reply(bytes((self.slave, function, len(data))) + data)

    def pending(self):
        now = time.ticks_ms()
        while self._late and time.ticks_diff(self._late[0][0], now) <= 0:
            self._out.extend(self._late.pop(0)[1])  # a slow answer arrives
        return len(self._out)

    def send_into(self, buf):
        n = min(len(buf), self.pending())
        buf[:n] = self._out[:n]
        self._out = self._out[n:]
        return n
