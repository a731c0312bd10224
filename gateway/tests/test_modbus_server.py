"""The Modbus TCP server read by a PLC-side pymodbus client, and the whole
path: simulated instrument -> pollers -> SQLite -> server -> PLC."""

import asyncio
import math
import struct
import time

import pytest
from pymodbus.client import AsyncModbusTcpClient

from smemet.gateway.errors import ConfigError
from smemet.gateway.spine import Measurement
from smemet.gateway.modbus import parse_modbus, run_pollers, run_server
from smemet.gateway.modbus.simulate import free_port, offgas_analyzer, start_tcp

CHANNELS = ["furnace-1/temp", "offgas-1/co", "offgas-1/o2", "flow-1/ok", "flow-1/label", "ghost/none"]


def _float(hi, lo):
    return struct.unpack(">f", struct.pack(">HH", hi, lo))[0]


class Latest:
    """The latest processed measurement per "node/channel", as the outbox keeps it."""

    def __init__(self):
        self.values = {}
        self.calls = 0

    def put(self, key, value, quality="good", age=0.0):
        node, _, channel = key.partition("/")
        self.values[key] = Measurement(len(self.values) + 1, node, 1, channel, time.time() - age, value,
                                       None, quality)

    def __call__(self, key):
        self.calls += 1
        return self.values.get(key)


class Server:
    def __init__(self, latest, **server):
        self.port = free_port()
        self.config = parse_modbus({"server": {"port": self.port, "channels": CHANNELS, **server}}, "gateway.toml")
        self.latest = latest
        self.stop = asyncio.Event()
        self.writes = []

    async def __aenter__(self):
        self.task = asyncio.create_task(run_server(self.config, self.latest, self.stop,
                                                   on_write=lambda k, v: self.writes.append((k, v))))
        self.plc = AsyncModbusTcpClient("127.0.0.1", port=self.port, timeout=2, retries=0)
        for _ in range(100):  # the server is listening once a PLC can connect
            if await self.plc.connect():
                break
            await asyncio.sleep(0.02)
        assert self.plc.connected
        return self

    async def __aexit__(self, *exc):
        self.plc.close()
        self.stop.set()
        await asyncio.wait_for(self.task, 5)


@pytest.fixture
def latest():
    values = Latest()
    values.put("furnace-1/temp", 1523.25, age=12.4)
    values.put("offgas-1/co", 22.5, quality="uncertain")
    values.put("offgas-1/o2", None, quality="bad")  # a failed poll
    values.put("flow-1/ok", True)
    values.put("flow-1/label", "open")
    return values


async def test_modbus_server_plc_reads_values_status_and_age(latest):
    async with Server(latest) as server:
        for read in (server.plc.read_input_registers, server.plc.read_holding_registers):
            rr = await read(0, count=4 * len(CHANNELS), device_id=1)
            assert not rr.isError(), rr
            regs = rr.registers
            channel = {key: regs[4 * i:4 * i + 4] for i, key in enumerate(CHANNELS)}
            temp = channel["furnace-1/temp"]
            assert _float(*temp[:2]) == 1523.25 and temp[2] == 0 and 12 <= temp[3] <= 13
            assert _float(*channel["offgas-1/co"][:2]) == 22.5 and channel["offgas-1/co"][2] == 1
            o2 = channel["offgas-1/o2"]
            assert math.isnan(_float(*o2[:2])) and o2[2] == 2 and o2[3] <= 1
            assert _float(*channel["flow-1/ok"][:2]) == 1.0
            assert math.isnan(_float(*channel["flow-1/label"][:2]))
            none = channel["ghost/none"]
            assert math.isnan(_float(*none[:2])) and none[2:] == [3, 65535]


async def test_modbus_server_values_are_fresh_at_every_read(latest):
    async with Server(latest) as server:
        rr = await server.plc.read_input_registers(4, count=4, device_id=1)
        assert _float(*rr.registers[:2]) == 22.5
        latest.put("offgas-1/co", 31.0)
        latest.put("ghost/none", 7.0, age=70000.0)  # data arrives, but very old
        rr = await server.plc.read_input_registers(4, count=2, device_id=1)
        assert _float(*rr.registers) == 31.0
        rr = await server.plc.read_input_registers(20, count=4, device_id=1)
        assert _float(*rr.registers[:2]) == 7.0 and rr.registers[2:] == [0, 65535]  # age saturates
        # a read in the middle of a channel still gets that channel's fresh registers
        latest.put("furnace-1/temp", 1600.0, quality="bad", age=3.0)
        rr = await server.plc.read_holding_registers(2, count=2, device_id=1)
        assert rr.registers[0] == 2 and 3 <= rr.registers[1] <= 4


