"""Calibration records and thermocouple lives through processing, with a
real outbox database: the record in force at each reading's time applies
(also when it was added mid-stream), each measurement names its record,
life counts are stored with the processed frames and never counted twice
(warm-up, a retried batch, a restart); the compiled and pure batch runners
agree, calibration column included."""

from __future__ import annotations

import math
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smemet.gateway.calibration.book import CalibrationBook
from smemet.gateway.calibration.config import CalibrationConfig
from smemet.gateway.calibration.records import CalibrationRecord, Correction, SatResult, Sensor
from smemet.gateway.calibration.store import CalibrationStore
from smemet.gateway.outbox import Outbox
from smemet.gateway.processing import Processor
from smemet.gateway.spine import QUALITY_CODES, OpenedFrame

T0 = 1_750_000_000.0
FURNACE = Sensor("furnace", "tc_s")
CHAINS = {
    "furnace/tc_s": [{"type": "calibration"}, {"type": "thermocouple_life", "kind": "S", "limit_hours": 1.0},
                     {"type": "range", "max": 1800}],
    "furnace/tc_b": [{"type": "calibration", "require": True}],
    "furnace/avg": [{"type": "calibration"}, {"type": "aggregate", "period": 60.0}],
}


def opened(node, seq, records, received=None):
    """records: (name, value, time[, quality, reason])"""
    frame = OpenedFrame(b"", node.encode(), node, seq, 112, received or T0, 0.0, [], [], [], [], bytearray(), [])
    for record in records:
        name, value, time, quality, reason = (*record, "good", None)[:5] if len(record) == 3 else record
        frame.names.append(name)
        frame.units.append("Cel")
        frame.values.append(value)
        frame.times.append(time)
        frame.quality.append(QUALITY_CODES[quality])
        frame.reasons.append(reason)
    return frame


def record(id_, sensor=FURNACE, valid_from=T0, offset=1.0, due="2099-12-31", points=(), **more):
    correction = Correction("points", points=points) if points else Correction("offset", offset=offset)
    return CalibrationRecord(id_, sensor, 1, f"CERT-{id_}", "Lab", "2025-01-01", due,
                             more.pop("overdue_from", 4102444800.0), valid_from, correction, 0.5, "Cel",
                             recorded_at=T0 - 10, recorded_by="test", **more)


class Gateway:
    """An outbox, its calibration book and a processor, processing as the
    processing stage does (one transaction per batch with the life counts)."""

    def __init__(self, path, impl, chains=CHAINS):
        self.outbox = Outbox(str(path), 1 << 30)
        self.book = CalibrationBook(str(path), CalibrationConfig())
        self.book.start()
        self.processor = Processor(lambda n, c: chains.get(f"{n}/{c}"), kernels=impl, calibration=self.book)
        self.next_frame = self.outbox.processing_cursor() + 1

    def process(self, frames, fail=False):
        first = self.next_frame
        processed = self.processor.process(frames, first, self.outbox.last_measurement_id + 1)

        def also(db, last_frame_id):
            self.processor.write_state(db, last_frame_id)
            if fail:
                # a transient failure, not storage (a "disk I/O error" would be one: OutboxFull)
                raise sqlite3.OperationalError("database is locked")

        self.outbox.write_processed(processed, first + len(frames) - 1, also=also)
        self.processor.state_written()
        self.next_frame += len(frames)
        return [m for frame in processed for m in frame.measurements()]

    def close(self):
        self.book.close()
        self.outbox.close()


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "outbox.sqlite"
    Outbox(str(path), 1 << 30).close()  # the gateway makes the database
    return path


def store(path):
    return CalibrationStore.open(str(path))


def by_channel(measurements, channel):
    return [(m.time, m.value, m.quality, m.reason, m.calibration) for m in measurements if m.channel == channel]


def test_a_record_added_mid_stream_applies_to_readings_from_its_valid_from(db, impl):
    gw = Gateway(db, impl)
    s = store(db)
    s.add(record("A", valid_from=T0, offset=1.0))
    first = gw.process([opened("furnace", 1, [("tc_s", 800.0, T0 - 1), ("tc_s", 800.0, T0)])])
    s.add(record("B", valid_from=T0 + 10, offset=-2.0))  # while the gateway runs
    # a node's buffered readings arrive late: each gets the record in force when it was taken
    second = gw.process([opened("furnace", 2, [("tc_s", 800.0, T0 + 5), ("tc_s", 800.0, T0 + 10),
                                               ("tc_s", 800.0, T0 + 11)])])
    assert by_channel(first, "tc_s") == [(T0 - 1, 800.0, "good", None, None), (T0, 801.0, "good", None, "A")]
    assert by_channel(second, "tc_s") == [(T0 + 5, 801.0, "good", None, "A"), (T0 + 10, 798.0, "good", None, "B"),
                                          (T0 + 11, 798.0, "good", None, "B")]
    s.retire("B", T0 + 20, "sensor removed", "test")
    third = gw.process([opened("furnace", 3, [("tc_s", 800.0, T0 + 19), ("tc_s", 800.0, T0 + 20)])])
    assert by_channel(third, "tc_s") == [(T0 + 19, 798.0, "good", None, "B"), (T0 + 20, 800.0, "good", None, None)]
    gw.close()


