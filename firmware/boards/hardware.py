"""The HAL on real boards: buses come from ``machine``, created once per bus
name and shared by the channels on it.  Board modules only give the pins."""

import machine


class HardwareBoard:
    NAME = "hardware"
    I2C = {}  # bus name -> (id, scl, sda, freq)
    SPI = {}  # bus name -> (id, sck, mosi, miso, baudrate)
    UART = {}  # bus name -> (id, tx, rx)
    ADC = {}  # name -> pin

    def __init__(self, config):
        self._buses = {}

    def _shared(self, key, make):
        bus = self._buses.get(key)
        if bus is None:
            bus = self._buses[key] = make()
        return bus

    def i2c(self, ch):
        name = ch.get("bus", "i2c0")
        bus_id, scl, sda, freq = self.I2C[name]
        return self._shared("i2c:" + name, lambda: machine.I2C(bus_id, scl=machine.Pin(scl), sda=machine.Pin(sda), freq=freq))

    def spi(self, ch, mode=1, baudrate=None):
        name, cs = ch.get("bus", "spi0"), ch["cs"]
        bus_id, sck, mosi, miso, default_baud = self.SPI[name]
        spi = self._shared(
            "spi:" + name,
            lambda: machine.SPI(bus_id, baudrate=baudrate or default_baud, polarity=0, phase=mode & 1,
                                sck=machine.Pin(sck), mosi=machine.Pin(mosi), miso=machine.Pin(miso)),
        )
        return spi, machine.Pin(cs, machine.Pin.OUT, value=1)

    def uart(self, ch, baudrate=9600):
        name = ch.get("bus", "uart1")
        bus_id, tx, rx = self.UART[name]
        return machine.UART(bus_id, baudrate=baudrate, tx=tx, rx=rx, timeout=0)

    def adc(self, ch):
        name = ch.get("bus", "adc0")
        return machine.ADC(machine.Pin(self.ADC[name]))

    def pin(self, number):
        return machine.Pin(number, machine.Pin.OUT, value=0)

    def watchdog(self, timeout_ms):
        return machine.WDT(timeout=timeout_ms)

    def reset_cause(self):
        cause = machine.reset_cause()
        for name in ("PWRON_RESET", "HARD_RESET", "WDT_RESET", "DEEPSLEEP_RESET", "SOFT_RESET"):
            if getattr(machine, name, None) == cause:
                return name.lower().replace("_reset", "").replace("_", "-")
        return "unknown"

    def reset(self):
        machine.reset()

    def rssi(self):
        return None

    def scenario_time_s(self, uptime_ms):
        return uptime_ms / 1000
