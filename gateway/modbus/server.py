"""The Modbus TCP server that PLC/SCADA systems read.

Register map (stable; also in docs/modbus.md).  Channel ``i`` of
``[modbus.server] channels`` (0-based, in configured order) occupies four
registers from ``base = 4 * i``, identical in the input registers (function
4) and the holding registers (function 3):

=========  ==========================================================
base + 0   value, float32 high word  (IEEE 754, big-endian word order:
base + 1   value, float32 low word    high word first, big-endian bytes)
base + 2   status: 0 good, 1 uncertain, 2 bad, 3 no data
base + 3   age of the value in seconds (0..65535, saturating)
=========  ==========================================================

The value is NaN when there is no data, when the latest measurement has no
value (a failed poll) or has a non-numeric one; booleans read as 1.0/0.0.
A value beyond float32 saturates to +-infinity.  Age counts from the
measurement's time and is 65535 when there is no data.

Values are fresh at every read: the datastore asks ``latest("node/channel")``
for the registers a request touches.  Reading past the last channel gives
exception 2 (illegal data address); coil and discrete-input functions give
exception 1 (illegal function).  The server is read-only by default: every
write is refused with exception 1.  With ``read_only = false`` a PLC may
write the float32 value pair of channels marked ``writable = true`` (one
write covering both registers); such writes go to the ``on_write``
callback, and everything else is refused with exception 2.  Requests for
another unit id than the configured one (unless it is 0: any) are answered
with exception 11 (gateway target device failed to respond).
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
import time
from collections.abc import Callable

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from ..delivery import Selection
from ..errors import ConfigError
from ..latest import LatestSink, LatestTable
from ..spine import QUALITY_BAD, QUALITY_GOOD, QUALITY_UNCERTAIN, Measurement
from .codec import float32_words
from .config import ModbusConfig, ServerSpec

log = logging.getLogger(__name__)

REGISTERS_PER_CHANNEL = 4
STATUS_GOOD, STATUS_UNCERTAIN, STATUS_BAD, STATUS_NO_DATA = 0, 1, 2, 3
AGE_MAX = 65535
_STATUS = {QUALITY_GOOD: STATUS_GOOD, QUALITY_UNCERTAIN: STATUS_UNCERTAIN, QUALITY_BAD: STATUS_BAD}
_NAN = float("nan")
_READ_CODES = frozenset({3, 4, 23})  # read holding, read input, read/write multiple
_WRITE_CODES = frozenset({6, 16, 22, 23})


def channel_registers(measurement: Measurement | None, now: float) -> tuple[int, int, int, int]:
    """The four registers of one channel for its latest measurement."""
    if measurement is None:
        hi, lo = float32_words(_NAN)
        return hi, lo, STATUS_NO_DATA, AGE_MAX
    value = measurement.value
    if isinstance(value, bool):
        number = 1.0 if value else 0.0
    elif isinstance(value, (int, float)):
        number = float(value)
    else:
        number = _NAN
    hi, lo = float32_words(number)
    status = _STATUS.get(measurement.quality, STATUS_BAD)
    age = now - measurement.time
    age_reg = AGE_MAX if not math.isfinite(age) else min(AGE_MAX, max(0, int(age)))
    return hi, lo, status, age_reg


class RegisterMap:
    """Fills the registers a request touches from ``latest`` (the
    datastore action pymodbus calls before it answers)."""

    def __init__(self, spec: ServerSpec, latest: Callable[[str], Measurement | None],
                 on_write: Callable[[str, float], None] | None = None) -> None:
        self.spec = spec
        self.keys = [c.key for c in spec.channels]
        self.writable = [c.writable and not spec.read_only for c in spec.channels]
        self.latest = latest
        self.on_write = on_write
        self.size = REGISTERS_PER_CHANNEL * len(self.keys)

    async def action(self, function_code: int, start_address: int, address: int, count: int,
                     registers: list[int], set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        if function_code not in _READ_CODES and function_code not in _WRITE_CODES:
            return ExcCodes.ILLEGAL_FUNCTION
        if set_values is not None:
            refused = self._write(address, list(set_values))
            if refused is not None:
                return refused
        # fc 23 writes then reads: the read is answered from the same
        # ``registers`` list, so refresh every channel the request touches.
        self._refresh(registers, start_address, address, count)
        return None

    def _refresh(self, registers: list[int], start_address: int, address: int, count: int) -> None:
        now = time.time()
        first = (address - start_address) // REGISTERS_PER_CHANNEL
        last = (address - start_address + count - 1) // REGISTERS_PER_CHANNEL
        for index in range(max(0, first), min(len(self.keys) - 1, last) + 1):
            try:
                measurement = self.latest(self.keys[index])
            except Exception:  # a failing lookup must not take the server down
                log.exception("modbus server: latest(%r) failed", self.keys[index])
                measurement = None
            base = index * REGISTERS_PER_CHANNEL  # ``registers`` starts at ``start_address``
            registers[base:base + REGISTERS_PER_CHANNEL] = channel_registers(measurement, now)

    def _write(self, address: int, values: list[int]) -> ExcCodes | None:
        if self.spec.read_only or self.on_write is None:
            return ExcCodes.ILLEGAL_FUNCTION
        index, rem = divmod(address, REGISTERS_PER_CHANNEL)
        if rem != 0 or len(values) != 2 or index >= len(self.keys) or not self.writable[index]:
            return ExcCodes.ILLEGAL_ADDRESS
        value = struct.unpack(">f", struct.pack(">HH", values[0] & 0xFFFF, values[1] & 0xFFFF))[0]
        self.on_write(self.keys[index], value)
        return None


async def _refuse_unit(*_args) -> ExcCodes:
    return ExcCodes.GATEWAY_NO_RESPONSE


def build_devices(register_map: RegisterMap) -> list[SimDevice]:
    """pymodbus devices serving the map (shared block: input = holding)."""
    spec = register_map.spec
    block = SimData(0, count=register_map.size, values=0, datatype=DataType.REGISTERS)
    devices = [SimDevice(id=spec.unit, simdata=[block], action=register_map.action)]
    if spec.unit != 0:
        # Every other unit id: "gateway target device failed to respond".
        # (The block spans the whole address space so that no address check
        # answers before the refusal does.)
        devices.append(SimDevice(id=0, simdata=[SimData(0, count=65535, values=0, datatype=DataType.REGISTERS)],
                                 action=_refuse_unit))
    return devices


class ModbusServer:
    """The pymodbus TCP server over a register map, started and stopped."""

    def __init__(self, spec: ServerSpec, latest: Callable[[str], Measurement | None],
                 on_write: Callable[[str, float], None] | None = None) -> None:
        if not spec.read_only and on_write is None and any(c.writable for c in spec.channels):
            log.warning("modbus server: writable channels configured but nothing consumes writes; refusing them")
        self.spec = spec
        self._server = ModbusTcpServer(build_devices(RegisterMap(spec, latest, on_write)), address=(spec.host, spec.port))

    async def start(self) -> None:
        """Listen; raises ConfigError when the port cannot be had."""
        spec = self.spec
        try:
            await self._server.serve_forever(background=True)
        except (RuntimeError, OSError) as exc:
            raise ConfigError(
                "modbus.server",
                f"cannot listen on {spec.host}:{spec.port} ({exc}); is the port in use or the address not "
                "on this machine? Change [modbus.server] host/port",
            ) from None
        log.info("modbus server: %d channels on %s:%d (unit %s, %s)", len(spec.channels), spec.host, spec.port,
                 spec.unit or "any", "read-only" if spec.read_only else "writable channels accepted")

    async def stop(self) -> None:
        await self._server.shutdown()


async def run_server(config: ModbusConfig, latest: Callable[[str], Measurement | None],
                     stop: asyncio.Event, *,
                     on_write: Callable[[str, float], None] | None = None) -> None:
    """Serve the register map until ``stop`` is set (returns at once when
    no server is configured or it is disabled)."""
    spec = config.server
    if spec is None or not spec.enabled:
        return
    server = ModbusServer(spec, latest, on_write)
    await server.start()
    try:
        await stop.wait()
    finally:
        await server.stop()


class ModbusServerSink(LatestSink):
    """The server as a sink: the delivery loop keeps its channels' latest
    values, the server answers PLCs from them."""

    kind = "modbus-server"

    def __init__(self, spec: ServerSpec) -> None:
        keys = tuple(channel.key for channel in spec.channels)
        super().__init__("modbus-server", LatestTable(keys), Selection(include=keys, kinds=("data", "status")))
        self.description = f"modbus://{spec.host}:{spec.port}"
        self._server = ModbusServer(spec, self.table.get)

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop()