def test_the_stored_measurements_keep_their_record_ids(db, impl):
    gw = Gateway(db, impl)
    store(db).add(record("A", offset=0.5))
    gw.process([opened("furnace", 1, [("tc_s", 700.0, T0 + 1), ("other", 1.0, T0 + 1),
                                      ("tc_s", None, T0 + 2, "bad", "open-circuit")])])
    gw.close()
    outbox = Outbox(str(db), 1 << 30)  # a new process: read back from SQLite, not memory
    try:
        got = [(m.channel, m.value, m.reason, m.calibration) for m in outbox.read(0, 100)]
    finally:
        outbox.close()
    # the faulty reading was not corrected, so it names no record
    assert got == [("tc_s", 700.5, None, "A"), ("other", 1.0, None, None), ("tc_s", None, "open-circuit", None)]


def test_a_required_record_that_is_missing_makes_readings_bad(db, impl):
    gw = Gateway(db, impl)
    got = gw.process([opened("furnace", 1, [("tc_b", 900.0, T0)])])
    assert by_channel(got, "tc_b") == [(T0, 900.0, "bad", "no-calibration", None)]
    gw.close()


def test_due_dates_and_failed_tests_mark_readings_from_their_moment(db, impl):
    gw = Gateway(db, impl)
    s = store(db)
    s.add(record("A", overdue_from=T0 + 100, sat_tolerance=2.0))
    s.add_sat(SatResult(FURNACE, "A", T0 + 50, 800.0, 803.0, 2.0, recorded_at=T0, recorded_by="test"))
    got = gw.process([opened("furnace", 1, [("tc_s", 800.0, T0 + 49), ("tc_s", 800.0, T0 + 50),
                                            ("tc_s", 800.0, T0 + 100)])])
    assert [(q, r) for _t, _v, q, r, _c in by_channel(got, "tc_s")] == [
        ("good", None), ("uncertain", "sat-failed"), ("uncertain", "calibration-due")]  # both: the due date named
    s.add(record("A2", valid_from=T0 + 200, overdue_from=T0 + 300))  # a new calibration ends the failed test's mark
    got = gw.process([opened("furnace", 2, [("tc_s", 800.0, T0 + 199), ("tc_s", 800.0, T0 + 200),
                                            ("tc_s", 800.0, T0 + 300)])])
    assert [(q, r, c) for _t, _v, q, r, c in by_channel(got, "tc_s")] == [
        ("uncertain", "calibration-due", "A"), ("good", None, "A2"), ("uncertain", "calibration-due", "A2")]
    gw.close()


def test_an_aggregate_names_the_record_in_force_at_its_window_start(db, impl):
    gw = Gateway(db, impl)
    s = store(db)
    start = math.floor(T0 / 60) * 60 + 60.0  # a window boundary after T0
    avg = Sensor("furnace", "avg")
    s.add(record("A", sensor=avg, valid_from=T0 - 600, offset=1.0))
    s.add(record("B", sensor=avg, valid_from=start, offset=3.0))  # from the second window on
    s.add(record("C", sensor=avg, valid_from=start + 90, offset=5.0))  # inside the third window
    readings = [("avg", 10.0, start - 60 + k * 10.0) for k in range(19)]  # three windows and the next's first
    got = by_channel(gw.process([opened("furnace", 1, readings)]), "avg")
    # each sample got the record in force when it was taken; a window's point names the one at its start
    assert [(t - start, v, c) for t, v, _q, _r, c in got] == [
        (-60.0, 11.0, "A"), (0.0, 13.0, "B"), (60.0, (3 * 13.0 + 3 * 15.0) / 6, "B")]
    gw.close()


def _usage(path):
    lives = store(path).lives(FURNACE)
    return [(life.number, life.state.seconds_above if life.state else None, life.state.cycles if life.state else None)
            for life in lives]


def hot_frames(seq0, t0, n=10, value=1200.0, step=60.0):
    return [opened("furnace", seq0 + k, [("tc_s", value, t0 + k * step)]) for k in range(n)]


