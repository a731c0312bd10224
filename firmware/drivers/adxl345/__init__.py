"""ADXL345 (I2C) vibration: RMS and peak acceleration over a window, in m/s2.

Each read samples the three axes at ``rate_hz`` for ``window_ms``, removes
the mean of each axis (gravity and sensor offset), and reports
``<name>.rms`` (RMS of the vector magnitude of what remains) and
``<name>.peak`` (its largest magnitude).  Samples go into one buffer made at
start-up.  Reasons: no-response, wrong-device, clipped (a sample hit the
range limit, value uncertain).  Settings: schema.py."""

import asyncio
import math
from array import array

from micropython import const

_DEVID = const(0x00)
_BW_RATE = const(0x2C)
_POWER_CTL = const(0x2D)
_DATA_FORMAT = const(0x31)
_DATAX0 = const(0x32)
_DEVICE_ID = const(0xE5)
_G = 9.80665
_LSB_G = 0.0039  # full resolution: 3.9 mg per LSB at every range


def stats(samples, n):
    """(rms, peak) in m/s2 of ``n`` xyz samples (raw LSB) after removing
    each axis' mean."""
    mx = my = mz = 0
    for i in range(n):
        mx += samples[3 * i]
        my += samples[3 * i + 1]
        mz += samples[3 * i + 2]
    mx /= n
    my /= n
    mz /= n
    total = 0.0
    peak = 0.0
    for i in range(n):
        dx = samples[3 * i] - mx
        dy = samples[3 * i + 1] - my
        dz = samples[3 * i + 2] - mz
        sq = dx * dx + dy * dy + dz * dz
        total += sq
        if sq > peak:
            peak = sq
    k = _LSB_G * _G
    return math.sqrt(total / n) * k, math.sqrt(peak) * k


class Driver:
    def __init__(self, board, ch):
        self.i2c = board.i2c(ch)
        self.addr = ch["address"]
        self.rms_name = ch["name"] + ".rms"
        self.peak_name = ch["name"] + ".peak"
        self.rate = ch["rate_hz"]
        self.range_code = (2, 4, 8, 16).index(ch["range_g"])
        self.limit = ch["range_g"] / _LSB_G * 0.98
        self.count = max(2, ch["window_ms"] * self.rate // 1000)
        self.samples = array("h", bytes(6 * self.count))
        self._raw = bytearray(6)
        self._one = bytearray(1)
        self.ready = False

    def setup(self):
        self.i2c.readfrom_mem_into(self.addr, _DEVID, self._one)
        if self._one[0] != _DEVICE_ID:
            self.ready = None
            raise OSError("device id 0x%02x is not an ADXL345 (0xe5)" % self._one[0])
        self.i2c.writeto_mem(self.addr, _BW_RATE, bytes((8 + (25, 50, 100, 200, 400).index(self.rate),)))  # 0x08..0x0C
        self.i2c.writeto_mem(self.addr, _DATA_FORMAT, bytes((0x08 | self.range_code,)))
        self.i2c.writeto_mem(self.addr, _POWER_CTL, b"\x08")  # measure
        self.ready = True

    async def read(self, emit):
        try:
            if not self.ready:
                self.setup()
            period = 1000 // self.rate
            raw = self._raw
            s = self.samples
            clipped = False
            for i in range(self.count):
                self.i2c.readfrom_mem_into(self.addr, _DATAX0, raw)
                for axis in range(3):
                    v = raw[2 * axis] | (raw[2 * axis + 1] << 8)
                    if v & 0x8000:
                        v -= 0x10000
                    if v > self.limit or v < -self.limit:
                        clipped = True
                    s[3 * i + axis] = v
                await asyncio.sleep_ms(period)
        except OSError:
            reason = "wrong-device" if self.ready is None else "no-response"
            self.ready = False
            emit(self.rms_name, "m/s2", None, reason)
            emit(self.peak_name, "m/s2", None, reason)
            return
        rms, peak = stats(s, self.count)
        reason = "clipped" if clipped else None
        emit(self.rms_name, "m/s2", rms, reason)
        emit(self.peak_name, "m/s2", peak, reason)
