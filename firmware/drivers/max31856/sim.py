"""Register-level MAX31856: a 16-byte register file behind SPI (address
byte, bit 7 = write, auto-increment).  In automatic conversion mode (CR0
bit 7) the temperature registers and the fault status follow the scenario:
``value`` (hot junction Cel), ``cj`` (Cel), faults open-circuit and
over-under-voltage; the thermocouple range fault follows the type set in
CR1, as the chip's does."""

# Usable range per type code (Cel), as in the datasheet's table.
_RANGES = {0: (250, 1820), 1: (-200, 1000), 2: (-210, 1200), 3: (-200, 1372), 4: (-200, 1300),
           5: (-50, 1768), 6: (-50, 1768), 7: (-200, 400)}


class Chip:
    def __init__(self, ch, signal):
        self.signal = signal
        self.regs = bytearray(16)
        self.regs[0x01] = 0x03  # power-on default: type K
        self.regs[0x02] = 0xFF
        self._addr = None
        self._write = False

    def select(self):
        self._addr = None
        if self.signal.fault() == "no-response":
            return
        if self.regs[0x00] & 0x80:
            self._convert()

    def deselect(self):
        self._addr = None

    def _convert(self):
        fault = self.signal.fault()
        tc = self.signal.value("value", 25.0)
        cj = self.signal.value("cj", 25.0)
        lo, hi = _RANGES[self.regs[0x01] & 0x0F]
        sr = 0
        if fault == "open-circuit":
            sr |= 0x01
        elif fault == "over-under-voltage":
            sr |= 0x02
        if not lo <= tc <= hi:
            sr |= 0x40
        if not -55 <= cj <= 125:
            sr |= 0x80
        t = int(round(tc / 0.0078125)) << 5
        c = int(round(cj / 0.015625)) << 2
        self.regs[0x0A] = (c >> 8) & 0xFF
        self.regs[0x0B] = c & 0xFC
        self.regs[0x0C] = (t >> 16) & 0xFF
        self.regs[0x0D] = (t >> 8) & 0xFF
        self.regs[0x0E] = t & 0xE0
        self.regs[0x0F] = sr

    def transfer(self, out):
        if self.signal.fault() == "no-response":
            return 0xFF
        if self._addr is None:
            self._write = bool(out & 0x80)
            self._addr = out & 0x0F
            return 0
        addr = self._addr
        self._addr = (addr + 1) & 0x0F
        if self._write:
            if addr <= 0x0B:  # 0x0C.. are read-only
                self.regs[addr] = out
            return 0
        return self.regs[addr]
