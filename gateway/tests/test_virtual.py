"""``ReadingSink.submit``: virtual nodes (Modbus devices) get sequence
numbers, durability and processing like node frames."""

import asyncio
import time

import pytest

from smemet.gateway.config import load_config
from smemet.gateway.errors import OutboxFull
from smemet.gateway.modbus.poller import ReadingSink
from smemet.gateway.spine import Reading
from smemet.gateway.service import Gateway
from hil_tests.harness.nodes import write_config


async def start(tmp_path, extra="", outbox=""):
    gateway = Gateway(load_config(write_config(str(tmp_path), ["node-1"], extra=extra, outbox=outbox)))
    await gateway.start()
    return gateway


async def wait_for_measurements(gateway, count, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = gateway.outbox.read(0, 10_000)
        if len(got) >= count:
            return got
        await asyncio.sleep(0.02)
    raise AssertionError(f"only {len(gateway.outbox.read(0, 10_000))} of {count} measurements")


async def test_submit_commits_and_numbers_frames(tmp_path):
    gateway = await start(tmp_path, extra='[channels."plc-1/flow"]\nsteps = [{type = "calibration", gain = 10.0}]\n')
    sink: ReadingSink = gateway.commit
    now = time.time()
    try:
        assert await sink.submit("plc-1", [Reading("flow", now, 1.25, "m3/h"), Reading("level", now, 3.0, "m")]) == 1
        assert await sink.submit("plc-1", [
            Reading("flow", now + 1, None, "m3/h", "bad", "timeout"),
            Reading("level", now + 1, 2.5, "m", "uncertain", "exception-2"),
        ]) == 2
        got = await wait_for_measurements(gateway, 4)
        rows = sorted((m.seq, m.channel, m.value, m.unit, m.quality, m.reason) for m in got)
        assert rows == [
            (1, "flow", 12.5, "m3/h", "good", None),
            (1, "level", 3.0, "m", "good", None),
            (2, "flow", None, None, "bad", "timeout"),
            (2, "level", 2.5, "m", "uncertain", "exception-2"),
        ]
        assert all(m.node == "plc-1" for m in got)
    finally:
        await gateway.stop()
    # sequence numbers continue after a restart
    gateway = await start(tmp_path)
    try:
        assert await gateway.commit.submit("plc-1", [Reading("flow", now + 2, 1.0, None)]) == 3
    finally:
        await gateway.stop()


async def test_many_readings_are_split_into_frames(tmp_path):
    gateway = await start(tmp_path)
    now = time.time()
    try:
        readings = [Reading(f"register_{i:03d}", now, float(i), "A") for i in range(300)]
        last = await gateway.commit.submit("plc-2", readings)
        assert last > 1
        got = await wait_for_measurements(gateway, 300)
        assert sorted(m.value for m in got) == [float(i) for i in range(300)]
        assert {m.seq for m in got} == set(range(1, last + 1))
    finally:
        await gateway.stop()


async def test_submit_refuses_when_full_and_for_keyed_names(tmp_path):
    gateway = await start(tmp_path, outbox="max_bytes = 65536")
    now = time.time()
    try:
        with pytest.raises(ValueError, match="name of a keyed node"):
            await gateway.commit.submit("node-1", [Reading("x", now, 1.0, None)])
        with pytest.raises(ValueError, match="not a SenML name"):
            await gateway.commit.submit("plc-1", [Reading("bad name", now, 1.0, None)])
        with pytest.raises(OutboxFull):
            for i in range(2000):
                await gateway.commit.submit("plc-1", [Reading(f"r{j}", now + i, float(j), "A") for j in range(30)])
        assert gateway.metrics.registry.get_sample_value("smemet_gateway_storage_full") == 1
    finally:
        await gateway.stop()
