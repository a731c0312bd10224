"""Modbus pollers against pymodbus' own servers as simulated instruments
(TCP on loopback, RTU over a pseudo-terminal pair), into a real SQLite sink."""

import asyncio
import math
import sqlite3
import time

import pytest
from prometheus_client import CollectorRegistry

from smemet.gateway.spine import Measurement
from smemet.gateway.modbus import parse_modbus, run_pollers
from smemet.gateway.modbus.simulate import (
    PtyCable, SimulatedInstrument, flow_meter, free_port, offgas_analyzer, start_rtu, start_tcp,
    start_tcp_anywhere,
)


class OutboxFull(Exception):
    """Named as the outbox's own, which is all the poller may rely on."""


class SqliteSink:
    """A ReadingSink committing to a real SQLite table, one sequence number
    per submit and per virtual node, as the outbox does."""

    def __init__(self, path):
        self.db = sqlite3.connect(path)
        self.db.execute(
            "CREATE TABLE readings (node TEXT, seq INTEGER, channel TEXT, time REAL, value REAL,"
            " unit TEXT, quality TEXT, reason TEXT)")
        self.seq = {}
        self.refuse = 0  # raise OutboxFull for this many submits
        self.refused = []

    async def submit(self, node, readings):
        if self.refuse:
            self.refuse -= 1
            self.refused.append((node, list(readings)))
            raise OutboxFull("outbox is full")
        seq = self.seq.get(node, 0) + 1
        self.seq[node] = seq
        with self.db:
            self.db.executemany(
                "INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(node, seq, r.channel, r.time, r.value, r.unit, r.quality, r.reason) for r in readings])
        return seq

    def rows(self, node, channel=None):
        sql = "SELECT seq, channel, time, value, unit, quality, reason FROM readings WHERE node = ?"
        args = [node]
        if channel:
            sql += " AND channel = ?"
            args.append(channel)
        return self.db.execute(sql + " ORDER BY rowid", args).fetchall()

    def polls(self, node):
        return self.seq.get(node, 0)

    def latest(self, key):
        node, _, channel = key.partition("/")
        row = self.db.execute(
            "SELECT rowid, seq, time, value, unit, quality, reason FROM readings"
            " WHERE node = ? AND channel = ? ORDER BY rowid DESC LIMIT 1", (node, channel)).fetchone()
        if row is None:
            return None
        rowid, seq, t, value, unit, quality, reason = row
        return Measurement(rowid, node, seq, channel, t, value, unit, quality, reason)


@pytest.fixture
def sink(tmp_path):
    s = SqliteSink(tmp_path / "outbox.sqlite")
    yield s
    s.db.close()


async def until(condition, timeout=5.0, step=0.02):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step)


class Pollers:
    """run_pollers in a task, stopped and awaited on exit."""

    def __init__(self, devices, sink):
        self.config = parse_modbus({"devices": devices}, "gateway.toml")
        self.sink = sink
        self.registry = CollectorRegistry()
        self.stop = asyncio.Event()

    async def __aenter__(self):
        self.task = asyncio.create_task(run_pollers(self.config, self.sink, self.stop, self.registry))
        return self

    async def __aexit__(self, *exc):
        self.stop.set()
        await asyncio.wait_for(self.task, 5.0)

    def metric(self, name, **labels):
        return self.registry.get_sample_value(name, labels) or 0.0


def tcp(port, **over):
    return {"transport": "tcp", "host": "127.0.0.1", "port": port, "period": 0.1, "timeout": 0.3,
            "retries": 1, "backoff": 0.02, **over}


