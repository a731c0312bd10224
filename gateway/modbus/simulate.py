"""Simulated Modbus instruments for tests, benchmarks and demos.

The instruments are pymodbus' own servers (``ModbusTcpServer``,
``ModbusSerialServer``) whose register tables live in a
``SimulatedInstrument`` the caller changes; faults are injected at the
register and wire level (a slow or silent instrument, exception answers, a
serial cable that drops or garbles bytes).  Nothing here is used by the
gateway in production.

    analyzer = offgas_analyzer(unit=1)
    server = await start_tcp([analyzer], port)
    analyzer.set("co", 24.0)           # the next poll reads 24.0
    analyzer.delay = 2.0               # now it times out

``PtyCable`` joins two pseudo-terminals with a relay, like a null-modem
cable: the gateway opens ``cable.client_path``, the instruments
``cable.device_path``.
"""

from __future__ import annotations

import asyncio
import os
import tty
from collections.abc import Iterable

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from .codec import encode
from .config import RegisterSpec

OFFGAS_MAP = (
    {"channel": "co", "table": "input", "address": 0, "type": "float32", "unit": "%"},
    {"channel": "co2", "table": "input", "address": 2, "type": "float32", "unit": "%"},
    {"channel": "o2", "table": "input", "address": 4, "type": "float32", "unit": "%"},
    {"channel": "h2", "table": "input", "address": 6, "type": "float32", "unit": "%"},
)
FLOW_MAP = (
    {"channel": "total", "table": "holding", "address": 0, "type": "uint32", "unit": "m3"},
    {"channel": "flow", "table": "holding", "address": 2, "type": "int16", "scale": 0.1, "unit": "l/s"},
)


def _specs(register_map: Iterable[dict]) -> list[RegisterSpec]:
    return [RegisterSpec(**entry) for entry in register_map]


class SimulatedInstrument:
    """An instrument at register level: a holding and an input table."""

    def __init__(self, unit: int, registers: Iterable[dict] = (), holding: int = 16, input: int = 16) -> None:
        self.unit = unit
        self.register_map = tuple(registers)
        self.specs = {s.channel: s for s in _specs(self.register_map)}
        self.tables = {"holding": [0] * holding, "input": [0] * input}
        self.delay = 0.0  # seconds before answering (beyond the poller's timeout: a silent device)
        self.exception: int | None = None  # answer every request with this exception code
        self.requests = 0

    def set(self, channel: str, value: float) -> None:
        spec = self.specs[channel]
        self.set_registers(spec.table, spec.address, encode(spec, value))

    def set_registers(self, table: str, address: int, words: list[int]) -> None:
        self.tables[table][address:address + len(words)] = words

    def config(self, name: str, **link) -> dict:
        """A ``[[modbus.devices]]`` table for this instrument."""
        return {"name": name, "unit": self.unit, **link, "registers": [dict(r) for r in self.register_map]}

    def device(self) -> SimDevice:
        def table(size: int) -> list[SimData]:
            return [SimData(0, count=max(1, size), values=0, datatype=DataType.REGISTERS)]

        bits = [SimData(0, count=16, values=False, datatype=DataType.BITS)]
        return SimDevice(
            id=self.unit,
            simdata=(bits, list(bits), table(len(self.tables["holding"])), table(len(self.tables["input"]))),
            action=self._action,
        )

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      registers: list[int], set_values) -> ExcCodes | None:
        self.requests += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.exception is not None:
            return ExcCodes(self.exception)
        if function_code in (1, 2, 5, 15):
            return None
        model = self.tables["input" if function_code == 4 else "holding"]
        offset = address - start_address
        if set_values is not None:
            model[offset:offset + len(set_values)] = [int(v) for v in set_values]
        registers[offset:offset + count] = model[offset:offset + count]
        return None


def offgas_analyzer(unit: int = 1) -> SimulatedInstrument:
    """An off-gas analyzer: CO, CO2, O2, H2 in % as float32 input registers."""
    analyzer = SimulatedInstrument(unit, OFFGAS_MAP, holding=4, input=8)
    for channel, value in (("co", 22.5), ("co2", 18.25), ("o2", 0.75), ("h2", 2.5)):
        analyzer.set(channel, value)
    return analyzer


def flow_meter(unit: int = 2) -> SimulatedInstrument:
    """A flow meter: a uint32 totalizer (m3) and an int16 flow (0.1 l/s) in holding registers."""
    meter = SimulatedInstrument(unit, FLOW_MAP, holding=3, input=1)
    meter.set("total", 123456)
    meter.set("flow", 42.5)
    return meter


async def start_tcp(instruments: Iterable[SimulatedInstrument], port: int, host: str = "127.0.0.1") -> ModbusTcpServer:
    """A pymodbus TCP server answering for ``instruments`` (one per unit id)."""
    server = ModbusTcpServer([i.device() for i in instruments], address=(host, port))
    await server.serve_forever(background=True)
    return server


async def start_tcp_anywhere(instruments: Iterable[SimulatedInstrument], host: str = "127.0.0.1",
                             attempts: int = 5) -> tuple[ModbusTcpServer, int]:
    """``start_tcp`` on a free port; another process may take a port between
    choosing it and listening (a busy test machine), so retry with a new one."""
    instruments = list(instruments)
    for attempt in range(attempts):
        port = free_port(host)
        server = ModbusTcpServer([i.device() for i in instruments], address=(host, port))
        try:
            await server.serve_forever(background=True)
        except RuntimeError:  # "Could not start listen": the port was taken meanwhile
            await server.shutdown()
            if attempt == attempts - 1:
                raise
            continue
        return server, port
    raise AssertionError("unreachable")


async def start_rtu(instruments: Iterable[SimulatedInstrument], serial_port: str,
                    baudrate: int = 19200, parity: str = "N") -> ModbusSerialServer:
    """A pymodbus RTU server on ``serial_port``: instruments sharing one bus.
    (Linux pseudo-terminals refuse parity settings, hence "N".)"""
    server = ModbusSerialServer(
        [i.device() for i in instruments], framer=FramerType.RTU, port=serial_port,
        baudrate=baudrate, parity=parity,
    )
    await server.serve_forever(background=True)
    return server


class PtyCable:
    """Two pseudo-terminals joined by an in-process relay.

    ``mode`` injects wire faults: "ok" passes bytes, "cut" drops them all,
    "garble" flips a bit in every chunk the device sends (a CRC error).
    """

    def __init__(self) -> None:
        self._client_master, self._client_slave = os.openpty()
        self._device_master, self._device_slave = os.openpty()
        for fd in (self._client_slave, self._device_slave):
            tty.setraw(fd)  # no echo, no line discipline: bytes pass as they are
        self.client_path = os.ttyname(self._client_slave)
        self.device_path = os.ttyname(self._device_slave)
        self.mode = "ok"
        self.bytes_relayed = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> PtyCable:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._client_master, self._relay, self._client_master, self._device_master, False)
        self._loop.add_reader(self._device_master, self._relay, self._device_master, self._client_master, True)
        return self

    def _relay(self, source: int, target: int, from_device: bool) -> None:
        try:
            data = os.read(source, 4096)
        except OSError:
            return
        if self.mode == "cut" or not data:
            return
        if self.mode == "garble" and from_device:
            data = data[:-1] + bytes([data[-1] ^ 0x01])
        self.bytes_relayed += len(data)
        os.write(target, data)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._client_master)
            self._loop.remove_reader(self._device_master)
            self._loop = None
        for fd in (self._client_master, self._client_slave, self._device_master, self._device_slave):
            try:
                os.close(fd)
            except OSError:
                pass


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for tests and benchmarks)."""
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
