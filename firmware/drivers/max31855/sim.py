"""Register-level MAX31855: on chip select it latches a 32-bit word from the
scenario (signals ``value`` = hot junction Cel, ``cj`` = cold junction Cel;
faults open-circuit, short-gnd, short-vcc, no-response) and clocks it out
MSB first."""


def encode(tc, cj, fault=None):
    t = int(round(tc / 0.25)) & 0x3FFF
    c = int(round(cj / 0.0625)) & 0xFFF
    word = (t << 18) | (c << 4)
    bits = {"open-circuit": 1, "short-gnd": 2, "short-vcc": 4}.get(fault)
    if bits:
        word = (word & ~(0x3FFF << 18)) | 0x10000 | bits
    return word


class Chip:
    def __init__(self, ch, signal):
        self.signal = signal
        self._word = 0
        self._bit = 32

    def select(self):
        fault = self.signal.fault()
        if fault == "no-response":
            self._word = 0xFFFFFFFF  # MISO pulled up, nobody driving it
        else:
            self._word = encode(self.signal.value("value", 25.0), self.signal.value("cj", 25.0), fault)
        self._bit = 32

    def deselect(self):
        self._bit = 32

    def transfer(self, out):
        self._bit -= 8
        if self._bit < 0:
            return 0
        return (self._word >> self._bit) & 0xFF
