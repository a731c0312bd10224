"""Raspberry Pi Pico (W): SPI0 on 18/19/16, I2C0 on 5/4, UART0 on 0/1."""

from boards.hardware import HardwareBoard


class Board(HardwareBoard):
    NAME = "rpi_pico"
    I2C = {"i2c0": (0, 5, 4, 400000)}
    SPI = {"spi0": (0, 18, 19, 16, 1000000)}
    UART = {"uart1": (0, 0, 1)}
    ADC = {"adc0": 26}

    def rssi(self):
        try:
            import network

            return network.WLAN(network.STA_IF).status("rssi")
        except Exception:
            return None
