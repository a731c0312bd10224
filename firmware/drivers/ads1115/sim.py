"""Register-level ADS1115: pointer register, 16-bit config and conversion
registers.  Writing the config with OS=1 starts a single-shot conversion of
the loop current from the scenario (``value`` in mA; faults wire-break ->
0 mA, short-circuit -> 25 mA, no-response -> NACK) through the shunt; the
OS bit reads 0 until one poll later, as a conversion takes time."""


class Chip:
    def __init__(self, ch, signal):
        self.signal = signal
        self.address = ch.get("address", 0x48)
        self.shunt = ch.get("shunt_ohm", 100.0)
        self.pointer = 0
        self.config = 0x8583  # power-on default
        self.conversion = 0
        self._busy = 0

    def nack(self):
        return self.signal.fault() == "no-response"

    def write(self, data):
        self.pointer = data[0] & 0x03
        if len(data) >= 3 and self.pointer == 1:
            self.config = (data[1] << 8) | data[2]
            if self.config & 0x8000:
                self._convert()
                self._busy = 1

    def _convert(self):
        fault = self.signal.fault()
        ma = {"wire-break": 0.0, "short-circuit": 25.0}.get(fault, self.signal.value("value", 12.0))
        volts = ma / 1000 * self.shunt
        full_scale = (6.144, 4.096, 2.048, 1.024, 0.512, 0.256, 0.256, 0.256)[(self.config >> 9) & 7]
        code = int(volts / full_scale * 32768)
        self.conversion = max(-32768, min(32767, code)) & 0xFFFF

    def read_into(self, buf):
        if self.pointer == 0:
            value = self.conversion
        else:
            value = self.config & 0x7FFF
            if self._busy:
                self._busy -= 1
            else:
                value |= 0x8000
        buf[0] = value >> 8
        if len(buf) > 1:
            buf[1] = value & 0xFF