async def test_modbus_tcp_polls_offgas_analyzer_and_flow_meter(sink):
    analyzer, meter = offgas_analyzer(1), flow_meter(2)
    p1, p2 = free_port(), free_port()
    servers = [await start_tcp([analyzer], p1), await start_tcp([meter], p2)]
    try:
        async with Pollers([analyzer.config("offgas-1", **tcp(p1)), meter.config("flow-1", **tcp(p2))], sink) as run:
            await until(lambda: sink.polls("offgas-1") >= 3 and sink.polls("flow-1") >= 3)
            analyzer.set("co", 30.25)
            meter.set("total", 4_000_000_000)
            meter.set("flow", -12.5)
            await until(lambda: sink.rows("offgas-1", "co")[-1][3] == 30.25)
            await until(lambda: sink.rows("flow-1", "flow")[-1][3] == pytest.approx(-12.5))
        first = {row[1]: row for row in sink.rows("offgas-1") if row[0] == 1}
        assert {c: first[c][3] for c in first} == {"co": 22.5, "co2": 18.25, "o2": 0.75, "h2": 2.5}
        assert all(row[4] == "%" and row[5] == "good" and row[6] is None for row in first.values())
        assert sink.rows("flow-1", "total")[-1][3] == 4_000_000_000
        assert sink.rows("flow-1", "total")[0][3:5] == (123456, "m3")
        # sequence numbers are per virtual node and increase by one per poll
        seqs = sorted({row[0] for row in sink.rows("offgas-1")})
        assert seqs == list(range(1, len(seqs) + 1))
        # the four float32 channels are one request per poll (merged), as are the flow meter's
        polls = run.metric("smemet_modbus_polls_total", device="offgas-1")
        assert polls >= 3 and analyzer.requests in (polls, polls + 1)
        assert run.metric("smemet_modbus_registers_read_total", device="offgas-1") == 8 * polls
        assert meter.requests <= run.metric("smemet_modbus_polls_total", device="flow-1") + 1
        assert run.metric("smemet_modbus_poll_seconds_count", device="flow-1") >= 3
    finally:
        for server in servers:
            await server.shutdown()


async def test_modbus_rtu_over_pty_two_instruments_share_one_bus(sink):
    cable = PtyCable().start()
    analyzer, meter = offgas_analyzer(5), flow_meter(6)
    server = await start_rtu([analyzer, meter], cable.device_path, baudrate=115200)
    line = {"transport": "rtu", "serial_port": cable.client_path, "baudrate": 115200, "parity": "N",
            "period": 0.1, "timeout": 0.3, "retries": 1, "backoff": 0.02}
    try:
        async with Pollers([analyzer.config("offgas-2", **line), meter.config("flow-2", **line)], sink) as run:
            await until(lambda: sink.polls("offgas-2") >= 5 and sink.polls("flow-2") >= 5)
            analyzer.set("h2", 7.75)
            await until(lambda: sink.rows("offgas-2", "h2")[-1][3] == 7.75)
        rows = sink.rows("offgas-2") + sink.rows("flow-2")
        assert all(row[5] == "good" for row in rows), [r for r in rows if r[5] != "good"][:3]
        assert {r[1]: r[3] for r in sink.rows("flow-2")[:2]} == {"total": 123456, "flow": 42.5}
        assert run.metric("smemet_modbus_poll_failures_total", device="offgas-2", reason="timeout") == 0
        assert cable.bytes_relayed > 0
    finally:
        await server.shutdown()
        cable.close()


async def test_modbus_rtu_garbled_frames_and_cut_cable_become_quality_flags(sink):
    cable = PtyCable().start()
    analyzer = offgas_analyzer(5)
    server = await start_rtu([analyzer], cable.device_path, baudrate=115200)
    line = {"transport": "rtu", "serial_port": cable.client_path, "baudrate": 115200, "parity": "N",
            "period": 0.1, "timeout": 0.15, "retries": 1, "backoff": 0.02}
    try:
        async with Pollers([analyzer.config("offgas-2", **line)], sink) as run:
            await until(lambda: sink.polls("offgas-2") >= 2)
            cable.mode = "garble"  # every answer fails its CRC
            await until(lambda: any(r[6] == "bad-frame" for r in sink.rows("offgas-2")))
            cable.mode = "cut"  # nothing comes back at all
            await until(lambda: any(r[6] == "timeout" for r in sink.rows("offgas-2")))
            cable.mode = "ok"
            await until(lambda: sink.rows("offgas-2")[-1][5] == "good")
            assert run.metric("smemet_modbus_poll_failures_total", device="offgas-2", reason="bad-frame") >= 1
            assert run.metric("smemet_modbus_poll_failures_total", device="offgas-2", reason="timeout") >= 1
            assert run.metric("smemet_modbus_retries_total", device="offgas-2") >= 2
        bad = [r for r in sink.rows("offgas-2") if r[5] == "bad"]
        assert bad and all(r[3] is None for r in bad)
        # a failed poll still yields one reading per channel, with its unit
        assert {r[1] for r in bad} == {"co", "co2", "o2", "h2"} and {r[4] for r in bad} == {"%"}
    finally:
        await server.shutdown()
        cable.close()


