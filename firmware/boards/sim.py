"""The ``sim`` board: the unix port with simulated buses.

Each channel's chip is simulated at register level by its driver's
``sim.py`` (``Chip(channel, signal)``), fed by the scenario file.  The buses
here only move bytes, like ``machine``'s: SPI clocks bytes through a chip
while its chip-select pin is low, I2C addresses register files, the UART
carries bytes to a simulated RS-485 instrument.
"""

import os
import sys
import time
import errno

from boards.scenario import Scenario
from node import fsutil

RESET_FILE = "reset_cause.txt"


def _chip(ch, scenario):
    module = __import__("drivers.%s.sim" % ch["driver"], None, None, ("Chip",))
    return module.Chip(ch, scenario.signal(ch["name"]))


class SimPin:
    """A chip-select pin: edges select and deselect the simulated chip."""

    def __init__(self, chip):
        self._chip = chip
        self._value = 1

    def __call__(self, value=None):
        if value is None:
            return self._value
        if value != self._value:
            self._value = value
            if value:
                self._chip.deselect()
            else:
                self._chip.select()

    def value(self, value=None):
        return self(value)

    on = lambda self: self(1)  # noqa: E731
    off = lambda self: self(0)  # noqa: E731


class SimSPI:
    def __init__(self, chip):
        self._chip = chip

    def readinto(self, buf, write=0):
        for i in range(len(buf)):
            buf[i] = self._chip.transfer(write)

    def write(self, buf):
        for b in buf:
            self._chip.transfer(b)

    def write_readinto(self, wbuf, rbuf):
        for i in range(len(wbuf)):
            rbuf[i] = self._chip.transfer(wbuf[i])


class SimI2C:
    """An I2C bus with simulated chips at their addresses."""

    def __init__(self):
        self.chips = {}

    def _at(self, addr):
        chip = self.chips.get(addr)
        if chip is None or chip.nack():
            raise OSError(errno.ENODEV)
        return chip

    def scan(self):
        return [a for a in sorted(self.chips) if not self.chips[a].nack()]

    def writeto(self, addr, buf):
        self._at(addr).write(buf)
        return len(buf)

    def readfrom_into(self, addr, buf):
        self._at(addr).read_into(buf)

    def writeto_mem(self, addr, reg, buf):
        chip = self._at(addr)
        chip.write(bytes((reg,)) + bytes(buf))

    def readfrom_mem_into(self, addr, reg, buf):
        chip = self._at(addr)
        chip.write(bytes((reg,)))
        chip.read_into(buf)


class SimUART:
    """Bytes to and from a simulated instrument (e.g. a Modbus RTU slave)."""

    def __init__(self, chip, baudrate):
        self._chip = chip
        self.baudrate = baudrate

    def write(self, buf):
        self._chip.receive(bytes(buf))
        return len(buf)

    def any(self):
        return self._chip.pending()

    def readinto(self, buf):
        return self._chip.send_into(buf)

    def read(self, n=-1):
        buf = bytearray(self.any() if n < 0 else min(n, self.any()))
        got = self.readinto(buf)
        return bytes(buf[:got]) if got else None


class SimADC:
    def __init__(self, signal):
        self._signal = signal

    def read_uv(self):
        return int(self._signal.value("value", 0.0) * 1000000)

    def read_u16(self):
        return max(0, min(65535, int(self._signal.value("value", 0.0) / 3.3 * 65535)))


class SimWatchdog:
    """machine.WDT for the unix port: a thread that ends the process (the
    bench's supervisor restarts it) when ``feed`` stops for ``timeout_ms``."""

    def __init__(self, timeout_ms):
        import _thread

        self.timeout_ms = timeout_ms
        self._fed = time.ticks_ms()
        self._running = True
        _thread.start_new_thread(self._watch, ())

    def feed(self):
        self._fed = time.ticks_ms()

    def stop(self):
        self._running = False

    def _watch(self):
        while self._running:
            time.sleep_ms(200)
            if self._running and time.ticks_diff(time.ticks_ms(), self._fed) > self.timeout_ms:
                print("watchdog: node hung for %d ms, resetting" % self.timeout_ms)
                try:
                    with open(RESET_FILE, "w") as f:
                        f.write("watchdog")
                except OSError:
                    pass
                os.system("kill -KILL $PPID")  # the shell's parent is this VM


class Board:
    NAME = "sim"

    def __init__(self, config):
        self.config = config
        sim = config.get("sim") or {}
        self.scenario = Scenario(sim.get("scenario", "sim.json"), sim.get("time_scale", 1.0))
        self._i2c = {}

    def spi(self, ch, mode=1, baudrate=None):
        chip = _chip(ch, self.scenario)
        return SimSPI(chip), SimPin(chip)

    def i2c(self, ch):
        name = ch.get("bus", "i2c0")
        bus = self._i2c.get(name)
        if bus is None:
            bus = self._i2c[name] = SimI2C()
        chip = _chip(ch, self.scenario)
        bus.chips[chip.address] = chip
        return bus

    def uart(self, ch, baudrate=9600):
        return SimUART(_chip(ch, self.scenario), baudrate)

    def adc(self, ch):
        return SimADC(self.scenario.signal(ch["name"]))

    def pin(self, number):
        return None

    def watchdog(self, timeout_ms):
        return SimWatchdog(timeout_ms)

    def reset_cause(self):
        """Why the last run ended, as noted before it ended (else power-on)."""
        text = fsutil.read_replaced(RESET_FILE)
        fsutil.remove(RESET_FILE)
        return str(text, "utf-8") if text else "power-on"

    def note_reset(self, cause):
        fsutil.write_replace(RESET_FILE, cause.encode())

    def reset(self):
        sys.exit(3)  # the supervisor (bench) starts the node again

    def rssi(self):
        return None
