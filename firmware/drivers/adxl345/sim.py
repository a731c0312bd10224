"""Register-level ADXL345: 64 registers behind I2C, DEVID 0xE5, data
registers DATAX0..DATAZ1 little endian in full resolution (3.9 mg/LSB).
The scenario gives ``value`` = vibration amplitude (m/s2, peak of a sine on
the x axis) at ``freq`` Hz (default 13), gravity on z; faults no-response
(NACK) and wrong-device (DEVID reads 0x00)."""

import math
import time

_LSB = 0.0039 * 9.80665


class Chip:
    def __init__(self, ch, signal):
        self.signal = signal
        self.address = ch.get("address", 0x53)
        self.regs = bytearray(64)
        self.regs[0x00] = 0xE5
        self.regs[0x2C] = 0x0A
        self.pointer = 0

    def nack(self):
        return self.signal.fault() == "no-response"

    def write(self, data):
        self.pointer = data[0] & 0x3F
        for b in data[1:]:
            if self.pointer not in (0x00, 0x30) and self.pointer < 0x32:
                self.regs[self.pointer] = b
            self.pointer = (self.pointer + 1) & 0x3F

    def _sample(self):
        measuring = self.regs[0x2D] & 0x08
        t = time.ticks_ms() / 1000
        amp = self.signal.value("value", 0.0)
        freq = self.signal.value("freq", 13.0)
        x = amp * math.sin(2 * math.pi * freq * t) if measuring else 0.0
        z = 9.80665 if measuring else 0.0
        limit = (2, 4, 8, 16)[self.regs[0x31] & 3] / 0.0039
        for i, a in ((0, x), (1, 0.0), (2, z)):
            v = int(max(-limit, min(limit, round(a / _LSB)))) & 0xFFFF
            self.regs[0x32 + 2 * i] = v & 0xFF
            self.regs[0x33 + 2 * i] = v >> 8

    def read_into(self, buf):
        if self.pointer == 0x32:
            self._sample()
        for i in range(len(buf)):
            if self.pointer == 0 and self.signal.fault() == "wrong-device":
                buf[i] = 0
            else:
                buf[i] = self.regs[self.pointer]
            self.pointer = (self.pointer + 1) & 0x3F