async def test_modbus_rtu_late_answer_is_not_taken_for_the_next_request(sink):
    # A slow instrument answers after the poller gave up on it.  RTU has no
    # transaction id: its late frame must not pass for the answer to the
    # next request on the bus (its own retry, or the other device's).
    cable = PtyCable().start()
    slow, meter = offgas_analyzer(5), flow_meter(6)
    # It answers 60 ms after its timeout: without a quiet bus, into the window
    # of the retry that went out 20 ms after the timeout.
    slow.delay = 0.26
    server = await start_rtu([slow, meter], cable.device_path, baudrate=115200)
    line = {"transport": "rtu", "serial_port": cable.client_path, "baudrate": 115200, "parity": "N",
            "period": 0.1, "timeout": 0.2, "retries": 1, "backoff": 0.02}
    try:
        async with Pollers([slow.config("slow-5", **line), meter.config("flow-6", **line)], sink) as run:
            await until(lambda: sink.polls("flow-6") >= 12 and sink.polls("slow-5") >= 4, timeout=15)
        flows = sink.rows("flow-6")
        assert all(r[5] == "good" for r in flows), [r for r in flows if r[5] != "good"][:3]
        assert {r[1]: r[3] for r in flows[-2:]} == {"total": 123456, "flow": 42.5}
        assert all(r[5] == "bad" and r[6] == "timeout" for r in sink.rows("slow-5")), [r[6] for r in sink.rows("slow-5")]
        assert run.metric("smemet_modbus_poll_failures_total", device="flow-6", reason="bad-frame") == 0
    finally:
        await server.shutdown()
        cable.close()


async def test_modbus_timeout_of_a_dead_device_does_not_slow_the_others(sink):
    dead, alive = offgas_analyzer(1), flow_meter(2)
    dead.delay = 3.0  # far beyond its timeout: a device that never answers
    p1, p2 = free_port(), free_port()
    servers = [await start_tcp([dead], p1), await start_tcp([alive], p2)]
    try:
        async with Pollers([dead.config("dead-1", **tcp(p1, timeout=0.25, retries=2, backoff=0.05)),
                            alive.config("flow-1", **tcp(p2))], sink) as run:
            await asyncio.sleep(1.5)
            alive_polls = sink.polls("flow-1")
            dead_rows = sink.rows("dead-1")
        assert alive_polls >= 10  # period 0.1 s: undisturbed by the dead device's 0.85 s polls
        assert all(r[5] == "good" for r in sink.rows("flow-1"))
        assert dead_rows and all(r[5] == "bad" and r[6] == "timeout" and r[3] is None for r in dead_rows)
        assert run.metric("smemet_modbus_poll_failures_total", device="dead-1", reason="timeout") >= 1
        assert run.metric("smemet_modbus_retries_total", device="dead-1") >= 2
        assert run.metric("smemet_modbus_overruns_total", device="dead-1") >= 1
    finally:
        for server in servers:
            await server.shutdown()


