"""Modbus RTU instrument over a UART / RS-485 (half duplex).

Reads the registers listed in ``registers`` with function 3 (holding) or 4
(input), one request per entry; types int16, uint16, int32, uint32, float32
with ``word_order`` big (high word first) or little; ``scale`` multiplies
the raw value.  CRC-16/MODBUS on every frame, a response timeout, retries.
Reasons (no value): modbus-timeout, modbus-crc, modbus-bad-reply,
modbus-exception-<code> (1 illegal-function, 2 illegal-address,
3 illegal-value, 4 device-failure, 6 busy, ...).  Settings and the
register-map checks: schema.py.
"""

import struct
import asyncio
import time

from micropython import const

TYPES = {"int16": (1, ">h"), "uint16": (1, ">H"), "int32": (2, ">i"), "uint32": (2, ">I"), "float32": (2, ">f")}
EXCEPTIONS = {1: "illegal-function", 2: "illegal-address", 3: "illegal-value", 4: "device-failure",
              5: "acknowledge", 6: "busy", 8: "memory-parity", 10: "gateway-path", 11: "gateway-target"}

_MAX_REPLY = const(64)


def crc16(data, length=None):
    """CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF)."""
    crc = 0xFFFF
    for i in range(len(data) if length is None else length):
        crc ^= data[i]
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def decode_value(data, offset, kind, word_order):
    """The value of registers at ``data[offset:]`` (big-endian bytes)."""
    count, fmt = TYPES[kind]
    raw = bytes(data[offset:offset + 2 * count])
    if count == 2 and word_order == "little":
        raw = raw[2:4] + raw[0:2]
    return struct.unpack(fmt, raw)[0]


class Driver:
    def __init__(self, board, ch):
        self.uart = board.uart(ch, ch["baudrate"])
        self.de = board.pin(ch["de_pin"]) if ch["de_pin"] is not None else None
        self.slave = ch["slave"]
        self.timeout_ms = ch["timeout_ms"]
        self.retries = ch["retries"]
        self.registers = []
        for r in ch["registers"]:
            self.registers.append((ch["name"] + "." + r["name"], r["unit"] or None, r["function"], r["address"],
                                   r["type"], r["word_order"], r["scale"]))
        # 3.5 character times of silence end a frame (1.75 ms above 19200 Bd)
        self.gap_ms = max(2, 38500 // ch["baudrate"] + 1)
        self._req = bytearray(8)
        self._rx = bytearray(_MAX_REPLY)
        self.stats_timeouts = 0
        self.stats_crc = 0

    def setup(self):
        while self.uart.any():
            self.uart.readinto(self._rx)

    async def _transact(self, function, address, count):
        """Reply bytes count, or a negative code: -1 timeout, -2 CRC,
        -3 bad reply; exception replies return (0, code)."""
        req = self._req
        req[0] = self.slave
        req[1] = function
        req[2] = address >> 8
        req[3] = address & 0xFF
        req[4] = 0
        req[5] = count
        crc = crc16(req, 6)
        req[6] = crc & 0xFF
        req[7] = crc >> 8
        while self.uart.any():  # drop stale bytes from a late reply
            self.uart.readinto(self._rx)
        if self.de:
            self.de(1)
        self.uart.write(req)
        if self.de:
            if hasattr(self.uart, "flush"):
                self.uart.flush()
            self.de(0)
        want = 5 + 2 * count
        got = 0
        rx = self._rx
        mv = memoryview(rx)
        start = time.ticks_ms()
        while time.ticks_diff(time.ticks_ms(), start) < self.timeout_ms:
            if self.uart.any():
                n = self.uart.readinto(mv[got:])
                got += n or 0
                if got >= 5 and rx[1] & 0x80:
                    want = 5
                if got >= want:
                    break
            await asyncio.sleep_ms(self.gap_ms)
        if got < want:
            # RTU answers carry no transaction id: a late answer to this
            # request must not pass for the next one's (another register's
            # value).  Keep the bus quiet for one more timeout, then drop it.
            await asyncio.sleep_ms(self.timeout_ms)
            while self.uart.any():
                self.uart.readinto(self._rx)
            return -1
        if crc16(rx, want - 2) != rx[want - 2] | (rx[want - 1] << 8):
            return -2
        if rx[0] != self.slave or rx[1] & 0x7F != function:
            return -3
        if rx[1] & 0x80:
            return 0x100 | rx[2]
        if rx[2] != 2 * count:
            return -3
        return want

    async def read(self, emit):
        for name, unit, function, address, kind, order, scale in self.registers:
            result = -1
            for _ in range(self.retries + 1):
                result = await self._transact(function, address, TYPES[kind][0])
                if result > 0:
                    break  # a value, or an exception: retrying will not help
            if result == -1:
                self.stats_timeouts += 1
                emit(name, unit, None, "modbus-timeout")
            elif result == -2:
                self.stats_crc += 1
                emit(name, unit, None, "modbus-crc")
            elif result == -3:
                emit(name, unit, None, "modbus-bad-reply")
            elif result & 0x100:
                code = result & 0xFF
                emit(name, unit, None, "modbus-exception-%s" % EXCEPTIONS.get(code, str(code)))
            else:
                emit(name, unit, decode_value(self._rx, 3, kind, order) * scale, None)
