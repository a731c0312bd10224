"""A tiny test runner for MicroPython: runs every ``test_*`` function of
the modules named on the command line, prints PASS/FAIL lines and ends with
``RESULT ok`` or ``RESULT failed`` (the pytest wrapper checks both)."""

import sys
import gc


class FakeSignal:
    """Scenario stand-in for driver tests: set ``values`` and ``fault``."""

    def __init__(self, **values):
        self.values = values
        self.fault_name = None

    def value(self, key="value", default=0.0):
        return self.values.get(key, default)

    def fault(self):
        return self.fault_name


class FakeBoard:
    """Connects a driver to its chip simulation over the sim buses."""

    NAME = "sim"

    def __init__(self, signal):
        self.signal = signal
        self.chip = None

    def _chip(self, ch):
        module = __import__("drivers.%s.sim" % ch["driver"], None, None, ("Chip",))
        self.chip = module.Chip(ch, self.signal)
        return self.chip

    def spi(self, ch, mode=1, baudrate=None):
        from boards.sim import SimSPI, SimPin

        chip = self._chip(ch)
        return SimSPI(chip), SimPin(chip)

    def i2c(self, ch):
        from boards.sim import SimI2C

        bus = SimI2C()
        chip = self._chip(ch)
        bus.chips[chip.address] = chip
        return bus

    def uart(self, ch, baudrate=9600):
        from boards.sim import SimUART

        return SimUART(self._chip(ch), baudrate)

    def pin(self, n):
        return None


def channel(driver, **settings):
    """A validated channel config for ``driver``."""
    from node import config

    ch = {"name": "c", "driver": driver}
    ch.update(settings)
    problems = []
    module = config.load_driver(driver)
    config.check_fields(ch, config._CHANNEL, "ch", problems, allow_extra=True)
    config.check_fields(ch, (("name", "str", None, None), ("driver", "str", None, None),
                             ("period_ms", "int", None, None)) + module.SETTINGS, "ch", problems)
    if not problems and hasattr(module, "validate"):
        module.validate(ch, "ch", problems)
    assert not problems, problems
    return ch


def read_all(driver):
    """Run one ``read`` and return the emitted (name, unit, value, reason)."""
    import asyncio

    out = []

    def emit(name, unit, value, reason=None):
        out.append((name, unit, value, reason))

    asyncio.run(driver.read(emit))
    return out


def approx(a, b, tol=1e-6):
    return a is not None and abs(a - b) <= tol


def run(names):
    failed = 0
    passed = 0
    for name in names:
        module = __import__(name, None, None, ("x",))
        for attr in sorted(dir(module)):
            if not attr.startswith("test_"):
                continue
            gc.collect()
            try:
                getattr(module, attr)()
                passed += 1
                print("PASS %s.%s" % (name, attr))
            except Exception as exc:
                failed += 1
                print("FAIL %s.%s" % (name, attr))
                sys.print_exception(exc)
    print("RESULT %s (%d passed, %d failed)" % ("ok" if not failed and passed else "failed", passed, failed))
    sys.exit(1 if failed or not passed else 0)


if __name__ == "__main__":
    run(sys.argv[1:])