async def test_modbus_exception_responses_flag_only_the_affected_block(sink):
    meter = SimulatedInstrument(3, [
        {"channel": "flow", "table": "holding", "address": 0, "type": "int16", "unit": "l/s"},
        {"channel": "missing", "table": "holding", "address": 100, "type": "uint16"},  # beyond the table
    ], holding=4)
    meter.set("flow", 17)
    port = free_port()
    server = await start_tcp([meter], port)
    try:
        async with Pollers([meter.config("flow-3", **tcp(port))], sink) as run:
            await until(lambda: sink.polls("flow-3") >= 2)
            latest = {r[1]: r for r in sink.rows("flow-3")[-2:]}
            assert latest["flow"][3:6] == (17, "l/s", "good")
            assert latest["missing"][3] is None and latest["missing"][5:] == ("bad", "exception-2")
            meter.exception = 4  # the instrument reports a device failure for everything
            await until(lambda: sink.rows("flow-3", "flow")[-1][6] == "exception-4")
            assert run.metric("smemet_modbus_poll_failures_total", device="flow-3", reason="exception-2") >= 2
            # exception answers are the instrument's considered reply: never retried
            assert run.metric("smemet_modbus_retries_total", device="flow-3") == 0
    finally:
        await server.shutdown()


async def test_modbus_device_that_disappears_and_comes_back(sink):
    analyzer = offgas_analyzer(1)
    port = free_port()
    server = await start_tcp([analyzer], port)
    async with Pollers([analyzer.config("offgas-1", **tcp(port, timeout=0.2))], sink) as run:
        await until(lambda: sink.polls("offgas-1") >= 2)
        await server.shutdown()  # unplugged
        await until(lambda: sink.rows("offgas-1")[-1][6] == "disconnected", timeout=5)
        gone = sink.polls("offgas-1")
        await until(lambda: sink.polls("offgas-1") >= gone + 3)  # it keeps polling, flagged bad
        assert sink.rows("offgas-1")[-1][5] == "bad"
        analyzer.set("o2", 1.5)
        server = await start_tcp([analyzer], port)  # back on the network
        try:
            await until(lambda: sink.rows("offgas-1", "o2")[-1][3:6] == (1.5, "%", "good"), timeout=5)
        finally:
            await server.shutdown()
        assert run.metric("smemet_modbus_poll_failures_total", device="offgas-1", reason="disconnected") >= 3


async def test_modbus_forty_devices_polled_at_once(sink):
    instruments = [offgas_analyzer(1) if i % 2 == 0 else flow_meter(1) for i in range(40)]
    servers, ports = [], []
    try:
        for inst in instruments:
            server, port = await start_tcp_anywhere([inst])
            servers.append(server)
            ports.append(port)
        for i, inst in enumerate(instruments):
            inst.set("co" if i % 2 == 0 else "total", 1000 + i)  # tell the devices apart
        devices = [inst.config(f"dev-{i:02d}", **tcp(port, period=0.2))
                   for i, (inst, port) in enumerate(zip(instruments, ports))]
        started = time.monotonic()
        async with Pollers(devices, sink) as run:
            await until(lambda: all(sink.polls(f"dev-{i:02d}") >= 4 for i in range(40)), timeout=15)
        elapsed = time.monotonic() - started
        for i in range(40):
            channel = "co" if i % 2 == 0 else "total"
            rows = sink.rows(f"dev-{i:02d}", channel)
            assert rows[-1][3] == 1000 + i and all(r[5] == "good" for r in rows), i
        assert sum(run.metric("smemet_modbus_poll_failures_total", device=f"dev-{i:02d}", reason="timeout")
                   for i in range(40)) == 0
        assert elapsed < 10
    finally:
        for server in servers:
            await server.shutdown()


async def test_modbus_outbox_full_keeps_readings_until_accepted(sink):
    analyzer = offgas_analyzer(1)
    port = free_port()
    server = await start_tcp([analyzer], port)
    sink.refuse = 4  # the outbox is full for the first four submissions
    analyzer.set("co", 11.0)
    try:
        async with Pollers([analyzer.config("offgas-1", **tcp(port))], sink) as run:
            await until(lambda: sink.polls("offgas-1") >= 3)
            assert run.metric("smemet_modbus_submit_retries_total", device="offgas-1", reason="outbox-full") == 4
    finally:
        await server.shutdown()
    # every refused submission was the same, first poll, offered again — never dropped
    assert len(sink.refused) == 4
    assert all(batch == sink.refused[0][1] for _, batch in sink.refused)
    first = sink.rows("offgas-1")[:4]
    assert [r[3] for r in first] == [11.0, 18.25, 0.75, 2.5]
    assert first[0][2] == sink.refused[0][1][0].time  # the reading taken before the outbox filled


