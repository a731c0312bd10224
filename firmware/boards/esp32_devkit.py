"""ESP32 DevKitC: VSPI for thermocouple chips, I2C0 on 21/22, UART2 on
17/16 for RS-485 (DE on pin 4 when configured)."""

import network

from boards.hardware import HardwareBoard


class Board(HardwareBoard):
    NAME = "esp32_devkit"
    I2C = {"i2c0": (0, 22, 21, 400000)}
    SPI = {"spi0": (2, 18, 23, 19, 1000000)}
    UART = {"uart1": (2, 17, 16)}
    ADC = {"adc0": 34}

    def rssi(self):
        try:
            return network.WLAN(network.STA_IF).status("rssi")
        except Exception:
            return None