async def test_modbus_server_refuses_writes_and_bad_addresses(latest):
    async with Server(latest) as server:
        plc = server.plc
        rr = await plc.write_register(0, 1234, device_id=1)
        assert rr.isError() and rr.exception_code == 1  # read-only: illegal function
        rr = await plc.write_registers(0, [0x4000, 0x0000], device_id=1)
        assert rr.isError() and rr.exception_code == 1
        rr = await plc.read_input_registers(4 * len(CHANNELS) - 2, count=4, device_id=1)
        assert rr.isError() and rr.exception_code == 2  # past the last channel
        rr = await plc.read_coils(0, count=1, device_id=1)
        assert rr.isError() and rr.exception_code == 1
        rr = await plc.read_input_registers(0, count=4, device_id=9)
        assert rr.isError() and rr.exception_code == 11  # another unit id
        # nothing was changed by the refused writes
        rr = await plc.read_input_registers(0, count=2, device_id=1)
        assert _float(*rr.registers) == 1523.25
        assert server.writes == []


async def test_modbus_server_accepts_writes_only_to_writable_channels(latest):
    async with Server(latest, read_only=False, unit=0) as server:
        plc = server.plc
        # the config marks no channel writable: every write is refused
        rr = await plc.write_registers(0, [0x4000, 0x0000], device_id=5)
        assert rr.isError() and rr.exception_code == 2
    channels = [CHANNELS[0], {"channel": "plant/setpoint", "writable": True}]
    port = free_port()
    config = parse_modbus({"server": {"port": port, "read_only": False, "channels": channels}}, "gateway.toml")
    writes, stop = [], asyncio.Event()
    task = asyncio.create_task(run_server(config, latest, stop, on_write=lambda k, v: writes.append((k, v))))
    plc = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    try:
        for _ in range(100):
            if await plc.connect():
                break
            await asyncio.sleep(0.02)
        rr = await plc.write_registers(4, [0x4049, 0x0000], device_id=1)  # 3.140625
        assert not rr.isError(), rr
        assert writes == [("plant/setpoint", 3.140625)]
        rr = await plc.write_registers(0, [0x4049, 0x0000], device_id=1)  # not writable
        assert rr.isError() and rr.exception_code == 2
        rr = await plc.write_register(4, 1, device_id=1)  # half a float
        assert rr.isError() and rr.exception_code == 2
        assert len(writes) == 1
    finally:
        plc.close()
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_modbus_server_port_in_use_is_a_clear_error(latest):
    port = free_port()
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", port)
    try:
        config = parse_modbus({"server": {"port": port, "channels": CHANNELS}}, "gateway.toml")
        with pytest.raises(ConfigError) as caught:
            await asyncio.wait_for(run_server(config, latest, asyncio.Event()), 5)
        assert f"127.0.0.1:{port}" in str(caught.value) and "modbus.server" in caught.value.where
    finally:
        blocker.close()
        await blocker.wait_closed()


async def test_modbus_server_disabled_returns_at_once(latest):
    config = parse_modbus({"server": {"enabled": False, "channels": CHANNELS}}, "gateway.toml")
    await asyncio.wait_for(run_server(config, latest, asyncio.Event()), 1)


async def test_modbus_end_to_end_instrument_to_plc(tmp_path):
    """Analyzer -> poller -> sink (latest per channel) -> server -> PLC."""
    analyzer = offgas_analyzer(1)
    inst_port, plc_port = free_port(), free_port()
    instrument = await start_tcp([analyzer], inst_port)
    config = parse_modbus({
        "devices": [analyzer.config("offgas-1", host="127.0.0.1", port=inst_port, period=0.1, timeout=0.3)],
        "server": {"port": plc_port, "channels": ["offgas-1/co", "offgas-1/h2"]},
    }, "gateway.toml")

    class LatestSink:
        def __init__(self):
            self.latest, self.seq = {}, 0

        async def submit(self, node, readings):
            self.seq += 1
            for r in readings:
                self.latest[f"{node}/{r.channel}"] = Measurement(
                    self.seq, node, self.seq, r.channel, r.time, r.value, r.unit, r.quality, r.reason)
            return self.seq

    sink, stop = LatestSink(), asyncio.Event()
    tasks = [asyncio.create_task(run_pollers(config, sink, stop)),
             asyncio.create_task(run_server(config, sink.latest.get, stop))]
    plc = AsyncModbusTcpClient("127.0.0.1", port=plc_port, timeout=2, retries=0)
    try:
        for _ in range(100):
            if await plc.connect() and sink.seq:
                break
            await asyncio.sleep(0.02)
        rr = await plc.read_input_registers(0, count=8, device_id=1)
        assert (_float(*rr.registers[0:2]), rr.registers[2]) == (22.5, 0)
        assert (_float(*rr.registers[4:6]), rr.registers[6]) == (2.5, 0)
        analyzer.set("co", 27.5)
        deadline = time.monotonic() + 3
        while _float(*(await plc.read_input_registers(0, count=2, device_id=1)).registers) != 27.5:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        analyzer.delay = 2.0  # the analyzer stops answering: the PLC sees status "bad"
        while (await plc.read_input_registers(2, count=1, device_id=1)).registers[0] != 2:
            assert time.monotonic() < deadline + 3
            await asyncio.sleep(0.05)
    finally:
        plc.close()
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        await instrument.shutdown()