async def test_modbus_missing_serial_port_flags_readings_and_keeps_running(sink):
    device = {"name": "ghost", "transport": "rtu", "serial_port": "/dev/smemet-no-such-port",
              "period": 0.05, "timeout": 0.1, "registers": [{"channel": "x", "address": 0}]}
    async with Pollers([device], sink) as run:
        await until(lambda: sink.polls("ghost") >= 3)
    rows = sink.rows("ghost")
    assert all(r[3] is None and r[5:] == ("bad", "disconnected") for r in rows)
    assert run.metric("smemet_modbus_poll_failures_total", device="ghost", reason="disconnected") >= 3


async def test_modbus_non_finite_float_is_flagged(sink):
    analyzer = offgas_analyzer(1)
    analyzer.set("co2", math.nan)  # analyzers report a sensor fault this way
    port = free_port()
    server = await start_tcp([analyzer], port)
    try:
        async with Pollers([analyzer.config("offgas-1", **tcp(port))], sink):
            await until(lambda: sink.polls("offgas-1") >= 1)
    finally:
        await server.shutdown()
    latest = {r[1]: r for r in sink.rows("offgas-1")[:4]}
    assert latest["co2"][3] is None and latest["co2"][5:] == ("bad", "not-finite")
    assert latest["co"][5] == "good"


async def test_modbus_pollers_stop_promptly(sink):
    analyzer = offgas_analyzer(1)
    analyzer.delay = 3.0
    port = free_port()
    server = await start_tcp([analyzer], port)
    try:
        pollers = Pollers([analyzer.config("offgas-1", **tcp(port, period=60.0, timeout=5.0))], sink)
        async with pollers:
            await asyncio.sleep(0.3)  # in the middle of a 5 s timeout
            started = time.monotonic()
        assert time.monotonic() - started < 1.0
    finally:
        await server.shutdown()


async def test_modbus_devices_behind_one_tcp_gateway_share_its_connection(sink):
    analyzer, meter = offgas_analyzer(1), flow_meter(2)
    port = free_port()
    server = await start_tcp([analyzer, meter], port)  # a TCP-to-RTU gateway with two units behind it
    try:
        async with Pollers([analyzer.config("offgas-1", **tcp(port)), meter.config("flow-1", **tcp(port))], sink):
            await until(lambda: sink.polls("offgas-1") >= 3 and sink.polls("flow-1") >= 3)
            assert len(server.active_connections) == 1
        assert sink.rows("offgas-1", "co")[-1][3:6] == (22.5, "%", "good")
        assert sink.rows("flow-1", "total")[-1][3:6] == (123456, "m3", "good")
    finally:
        await server.shutdown()


async def test_modbus_device_states_say_polled_or_failing_with_the_last_error(sink):
    alive, dead = flow_meter(2), offgas_analyzer(1)
    dead.delay = 3.0  # never answers within its timeout
    p1, p2 = free_port(), free_port()
    servers = [await start_tcp([alive], p1), await start_tcp([dead], p2)]
    config = parse_modbus({"devices": [alive.config("flow-1", **tcp(p1)),
                                       dead.config("dead-1", **tcp(p2, timeout=0.2, retries=0))]}, "gateway.toml")
    states, stop = {}, asyncio.Event()
    task = asyncio.create_task(run_pollers(config, sink, stop, CollectorRegistry(), states))
    try:
        await until(lambda: set(states) == {"flow-1", "dead-1"})
        assert states["dead-1"].state in ("waiting", "failing")
        await until(lambda: states["flow-1"].polls >= 2 and states["dead-1"].polls >= 1, timeout=5)
        ok, failing = states["flow-1"], states["dead-1"]
        assert (ok.state, ok.last_error, ok.consecutive_failures) == ("ok", "", 0) and ok.last_ok is not None
        assert (failing.state, failing.last_error) == ("failing", "timeout") and failing.last_ok is None
        assert failing.failing_blocks >= 1  # every block of the poll: a silent device is not tried further
        assert failing.last_error_at is not None and failing.consecutive_failures >= 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 5.0)
        for server in servers:
            await server.shutdown()
