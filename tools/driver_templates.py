"""The files ``smemet new-driver`` writes, per bus.  Each template models a
generic chip so the scaffold runs as it is; ``$name`` is the driver name.

Every bus gets the same five files: ``__init__.py`` (the driver),
``schema.py`` (settings, checked at boot then unloaded), ``sim.py`` (the
chip at register level), ``test_NAME.py`` (run inside MicroPython by
firmware/tests) and ``README.md``.
"""

from __future__ import annotations

from string import Template

# ---------------------------------------------------------------- I2C

_I2C_DRIVER = '''"""$name (I2C): a sensor with a 16-bit signed result register.

Generic register map (replace with your chip's datasheet): ID register 0x0F
reads 0x5A; result register 0x00, big-endian, two's complement, 1 LSB =
1/128 of the unit.  The code 0x7FFF means the input is above the chip's
range (value kept, uncertain).  Reasons: no-response, over-range.
Settings: schema.py.
"""

from micropython import const

_REG_RESULT = const(0x00)
_REG_ID = const(0x0F)
_CHIP_ID = const(0x5A)
_OVER = const(0x7FFF)
_LSB = 1 / 128


class Driver:
    def __init__(self, board, ch):
        self.i2c = board.i2c(ch)
        self.addr = ch["address"]
        self.name = ch["name"]
        self.unit = ch["unit"]
        self._buf = bytearray(2)

    def setup(self):
        self.i2c.readfrom_mem_into(self.addr, _REG_ID, self._buf)  # OSError when the chip is absent
        if self._buf[0] != _CHIP_ID:
            raise OSError("$name: chip id 0x%02x, expected 0x%02x" % (self._buf[0], _CHIP_ID))

    async def read(self, emit):
        try:
            self.i2c.readfrom_mem_into(self.addr, _REG_RESULT, self._buf)
        except OSError:
            emit(self.name, self.unit, None, "no-response")
            return
        raw = (self._buf[0] << 8) | self._buf[1]
        if raw == _OVER:
            emit(self.name, self.unit, raw * _LSB, "over-range")
            return
        if raw & 0x8000:
            raw -= 0x10000
        emit(self.name, self.unit, raw * _LSB, None)
'''

_I2C_SCHEMA = '''"""$name settings, checked at boot by node/config.py (then unloaded)."""

NAME = "$name"
BUS = "i2c"
UNITS = ("Cel", "K", "Pa", "V", "A", "%", "%RH")
SETTINGS = (
    ("bus", "str", "i2c0", None),
    ("address", "int", 0x40, (0x40, 0x43)),
    ("unit", "str", "Cel", UNITS),
)
'''

_I2C_SIM = '''"""Register-level $name for the sim board: a register pointer, the ID
register (0x0F = 0x5A) and the 16-bit result register (0x00) converted from
the scenario's ``value`` (1 LSB = 1/128, saturating at 0x7FFF / 0x8000).
Faults: ``no-response`` (the chip NACKs)."""


class Chip:
    def __init__(self, ch, signal):
        self.signal = signal
        self.address = ch.get("address", 0x40)
        self.pointer = 0

    def nack(self):
        return self.signal.fault() == "no-response"

    def write(self, data):
        self.pointer = data[0]

    def read_into(self, buf):
        if self.pointer == 0x0F:
            word = 0x5A00
        else:
            raw = int(self.signal.value("value", 21.0) * 128)
            word = max(-0x8000, min(0x7FFF, raw)) & 0xFFFF
        buf[0] = word >> 8
        if len(buf) > 1:
            buf[1] = word & 0xFF
'''

_I2C_TEST = '''from mptest import FakeBoard, FakeSignal, channel, read_all, approx
import drivers.$name as drv


def make(value, **settings):
    sig = FakeSignal(value=value)
    d = drv.Driver(FakeBoard(sig), channel("$name", **settings))
    d.setup()
    return d, sig


def test_reads_the_value_in_its_unit():
    d, _ = make(21.5, unit="Cel")
    out = read_all(d)
    assert len(out) == 1 and out[0][0] == "c" and out[0][1] == "Cel", out
    assert approx(out[0][2], 21.5, 1 / 128) and out[0][3] is None, out


def test_negative_values():
    d, _ = make(-40.25)
    assert approx(read_all(d)[0][2], -40.25, 1 / 128)


def test_over_range_keeps_the_value_as_uncertain():
    d, _ = make(1000.0)
    out = read_all(d)
    assert out[0][3] == "over-range" and out[0][2] is not None, out


def test_no_response():
    d, sig = make(21.0)
    sig.fault_name = "no-response"
    assert read_all(d) == [("c", "Cel", None, "no-response")]
    sig.fault_name = None
    assert read_all(d)[0][3] is None


def test_setup_fails_without_the_chip():
    sig = FakeSignal(value=1.0)
    sig.fault_name = "no-response"
    d = drv.Driver(FakeBoard(sig), channel("$name"))
    try:
        d.setup()
    except OSError:
        return
    raise AssertionError("setup must raise OSError when the chip does not answer")
'''

