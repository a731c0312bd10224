"""The ``sim`` board: the unix port with simulated buses and a scenario.

Each channel's chip is simulated at register level by its driver's
``sim.py`` (``Chip(channel, signal)``), fed by the scenario.  The buses here
only move bytes, like ``machine``'s: SPI clocks bytes through a chip while
its chip-select pin is low, I2C addresses register files, the UART carries
bytes to a simulated RS-485 instrument.

The scenario (``sim.json`` in the flash directory) gives, per channel name,
named signals (a constant or ``[[t_s, value], ...]`` breakpoints, linearly
interpolated over scenario time) and fault windows ``{"from": t_s, "to": t_s,
"fault": name}``.  Scenario time is node uptime times ``sim.time_scale``.
The file is re-read when it changes, so a bench can inject faults while a
node runs.
"""

import os
import sys
import json
import time

from node import fsutil

RESET_FILE = "reset_cause.txt"


def interpolate(points, t):
    if not isinstance(points, list):
        return points
    if not points:
        return 0.0
    if t <= points[0][0]:
        return points[0][1]
    for i in range(1, len(points)):
        t1, v1 = points[i]
        if t <= t1:
            t0, v0 = points[i - 1]
            if t1 == t0:
                return v1
            return v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    return points[-1][1]


class Signal:
    """The signals and faults of one channel (what a chip simulation reads)."""

    def __init__(self, scenario, name):
        self._scenario = scenario
        self._name = name

    def value(self, key="value", default=0.0):
        entry = self._scenario.channel(self._name)
        if entry is None or key not in entry:
            return default
        return interpolate(entry[key], self._scenario.now_s())

    def fault(self):
        """Name of the fault active now, or None."""
        entry = self._scenario.channel(self._name)
        if not entry:
            return None
        now = self._scenario.now_s()
        for window in entry.get("faults", ()):
            if window.get("from", 0) <= now < window.get("to", 1e30):
                return window.get("fault")
        return None


class Scenario:
    def __init__(self, path="sim.json", time_scale=1.0, clock_ms=None):
        self.path = path
        self.time_scale = time_scale
        self._start = time.ticks_ms()
        self._clock_ms = clock_ms  # tests inject scenario time
        self._stamp = None
        self._checked = None
        self._channels = {}
        self.error = None
        self._reload()

    def now_s(self):
        if self._clock_ms is not None:
            return self._clock_ms() / 1000
        return time.ticks_diff(time.ticks_ms(), self._start) * self.time_scale / 1000

    def _reload(self):
        try:
            st = os.stat(self.path)
        except OSError:
            self._channels = {}
            self._stamp = None
            return
        if self._stamp == (st[6], st[8]):
            return
        self._stamp = (st[6], st[8])
        try:
            with open(self.path) as f:
                self._channels = json.load(f).get("channels", {})
            self.error = None
        except (ValueError, AttributeError) as exc:
            self.error = "%s: not a valid scenario (%s); keeping the previous one" % (self.path, exc)
            print(self.error)

    def channel(self, name):
        now = time.ticks_ms()
        if self._checked is None or time.ticks_diff(now, self._checked) > 1000:
            self._checked = now
            self._reload()
        return self._channels.get(name)

    def signal(self, name):
        return Signal(self, name)


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

    value = __call__


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
            raise OSError(19)  # ENODEV, as machine.I2C says
        return chip

    def scan(self):
        return [a for a in sorted(self.chips) if not self.chips[a].nack()]

    def writeto(self, addr, buf):
        self._at(addr).write(buf)
        return len(buf)

    def readfrom_into(self, addr, buf):
        self._at(addr).read_into(buf)

    def writeto_mem(self, addr, reg, buf):
        self._at(addr).write(bytes((reg,)) + bytes(buf))

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


class Board:
    NAME = "sim"

    def __init__(self, config):
        sim = config.get("sim") or {}
        self.scenario = Scenario(sim.get("scenario", "sim.json"), sim.get("time_scale", 1.0))
        self._i2c = {}

    def _chip(self, ch):
        module = __import__("drivers.%s.sim" % ch["driver"], None, None, ("Chip",))
        return module.Chip(ch, self.scenario.signal(ch["name"]))

    def spi(self, ch, mode=1, baudrate=None):
        chip = self._chip(ch)
        return SimSPI(chip), SimPin(chip)

    def i2c(self, ch):
        name = ch.get("bus", "i2c0")
        bus = self._i2c.get(name)
        if bus is None:
            bus = self._i2c[name] = SimI2C()
        chip = self._chip(ch)
        bus.chips[chip.address] = chip
        return bus

    def uart(self, ch, baudrate=9600):
        return SimUART(self._chip(ch), baudrate)

    def adc(self, ch):
        return SimADC(self.scenario.signal(ch["name"]))

    def pin(self, number):
        return None

    def watchdog(self, timeout_ms):
        from boards.simwdt import SimWatchdog  # only a node with a watchdog pays its heap

        return SimWatchdog(timeout_ms, RESET_FILE)

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
