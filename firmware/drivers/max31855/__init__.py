"""MAX31855 cold-junction-compensated type-K thermocouple converter (SPI,
read-only 32-bit word).  Reports ``<name>`` in Cel; faults: open-circuit,
short-to-gnd, short-to-vcc, no-response.  Settings: schema.py."""

from micropython import const

_FAULT = const(0x10000)
_OC = const(0x01)
_SCG = const(0x02)
_SCV = const(0x04)


def decode(word):
    """(thermocouple Cel, cold junction Cel, fault reason or None)."""
    tc = word >> 18
    if tc & 0x2000:
        tc -= 0x4000
    cj = (word >> 4) & 0xFFF
    if cj & 0x800:
        cj -= 0x1000
    reason = None
    if word == 0xFFFFFFFF or word == 0:
        reason = "no-response"  # MISO floating high, or no chip clocking
    elif word & _FAULT:
        if word & _OC:
            reason = "open-circuit"
        elif word & _SCG:
            reason = "short-to-gnd"
        elif word & _SCV:
            reason = "short-to-vcc"
        else:
            reason = "fault"
    return tc * 0.25, cj * 0.0625, reason


class Driver:
    def __init__(self, board, ch):
        self.spi, self.cs = board.spi(ch, mode=0, baudrate=4000000)
        self.name = ch["name"]
        self.cj_name = self.name + ".cj" if ch["cold_junction"] else None
        self._buf = bytearray(4)

    def setup(self):
        self.cs(1)

    async def read(self, emit):
        self.cs(0)
        self.spi.readinto(self._buf)
        self.cs(1)
        b = self._buf
        tc, cj, reason = decode((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3])
        emit(self.name, "Cel", None if reason else tc, reason)
        if self.cj_name:
            bad = reason == "no-response"
            emit(self.cj_name, "Cel", None if bad else cj, reason if bad else None)