# ---------------------------------------------------------------- SPI

_SPI_DRIVER = '''"""$name (SPI, mode 1): a sensor read as a burst of three registers.

Generic register map (replace with your chip's datasheet): a read sends the
start address with bit 7 set, then clocks out ID (0x00, reads 0x5A),
result MSB (0x01) and LSB (0x02); the result is two's complement, 1 LSB =
1/16 of the unit.  A missing or broken chip reads a wrong ID.  Reasons:
no-response.  Settings: schema.py.
"""

from micropython import const

_READ = const(0x80)
_CHIP_ID = const(0x5A)
_LSB = 1 / 16


class Driver:
    def __init__(self, board, ch):
        self.spi, self.cs = board.spi(ch, 1, ch["baudrate"])
        self.name = ch["name"]
        self.unit = ch["unit"]
        self._cmd = bytearray((_READ | 0x00,))
        self._buf = bytearray(3)

    def _burst(self):
        self.cs(0)
        try:
            self.spi.write(self._cmd)
            self.spi.readinto(self._buf)
        finally:
            self.cs(1)

    def setup(self):
        self._burst()
        if self._buf[0] != _CHIP_ID:
            raise OSError("$name: chip id 0x%02x, expected 0x%02x" % (self._buf[0], _CHIP_ID))

    async def read(self, emit):
        self._burst()
        if self._buf[0] != _CHIP_ID:
            emit(self.name, self.unit, None, "no-response")
            return
        raw = (self._buf[1] << 8) | self._buf[2]
        if raw & 0x8000:
            raw -= 0x10000
        emit(self.name, self.unit, raw * _LSB, None)
'''

_SPI_SCHEMA = '''"""$name settings, checked at boot by node/config.py (then unloaded)."""

NAME = "$name"
BUS = "spi"
UNITS = ("Cel", "K", "Pa", "V", "A", "%")
SETTINGS = (
    ("bus", "str", "spi0", None),
    ("cs", "int", 5, (0, 64)),
    ("baudrate", "int", 1000000, (10000, 10000000)),
    ("unit", "str", "Cel", UNITS),
)
'''

_SPI_SIM = '''"""Register-level $name for the sim board: chip select starts a
transaction, the first byte is the address (bit 7: read), then registers
are clocked out in turn: ID 0x5A, result MSB, result LSB (the scenario's
``value`` x 16).  Faults: ``no-response`` (MISO floats high: 0xFF)."""


class Chip:
    def __init__(self, ch, signal):
        self.signal = signal
        self._regs = bytearray(3)
        self._at = None

    def select(self):
        self._at = None

    def deselect(self):
        self._at = None

    def transfer(self, byte):
        if self.signal.fault() == "no-response":
            return 0xFF
        if self._at is None:  # the address byte
            self._at = byte & 0x7F
            raw = int(self.signal.value("value", 21.0) * 16)
            raw = max(-0x8000, min(0x7FFF, raw)) & 0xFFFF
            self._regs[0] = 0x5A
            self._regs[1] = raw >> 8
            self._regs[2] = raw & 0xFF
            return 0
        out = self._regs[self._at] if self._at < len(self._regs) else 0
        self._at += 1
        return out
'''

_SPI_TEST = '''from mptest import FakeBoard, FakeSignal, channel, read_all, approx
import drivers.$name as drv


def make(value, **settings):
    sig = FakeSignal(value=value)
    d = drv.Driver(FakeBoard(sig), channel("$name", **settings))
    d.setup()
    return d, sig


def test_reads_the_value_in_its_unit():
    d, _ = make(123.4375, unit="K")
    out = read_all(d)
    assert len(out) == 1 and out[0][1] == "K", out
    assert approx(out[0][2], 123.4375, 1 / 16) and out[0][3] is None, out


def test_negative_values():
    d, _ = make(-12.5)
    assert approx(read_all(d)[0][2], -12.5, 1 / 16)


def test_no_response():
    d, sig = make(21.0)
    sig.fault_name = "no-response"
    assert read_all(d) == [("c", "Cel", None, "no-response")]
    sig.fault_name = None
    assert read_all(d)[0][3] is None


def test_setup_fails_without_the_chip():
    sig = FakeSignal(value=1.0)
    sig.fault_name = "no-response"
    d = drv.Driver(FakeBoard(sig), channel("$name"))
    try:
        d.setup()
    except OSError:
        return
    raise AssertionError("setup must raise OSError when the chip does not answer")
'''