def test_life_counts_are_stored_with_the_frames_and_continue_after_a_restart(db, impl):
    frames = hot_frames(1, T0, 20)
    whole_path = db.parent / "whole.sqlite"
    Outbox(str(whole_path), 1 << 30).close()
    whole = Gateway(whole_path, impl)
    whole.process(frames)
    expected = whole.book.usage()[FURNACE].state
    whole.close()

    gw = Gateway(db, impl)
    gw.process(frames[:7])
    gw.close()  # a restart: a new book and new kernels read the stored count
    gw = Gateway(db, impl)
    gw.processor.warm_up(frames[:7], 4)  # warm-up runs counted frames again: nothing more is counted
    gw.process(frames[7:])
    gw.close()
    stored = store(db).lives(FURNACE)[-1].state
    assert stored == expected and stored.seconds_above == 19 * 60.0 and stored.cycles == 1


def test_a_batch_whose_transaction_failed_is_counted_when_it_is_retried(db, impl):
    gw = Gateway(db, impl)
    frames = hot_frames(1, T0, 6)
    gw.process(frames[:3])
    with pytest.raises(sqlite3.OperationalError):
        gw.process(frames[3:], fail=True)
    assert store(db).lives(FURNACE)[-1].state.seconds_above == 120.0  # nothing of the failed batch stored
    gw.next_frame -= 3
    gw.process(frames[3:])  # the processing stage retries the same frames
    assert store(db).lives(FURNACE)[-1].state.seconds_above == 300.0  # counted once
    gw.close()


def test_usage_limit_flips_quality_and_replace_starts_a_new_life(db, impl):
    gw = Gateway(db, impl)
    s = store(db)
    s.add(record("A", valid_from=T0 - 10))
    got = gw.process(hot_frames(1, T0, 63))  # limit_hours = 1: past it after 61 minutes at 1200 °C
    marked = [(t - T0) / 60 for t, _v, q, r, _c in by_channel(got, "tc_s") if r == "usage-limit"]
    assert marked[0] == 61 and len(marked) == 2
    s.replace(record("NEW", valid_from=T0 + 63 * 60 + 30, offset=0.0), "thermocouple changed")
    got = gw.process(hot_frames(100, T0 + 64 * 60, 3))
    assert [(r, c) for _t, _v, _q, r, c in by_channel(got, "tc_s")] == [(None, "NEW")] * 3
    assert _usage(db) == [(1, 62 * 60.0, 1), (2, 120.0, 1)]
    gw.close()


# ---------------------------------------------------------------- the two batch runners agree

_STEPS = {
    "c0": [{"type": "calibration", "overdue": "bad"}, {"type": "thermocouple_life", "kind": "K", "limit_hours": 0.01},
           {"type": "deadband", "absolute": 0.5}],
    "c1": [{"type": "calibration", "require": True}, {"type": "aggregate", "period": 5.0}],
    "c2": [{"type": "range", "max": 50.0}],
}


def _entries():
    from smemet.gateway.calibration.schedule import ScheduleEntry

    return {
        "c0": [ScheduleEntry("A", 0.0, 8.0, 6.0, math.inf, 1.0, 0.5, ()),
               ScheduleEntry("B", 8.0, math.inf, math.inf, 12.0, 1.0, 0.0, ((0.0, 1.0), (20.0, -1.0)))],
        "c1": [ScheduleEntry("C", 3.0, math.inf, math.inf, math.inf, 1.01, -0.2, ())],
    }


@st.composite
def batches(draw):
    frames = []
    for seq in range(1, draw(st.integers(1, 8)) + 1):
        records = []
        for _ in range(draw(st.integers(0, 8))):
            value = draw(st.one_of(st.floats(-5.0, 30.0), st.none(), st.just(float("nan")), st.integers(0, 9)))
            quality = draw(st.sampled_from(["good", "good", "uncertain", "bad"]))
            records.append((draw(st.sampled_from(["c0", "c1", "c2", "x"])), value,
                            draw(st.one_of(st.floats(0.0, 20.0), st.sampled_from([5.0, 8.0, 10.0]))), quality,
                            None if quality == "good" else "node-said"))
        frames.append(opened(draw(st.sampled_from(["a", "b"])), seq, records))
    return frames


def _flat(processed):
    def same(x):
        return "nan" if isinstance(x, float) and math.isnan(x) else (type(x).__name__, x)
    return [(f.first_id, f.frame_id, f.node, f.seq, f.quality, f.reasons, f.channels, f.calibrations,
             [same(t) for t in f.times], [same(v) for v in f.values]) for f in processed]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(batches(), min_size=1, max_size=3))
def test_compiled_batches_with_calibration_equal_the_reference(both_impls, stream):
    runners = []
    for kernels in both_impls:
        runner = Processor(lambda n, c: _STEPS.get(c), kernels=kernels)
        for node in ("a", "b"):
            for channel, entries in _entries().items():
                runner.chain(node, channel).calibration.set_schedule(entries)
        runners.append(runner)
    next_id = 1
    for batch in stream:
        got = [runner.process(batch, 1, next_id) for runner in runners]
        assert _flat(got[0]) == _flat(got[1])
        lives = [runner.chain("a", "c0").life.state() for runner in runners]
        assert repr(lives[0]) == repr(lives[1])
