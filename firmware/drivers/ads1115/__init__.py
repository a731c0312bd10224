"""ADS1115 (I2C) measuring a 4-20 mA loop across a shunt resistor.

The loop current is scaled from LRV/URV (the values at 4 and 20 mA) to
engineering units and classified by NAMUR NE43: 3.8..20.5 mA is a valid
measurement; at or below 3.6 mA (wire break, sensor failure) and at or above
21 mA (short circuit, sensor failure) there is no value; in between the
value is kept but uncertain.  Reasons: namur-fail-low, namur-fail-high,
namur-under-range, namur-over-range, no-response.  Settings: schema.py.
"""

import asyncio

from micropython import const

_CONVERSION = const(0x00)
_CONFIG = const(0x01)
_OS = const(0x8000)
# PGA setting and its full-scale voltage, smallest range that fits the shunt.
_PGA = ((0b101, 0.256), (0b100, 0.512), (0b011, 1.024), (0b010, 2.048), (0b001, 4.096), (0b000, 6.144))


def pga_for(shunt_ohm):
    """The smallest range that still reads 22 mA (past NAMUR's 21 mA)."""
    need = 0.022 * shunt_ohm
    for bits, volts in _PGA:
        if volts >= need:
            return bits, volts
    return _PGA[-1]


def classify(ma):
    """NAMUR NE43: (has value, reason or None).  Failure at or below 3.6 mA
    and at or above 21 mA; valid 3.8..20.5 mA; uncertain in between."""
    if ma <= 3.6:
        return False, "namur-fail-low"
    if ma >= 21.0:
        return False, "namur-fail-high"
    if ma < 3.8:
        return True, "namur-under-range"
    if ma > 20.5:
        return True, "namur-over-range"
    return True, None


def scale(ma, lrv, urv):
    return lrv + (ma - 4.0) * (urv - lrv) / 16.0


class Driver:
    def __init__(self, board, ch):
        self.i2c = board.i2c(ch)
        self.addr = ch["address"]
        self.name = ch["name"]
        self.current_name = self.name + ".current" if ch["report_current"] else None
        self.unit = ch["unit"]
        self.lrv, self.urv, self.shunt = ch["lrv"], ch["urv"], ch["shunt_ohm"]
        pga, self.full_scale = pga_for(self.shunt)
        # single-shot, AINx vs GND, 128 SPS, comparator off
        self.config = _OS | ((0b100 | ch["input"]) << 12) | (pga << 9) | 0x0100 | (0b100 << 5) | 0x0003
        self._cfg = bytearray(2)
        self._buf = bytearray(2)

    def setup(self):
        self.i2c.readfrom_mem_into(self.addr, _CONFIG, self._buf)  # is it there?

    async def read(self, emit):
        try:
            self._cfg[0] = self.config >> 8
            self._cfg[1] = self.config & 0xFF
            self.i2c.writeto_mem(self.addr, _CONFIG, self._cfg)
            for _ in range(20):  # 128 SPS: about 8 ms
                await asyncio.sleep_ms(2)
                self.i2c.readfrom_mem_into(self.addr, _CONFIG, self._buf)
                if self._buf[0] & 0x80:
                    break
            else:
                raise OSError("conversion did not finish")
            self.i2c.readfrom_mem_into(self.addr, _CONVERSION, self._buf)
        except OSError:
            emit(self.name, self.unit, None, "no-response")
            return
        code = (self._buf[0] << 8) | self._buf[1]
        if code & 0x8000:
            code -= 0x10000
        ma = code * self.full_scale / 32768 / self.shunt * 1000
        has_value, reason = classify(ma)
        emit(self.name, self.unit, scale(ma, self.lrv, self.urv) if has_value else None, reason)
        if self.current_name:
            emit(self.current_name, "A", ma / 1000, None)