# ---------------------------------------------------------------- UART

_UART_DRIVER = '''"""$name (UART): an instrument that answers a text query.

Generic protocol (replace with your instrument's manual): the driver sends
``R\\\\r``, the instrument answers one line such as ``+0021.50\\\\r\\\\n``
within ``timeout_ms``.  Reasons: no-response (no complete answer in time),
bad-reply (an answer that is not a number).  Settings: schema.py.
"""

import asyncio

from micropython import const

_QUERY = b"R\\r"
_LINE = const(24)


class Driver:
    def __init__(self, board, ch):
        self.uart = board.uart(ch, ch["baudrate"])
        self.name = ch["name"]
        self.unit = ch["unit"]
        self.polls = max(1, ch["timeout_ms"] // 5)
        self._line = bytearray(_LINE)
        self._view = memoryview(self._line)

    def setup(self):
        pass  # an instrument on a serial line may be off at boot: read() reports it

    async def read(self, emit):
        while self.uart.any():  # a late answer to an earlier query
            self.uart.readinto(self._line)
        self.uart.write(_QUERY)
        n = 0
        for _ in range(self.polls):
            await asyncio.sleep_ms(5)
            if self.uart.any():
                n += self.uart.readinto(self._view[n:]) or 0
                if n and self._line[n - 1] == 10 or n >= _LINE:
                    break
        if not n or self._line[n - 1] != 10:
            emit(self.name, self.unit, None, "no-response")
            return
        try:
            value = float(str(bytes(self._view[:n]), "ascii").strip())
        except ValueError:
            emit(self.name, self.unit, None, "bad-reply")
            return
        emit(self.name, self.unit, value, None)
'''

_UART_SCHEMA = '''"""$name settings, checked at boot by node/config.py (then unloaded)."""

NAME = "$name"
BUS = "uart"
UNITS = ("Cel", "K", "Pa", "V", "A", "%", "m3/s", "kg/s")
SETTINGS = (
    ("bus", "str", "uart1", None),
    ("baudrate", "int", 9600, (1200, 115200)),
    ("timeout_ms", "int", 200, (10, 5000)),
    ("unit", "str", "Cel", UNITS),
)
'''

_UART_SIM = '''"""The $name instrument for the sim board, at the byte level: a query
``R\\\\r`` is answered with the scenario's ``value`` as ``+0021.50\\\\r\\\\n``.
Faults: ``no-response`` (silent), ``bad-reply`` (answers ``+##.##``)."""


class Chip:
    def __init__(self, ch, signal):
        self.signal = signal
        self._rx = b""
        self._tx = b""

    def receive(self, data):
        self._rx += data
        if b"\\r" not in self._rx:
            return
        self._rx = b""
        fault = self.signal.fault()
        if fault == "no-response":
            return
        if fault == "bad-reply":
            self._tx += b"+##.##\\r\\n"
        else:
            self._tx += ("%+08.2f\\r\\n" % self.signal.value("value", 21.0)).encode()

    def pending(self):
        return len(self._tx)

    def send_into(self, buf):
        n = min(len(buf), len(self._tx))
        buf[:n] = self._tx[:n]
        self._tx = self._tx[n:]
        return n
'''

_UART_TEST = '''from mptest import FakeBoard, FakeSignal, channel, read_all, approx
import drivers.$name as drv


def make(value, **settings):
    sig = FakeSignal(value=value)
    d = drv.Driver(FakeBoard(sig), channel("$name", **settings))
    d.setup()
    return d, sig


def test_reads_the_value_in_its_unit():
    d, _ = make(21.5, unit="Pa")
    out = read_all(d)
    assert len(out) == 1 and out[0][1] == "Pa", out
    assert approx(out[0][2], 21.5, 0.005) and out[0][3] is None, out


def test_negative_values():
    d, _ = make(-7.25)
    assert approx(read_all(d)[0][2], -7.25, 0.005)


def test_no_response_and_bad_reply():
    d, sig = make(21.0, timeout_ms=20)
    sig.fault_name = "no-response"
    assert read_all(d) == [("c", "Cel", None, "no-response")]
    sig.fault_name = "bad-reply"
    assert read_all(d) == [("c", "Cel", None, "bad-reply")]
    sig.fault_name = None
    out = read_all(d)
    assert approx(out[0][2], 21.0, 0.005) and out[0][3] is None, out
'''

