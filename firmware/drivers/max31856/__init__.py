"""MAX31856 precision thermocouple converter (SPI registers): types K, S, R
and B (and the others the chip knows), cold junction, fault register.

Reports ``<name>`` and ``<name>.cj`` in Cel.  Fault status bits become
reasons: open-circuit and over-under-voltage (no value); tc-out-of-range,
cj-out-of-range, tc-high, tc-low, cj-high, cj-low (value kept, uncertain);
no-response when the chip does not answer.  Settings: schema.py."""

from micropython import const

TC_TYPES = "BEJKNRST"  # CR1 type code = index: B 0, E 1, J 2, K 3, N 4, R 5, S 6, T 7

_CR0 = const(0x00)
_CR1 = const(0x01)
_MASK = const(0x02)
_CJTH = const(0x0A)
_WRITE = const(0x80)
_CR0_AUTO = const(0x80)
_CR0_OCFAULT = const(0x10)
_CR0_50HZ = const(0x01)

# Fault status register bits, most severe first: (bit, reason, no value)
_FAULTS = (
    (0x01, "open-circuit", True),
    (0x02, "over-under-voltage", True),
    (0x40, "tc-out-of-range", False),
    (0x08, "tc-high", False),
    (0x04, "tc-low", False),
)
_CJ_FAULTS = ((0x80, "cj-out-of-range"), (0x20, "cj-high"), (0x10, "cj-low"))


def decode(regs):
    """(tc Cel, cj Cel, tc reason, tc has no value, cj reason) from the six
    registers CJTH..SR."""
    cj = (regs[0] << 8) | regs[1]
    if cj & 0x8000:
        cj -= 0x10000
    tc = (regs[2] << 16) | (regs[3] << 8) | regs[4]
    if tc & 0x800000:
        tc -= 0x1000000
    sr = regs[5]
    reason, no_value = None, False
    for bit, name, fatal in _FAULTS:
        if sr & bit:
            reason, no_value = name, fatal
            break
    cj_reason = None
    for bit, name in _CJ_FAULTS:
        if sr & bit:
            cj_reason = name
            break
    return (tc >> 5) * 0.0078125, (cj >> 2) * 0.015625, reason, no_value, cj_reason


class Driver:
    def __init__(self, board, ch):
        self.spi, self.cs = board.spi(ch, mode=1, baudrate=1000000)
        self.name = ch["name"]
        self.cj_name = self.name + ".cj"
        self.cr0 = _CR0_AUTO | _CR0_OCFAULT | (_CR0_50HZ if ch["mains_hz"] == 50 else 0)
        self.cr1 = ((1, 2, 4, 8, 16).index(ch["averaging"]) << 4) | TC_TYPES.index(ch["tc_type"])
        self._cmd = bytearray(1)
        self._regs = bytearray(6)
        self.ready = False

    def _write(self, reg, value):
        self.cs(0)
        self.spi.write(bytes((reg | _WRITE, value)))
        self.cs(1)

    def _read(self, reg, buf):
        self._cmd[0] = reg
        self.cs(0)
        self.spi.write(self._cmd)
        self.spi.readinto(buf)
        self.cs(1)

    def setup(self):
        self._write(_MASK, 0x00)  # every fault sets FAULT
        self._write(_CR1, self.cr1)
        self._write(_CR0, self.cr0)
        check = bytearray(2)
        self._read(_CR0, check)
        self.ready = check[0] == self.cr0 and check[1] == self.cr1
        if not self.ready:
            raise OSError("max31856 did not keep its configuration (no chip on the bus?)")

    async def read(self, emit):
        if not self.ready:
            try:
                self.setup()
            except OSError:
                emit(self.name, "Cel", None, "no-response")
                return
        self._read(_CJTH, self._regs)
        tc, cj, reason, no_value, cj_reason = decode(self._regs)
        emit(self.name, "Cel", None if no_value else tc, reason)
        emit(self.cj_name, "Cel", cj, cj_reason)
