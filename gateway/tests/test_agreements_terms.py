"""An agreement's terms as the delivery loop applies them (the loop, a real
outbox, a sink that records what it is handed): validity, embargo,
pseudonyms, fields, aggregation -- and that the loop's cursor never passes
what the terms still hold, so a restart neither loses nor splits anything."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from hil_tests.harness.measurements import OutboxMeasurements, frames
from smemet.gateway.agreements import Terms, parse_agreement
from smemet.gateway.delivery import Selection, Sink, make_loops, run_loops
from smemet.gateway.ledger import LedgerStore
from smemet.gateway.spine import Measurement

BASE = {"id": "A-1", "version": 1, "purpose": "test", "include": ["*"],
        "parties": [{"name": "plant", "role": "provider"}, {"name": "institute", "role": "recipient"}]}


def agreement(**terms):
    return parse_agreement(dict(BASE, **terms), "test.toml: routes[0].agreement")


class Recorder(Sink):
    """Records every measurement it is handed, and when; confirms at once."""

    kind = "test"

    def __init__(self, name, agreement, store=None) -> None:
        super().__init__()
        self.name = name
        self.selection = Selection(agreement.include, agreement.exclude, agreement.kinds)
        self.terms = Terms(agreement, name, store) if store is not None else Terms(agreement, name)
        self.got: list[tuple[float, object]] = []  # (when handed, Measurement)

    async def open(self) -> None:
        pass

    async def deliver(self, frames, confirm) -> None:
        now = time.time()
        self.got += [(now, m) for frame in frames for m in frame.measurements()]
        confirm()

    @property
    def measurements(self):
        return [m for _, m in self.got]


@pytest.fixture
def source(tmp_path):
    src = OutboxMeasurements(tmp_path / "outbox.db")
    yield src
    src.close()


async def run_until(sinks, source, condition, timeout=20.0):
    stop = asyncio.Event()
    task = asyncio.create_task(run_loops(make_loops(sinks, source), stop))
    try:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "condition not met in time"
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def at(node, seq, channel, t, value, unit="Cel", quality="good", reason=None):
    return Measurement(0, node, seq, channel, t, value, unit, quality, reason)


async def test_validity_shares_only_the_campaign(source):
    now = math.floor(time.time())
    taken = [now - 20 + s for s in range(20)] + [now + 7200]  # the last from a clock far ahead
    source.add([at("n1", s, "tc1", t, float(s)) for s, t in enumerate(taken)])
    sink = Recorder("r", agreement(validity={"from": time_text(now - 10), "until": time_text(now + 3600)}))
    await run_until([sink], source, lambda: source.load_cursor("r") == source.last_id())
    assert [m.time for m in sink.measurements] == [now - 10 + s for s in range(10)], "only [from, until)"
    assert sink.terms.stats.outside_validity == 11


async def test_an_expired_agreement_delivers_nothing_and_says_why(source):
    source.add(frames(["n1"], ["tc1"], 10, start_time=time.time() - 30))
    sink = Recorder("r", agreement(validity={"until": "2024-01-01T00:00:00Z"}))
    await run_until([sink], source, lambda: source.load_cursor("r") == source.last_id())
    assert sink.measurements == []
    in_force, why = sink.terms.state(time.time())
    assert not in_force and why == "expired: valid until 2024-01-01T00:00:00Z"


async def test_before_it_is_in_force_nothing_goes_out(source):
    soon = time.time() + 3600
    source.add(frames(["n1"], ["tc1"], 5, start_time=time.time() - 10))  # taken before the campaign
    sink = Recorder("r", agreement(validity={"from": time_text(soon)}))
    await run_until([sink], source, lambda: source.load_cursor("r") == source.last_id())
    assert sink.measurements == []
    assert sink.terms.state(time.time()) == (False, f"not in force before {time_text(soon)}")


def time_text(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(math.floor(at)))


async def test_embargo_nothing_newer_than_the_delay(source):
    now = time.time()
    # readings from 4 s ago up to now, then more arriving while the route runs
    source.add([at("n1", s, "tc1", now - 4 + s * 0.5, float(s)) for s in range(9)])
    sink = Recorder("r", agreement(delay="2s"))

    async def later():
        await asyncio.sleep(0.5)
        t = time.time()
        source.add([at("n1", 100 + s, "tc1", t + s * 0.1, 100.0 + s) for s in range(3)])

    feeder = asyncio.create_task(later())
    await run_until([sink], source, lambda: len(sink.got) == 12, timeout=15)
    await feeder
    for handed, m in sink.got:
        assert handed >= m.time + 2.0, f"seq {m.seq} (taken {m.time:.2f}) handed over at {handed:.2f}: too early"
    assert [m.seq for m in sink.measurements] == [*range(9), 100, 101, 102], "in order, nothing lost"


async def test_a_clock_ahead_does_not_stall_the_route(source):
    """A reading stamped in the future is due by its arrival, not its time."""
    now = time.time()
    frame = [at("n1", 1, "tc1", now + 86400, 1.0)]
    source.add(frame)
    # OutboxMeasurements stores received=0; give the frame its arrival as the processing stage does
    sink = Recorder("r", agreement(delay="1s"))
    assert sink.terms._due(_received(source, now)) <= now + 1.0 + 1e-6


def _received(source, when):
    from dataclasses import replace

    frame = source.read_frames(0, 1)[0]
    return replace(frame, received=when)


async def test_pseudonyms_rename_and_withhold_the_rest(source):
    source.add(frames(["furnace-1", "furnace-2", "ladle-9"], ["tc1"], 4))
    sink = Recorder("r", agreement(pseudonyms={"furnace-1": "site-A", "furnace-2": "site-B"}))
    await run_until([sink], source, lambda: source.load_cursor("r") == source.last_id())
    assert {m.node for m in sink.measurements} == {"site-A", "site-B"}
    assert len(sink.measurements) == 8 and sink.terms.stats.no_alias == 4


async def test_fields_not_agreed_are_null_and_diagnostics_stay_home(source):
    source.add([at("n1", 1, "tc1", 1.7e9, None, "Cel", "bad", "open circuit"), at("n1", 1, "tc2", 1.7e9, 2.0)])
    source.add([Measurement(0, "n1", 2, "store_depth", 1.7e9, 3.0, None, kind="status")])
    plain = Recorder("plain", agreement(fields=[]))
    full = Recorder("full", agreement(fields=["unit", "reason", "status"]))
    await run_until([plain, full], source, lambda: min(source.load_cursor("plain"), source.load_cursor("full"))
                    == source.last_id())
    assert [(m.unit, m.reason, m.quality) for m in plain.measurements] == [(None, None, "bad"), (None, None, "good")]
    assert [(m.channel, m.unit, m.reason) for m in full.measurements] == [
        ("tc1", "Cel", "open circuit"), ("tc2", "Cel", None), ("store_depth", None, None)]


def expected_periods(measurements, period):
    """mean/min/max/count per (node, channel, period start), from the inputs."""
    out = {}
    for m in measurements:
        start = math.floor(m.time / period) * period
        out.setdefault((m.node, m.channel, start), []).append(m.value)
    return {k: (sum(v) / len(v), min(v), max(v), len(v)) for k, v in out.items()}


def assert_periods(got, expected):
    assert got.keys() == expected.keys()
    for key, values in expected.items():
        assert got[key] == pytest.approx(values), key


def delivered_periods(measurements):
    got = {}
    for m in measurements:
        channel, _, aggregate = m.channel.rpartition(".")
        got.setdefault((m.node, channel, m.time), {})[aggregate] = m.value
    return {k: (v["mean"], v["min"], v["max"], v["count"]) for k, v in got.items()}


async def test_aggregates_per_period_no_finer_resolution(source):
    inputs = [at(node, s, ch, 1_700_000_000.0 + s * 0.7, float((s * 7 + i) % 13))
              for s in range(1, 60) for node in ("n1", "n2") for i, ch in enumerate(("tc1", "tc2"))]
    source.add(inputs)
    sink = Recorder("r", agreement(resolution={"period": "10s", "grace": "0s"}))
    expected = expected_periods(inputs, 10.0)
    await run_until([sink], source, lambda: len(delivered_periods(sink.measurements)) == len(expected))
    assert_periods(delivered_periods(sink.measurements), expected)
    assert all(m.time % 10.0 == 0 for m in sink.measurements), "timed at the period's start"
    assert {m.channel.rpartition(".")[2] for m in sink.measurements} == {"mean", "min", "max", "count"}
    assert len(sink.measurements) == 4 * len(expected), "each period once"


async def test_aggregate_quality_leaves_out_bad_readings(source):
    t = 1_700_000_000.0
    source.add([at("n1", 1, "tc1", t + 1, 10.0), at("n1", 2, "tc1", t + 2, None, quality="bad", reason="open"),
                at("n1", 3, "tc1", t + 3, 20.0, quality="uncertain", reason="age-lower-bound"),
                at("n1", 4, "tc2", t + 1, None, quality="bad", reason="open")])
    sink = Recorder("r", agreement(resolution={"period": "60s", "aggregates": ["mean", "count"], "grace": "0s"}))
    await run_until([sink], source, lambda: len(sink.measurements) == 4)
    by = {m.channel: m for m in sink.measurements}
    assert (by["tc1.mean"].value, by["tc1.count"].value, by["tc1.mean"].quality) == (15.0, 2, "uncertain")
    assert by["tc1.mean"].reason == "1 of 3 readings bad, left out"
    assert (by["tc2.mean"].value, by["tc2.count"].value, by["tc2.mean"].quality) == (None, 0, "bad")


async def test_open_periods_hold_the_cursor_and_a_restart_splits_none(source, tmp_path):
    """Stop mid-stream with periods open, start again: every period exactly
    once, with the values of one uninterrupted run."""
    store = LedgerStore(str(tmp_path / "ledger.sqlite"))
    t0 = math.floor(time.time() / 30) * 30 - 300
    inputs = [at(node, s, "tc1", t0 + s, float(s % 17)) for s in range(1, 201) for node in ("n1", "n2")]
    first, second = inputs[:250], inputs[250:]
    terms = agreement(resolution={"period": "30s", "grace": "1d"})  # only a later reading closes a period here
    source.add(first)
    one = Recorder("r", terms, store)
    closed_first = {(m.node, m.channel, start) for m in first
                    for start in [math.floor(m.time / 30) * 30] if start < math.floor(first[-1].time / 30) * 30}
    await run_until([one], source, lambda: len(delivered_periods(one.measurements)) == len(closed_first))
    open_start = math.floor(first[-1].time / 30) * 30
    first_open_id = next(i + 1 for i, m in enumerate(first) if m.time >= open_start)  # ids follow the order added
    assert source.load_cursor("r") == first_open_id - 1, "the cursor stops below the open period's first reading"
    source.add(second)
    two = Recorder("r", terms, store)  # a restart: a new process, the same database
    last_start = math.floor(second[-1].time / 30) * 30
    expected = {k: v for k, v in expected_periods(inputs, 30.0).items() if k[2] < last_start}  # the last stays open
    both = lambda: one.measurements + two.measurements  # noqa: E731
    await run_until([two], source, lambda: len(delivered_periods(both())) == len(expected), timeout=30)
    keys = [(m.node, m.channel, m.time) for m in both()]
    assert len(keys) == len(set(keys)), "a period delivered twice"
    assert_periods(delivered_periods(both()), expected)
    store.close()


async def test_a_quiet_channel_closes_by_the_clock(source):
    now = time.time()
    source.add([at("n1", s, "tc1", now - 3 + s * 0.1, 1.0) for s in range(5)])  # then nothing more
    sink = Recorder("r", agreement(resolution={"period": "1s", "grace": "0.5s"}))
    await run_until([sink], source, lambda: sum(m.value for m in sink.measurements if m.channel == "tc1.count") == 5,
                    timeout=10)
    assert source.load_cursor("r") == source.last_id(), "once closed, nothing holds the cursor"