# ---------------------------------------------------------------- ADC

_ADC_DRIVER = '''"""$name (ADC): an analog sensor on the board's ADC pin, scaled linearly.

The pin voltage is scaled from ``v_min``..``v_max`` to ``lrv``..``urv``
in ``unit`` (e.g. 0.5..4.5 V -> 0..10 bar).  Below ``fail_v`` the input is
open or shorted: no value (reason input-fail).  Outside v_min..v_max the
value is kept but uncertain (under-range, over-range).  Settings: schema.py.
"""


class Driver:
    def __init__(self, board, ch):
        self.adc = board.adc(ch)
        self.name = ch["name"]
        self.unit = ch["unit"]
        self.v_min, self.v_max = ch["v_min"], ch["v_max"]
        self.lrv, self.urv = ch["lrv"], ch["urv"]
        self.fail_v = ch["fail_v"]

    def setup(self):
        self.adc.read_uv()  # the pin exists and converts

    async def read(self, emit):
        volts = self.adc.read_uv() / 1000000
        if volts < self.fail_v:
            emit(self.name, self.unit, None, "input-fail")
            return
        value = self.lrv + (volts - self.v_min) * (self.urv - self.lrv) / (self.v_max - self.v_min)
        reason = "under-range" if volts < self.v_min else ("over-range" if volts > self.v_max else None)
        emit(self.name, self.unit, value, reason)
'''

_ADC_SCHEMA = '''"""$name settings, checked at boot by node/config.py (then unloaded)."""

NAME = "$name"
BUS = "adc"
UNITS = ("Cel", "K", "Pa", "bar", "V", "A", "%", "%RH", "m", "m3/s")
SETTINGS = (
    ("bus", "str", "adc0", None),
    ("v_min", "float", 0.5, (0.0, 5.0)),
    ("v_max", "float", 3.0, (0.0, 5.0)),
    ("lrv", "float", 0.0, None),
    ("urv", "float", 100.0, None),
    ("fail_v", "float", 0.1, (0.0, 5.0)),
    ("unit", "str", "%", UNITS),
)


def validate(ch, where, problems):
    if ch["v_max"] <= ch["v_min"]:
        problems.append("%s.v_max: must be above v_min" % where)
    if ch["fail_v"] > ch["v_min"]:
        problems.append("%s.fail_v: must not be above v_min" % where)
'''

_ADC_SIM = '''"""The $name's analog input for the tests: the pin voltage is the
scenario's ``value`` in volts.  Faults: ``open-input`` (0 V),
``short-to-supply`` (the 3.3 V rail).  On the sim board the ADC pin reads
the scenario's ``value`` the same way (boards/sim.py, SimADC)."""


class Chip:
    def __init__(self, ch, signal):
        self.signal = signal

    def _volts(self):
        fault = self.signal.fault()
        if fault == "open-input":
            return 0.0
        if fault == "short-to-supply":
            return 3.3
        return self.signal.value("value", 1.5)

    def read_uv(self):
        return int(self._volts() * 1000000)

    def read_u16(self):
        return max(0, min(65535, int(self._volts() / 3.3 * 65535)))
'''

_ADC_TEST = '''from mptest import FakeBoard, FakeSignal, channel, read_all, approx
import drivers.$name as drv


class AdcBoard(FakeBoard):
    """FakeBoard with the analog pin of sim.py."""

    def adc(self, ch):
        return self._chip(ch)


def make(volts, **settings):
    sig = FakeSignal(value=volts)
    d = drv.Driver(AdcBoard(sig), channel("$name", **settings))
    d.setup()
    return d, sig


def test_scales_volts_linearly():
    for volts, expect in ((0.5, 0.0), (1.75, 50.0), (3.0, 100.0)):
        d, _ = make(volts)
        out = read_all(d)
        assert approx(out[0][2], expect, 1e-3) and out[0][3] is None and out[0][1] == "%", (volts, out)


def test_outside_the_range_is_uncertain():
    d, _ = make(0.3)
    assert read_all(d)[0][3] == "under-range"
    d, _ = make(3.2)
    assert read_all(d)[0][3] == "over-range"


def test_open_input_gives_no_value():
    d, sig = make(1.0)
    sig.fault_name = "open-input"
    assert read_all(d) == [("c", "%", None, "input-fail")]
    sig.fault_name = "short-to-supply"
    assert read_all(d)[0][3] == "over-range"
'''

# ---------------------------------------------------------------- README

_README = '''# $name — $title ($bus_upper)

Scaffolded by `smemet new-driver $name --bus $bus`: a generic chip that works as it is. Adapt the register
map, scaling and reason codes in `__init__.py` and `sim.py` to your chip's datasheet, and keep the test
proving them (docs/driver-author.md).

| setting | default | meaning |
|---|---|---|
$settings_rows

Records: `<name>` in `unit`. Reason codes: $reasons.

config.json: `{"name": "x1", "driver": "$name", "period_ms": 1000}`.

Simulation (`sim.py`): $simulation Test: `test_$name.py` (`pytest firmware/tests -k $name`).
'''

_BUSES = {
    "i2c": dict(
        files=(_I2C_DRIVER, _I2C_SCHEMA, _I2C_SIM, _I2C_TEST),
        title="sensor with a 16-bit result register",
        settings=(("bus", "i2c0", "I2C bus"), ("address", "0x40", "I2C address (0x40..0x43)"),
                  ("unit", "Cel", "SenML unit of the value")),
        reasons="`no-response` (the chip NACKs: no value), `over-range` (result 0x7FFF: value kept, uncertain)",
        simulation="register pointer, ID and result registers; signal `value` in the unit; fault `no-response`.",
    ),
    "spi": dict(
        files=(_SPI_DRIVER, _SPI_SCHEMA, _SPI_SIM, _SPI_TEST),
        title="sensor read as a register burst",
        settings=(("bus", "spi0", "SPI bus"), ("cs", "5", "chip-select GPIO"),
                  ("baudrate", "1000000", "SPI clock, Hz"), ("unit", "Cel", "SenML unit of the value")),
        reasons="`no-response` (wrong chip ID: no chip or a broken line; no value)",
        simulation="address byte then ID, MSB, LSB; signal `value` in the unit; fault `no-response` (MISO high).",
    ),
    "uart": dict(
        files=(_UART_DRIVER, _UART_SCHEMA, _UART_SIM, _UART_TEST),
        title="instrument answering a text query",
        settings=(("bus", "uart1", "UART"), ("baudrate", "9600", "baud rate"),
                  ("timeout_ms", "200", "time the instrument gets to answer"), ("unit", "Cel", "SenML unit of the value")),
        reasons="`no-response` (no complete answer in time), `bad-reply` (the answer is not a number); no value",
        simulation="answers `R\\r` with `+0021.50\\r\\n` from signal `value`; faults `no-response`, `bad-reply`.",
    ),
    "adc": dict(
        files=(_ADC_DRIVER, _ADC_SCHEMA, _ADC_SIM, _ADC_TEST),
        title="analog sensor on an ADC pin",
        settings=(("bus", "adc0", "ADC pin name of the board"), ("v_min", "0.5", "volts at lrv"),
                  ("v_max", "3.0", "volts at urv"), ("lrv", "0", "value at v_min"), ("urv", "100", "value at v_max"),
                  ("fail_v", "0.1", "below this the input is open or shorted"), ("unit", "%", "SenML unit")),
        reasons="`input-fail` (below fail_v: no value), `under-range` / `over-range` (outside v_min..v_max: "
                "value kept, uncertain)",
        simulation="the pin voltage is signal `value` in volts (the sim board's ADC reads it the same way); "
                   "faults `open-input`, `short-to-supply` (tests only: the sim board's ADC has no faults).",
    ),
}


def render(name: str, bus: str) -> dict[str, str]:
    """filename (with NAME for the driver name) -> text."""
    spec = _BUSES[bus]
    driver, schema, sim, test = (Template(t).substitute(name=name) for t in spec["files"])
    rows = "\n".join(f"| `{key}` | {default} | {meaning} |" for key, default, meaning in spec["settings"])
    readme = Template(_README).substitute(name=name, bus=bus, bus_upper=bus.upper(), title=spec["title"],
                                          settings_rows=rows, reasons=spec["reasons"], simulation=spec["simulation"])
    return {"__init__.py": driver, "schema.py": schema, "sim.py": sim, "test_NAME.py": test, "README.md": readme}
