"""The calibration and thermocouple-life kernels, on both twins (``impl``):
the record in force at each reading's time corrects it, due dates and
failed tests flip quality at their moment, time at temperature counts
once; and Hypothesis checks the compiled twin gives the pure one's bits."""

from __future__ import annotations

import math
import struct
from array import array
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smemet.gateway import quality as codes

INF = math.inf
GOOD, UNCERTAIN, BAD = codes.GOOD, codes.UNCERTAIN, codes.BAD


@dataclass(frozen=True)
class Entry:
    record_id: str
    start: float
    end: float = INF
    overdue_from: float = INF
    sat_failed_from: float = INF
    gain: float = 1.0
    offset: float = 0.0
    points: tuple = ()


def run(kernel, times, values, quality=None):
    t = array("d", times)
    v = array("d", values)
    q = bytearray(quality if quality is not None else bytes(len(v)))
    r = bytearray(len(v))
    kept = kernel.process(t, v, q, r)
    return list(v[:kept]), list(q[:kept]), [codes.REASON_NAMES[x] for x in r[:kept]]


def calibration(impl, *entries, overdue=UNCERTAIN, sat=UNCERTAIN, missing=GOOD):
    kernel = impl.Calibration(overdue, sat, missing)
    kernel.set_schedule(entries)
    return kernel


# ---------------------------------------------------------------- calibration

def test_the_record_in_force_at_each_readings_time_corrects_it(impl):
    kernel = calibration(impl, Entry("A", 100.0, 200.0, offset=1.5), Entry("B", 200.0, offset=-0.5))
    values, quality, reasons = run(kernel, [50.0, 100.0, 199.5, 200.0, 900.0], [10.0] * 5)
    assert values == [10.0, 11.5, 11.5, 9.5, 9.5]  # before A: untouched; A from its start; B from its start
    assert quality == [GOOD] * 5 and reasons == [""] * 5
    assert list(kernel.applied) == [-1, 0, 0, 1, 1]
    assert kernel.ids == ("A", "B")
    assert [kernel.entry_at(t) for t in (99.9, 100.0, 200.0, 1e12)] == [-1, 0, 1, 1]


def test_a_retired_record_ends_and_nothing_applies_after_it(impl):
    kernel = calibration(impl, Entry("A", 0.0, 10.0, offset=2.0))
    values, _q, _r = run(kernel, [9.0, 10.0], [1.0, 1.0])
    assert values == [3.0, 1.0] and list(kernel.applied) == [0, -1]


def test_points_are_interpolated_in_the_reading_and_held_outside_them(impl):
    points = ((600.0, 1.0), (800.0, 3.0), (1000.0, -1.0))
    kernel = calibration(impl, Entry("P", 0.0, points=points))
    values, quality, reasons = run(kernel, [1.0] * 6, [600.0, 700.0, 800.0, 900.0, 500.0, 1100.0])
    assert values == [601.0, 702.0, 803.0, 901.0, 501.0, 1099.0]
    assert reasons == ["", "", "", "", "outside-calibration", "outside-calibration"]
    assert quality == [GOOD] * 4 + [UNCERTAIN] * 2


def test_a_linear_correction_is_gain_and_offset(impl):
    kernel = calibration(impl, Entry("L", 0.0, gain=1.25, offset=-0.5))
    assert run(kernel, [1.0], [4.0])[0] == [4.5]


def test_due_date_and_failed_test_flip_quality_at_their_moment(impl):
    kernel = calibration(impl, Entry("A", 0.0, overdue_from=100.0, sat_failed_from=200.0, offset=1.0))
    values, quality, reasons = run(kernel, [99.999, 100.0, 199.0, 200.0], [0.0] * 4)
    assert values == [1.0] * 4  # the correction still applies: the value is right, its traceability is not
    assert quality == [GOOD, UNCERTAIN, UNCERTAIN, UNCERTAIN]
    assert reasons == ["", "calibration-due", "calibration-due", "calibration-due"]  # the first cause stays
    kernel = calibration(impl, Entry("A", 0.0, overdue_from=100.0, sat_failed_from=50.0), overdue=BAD, sat=UNCERTAIN)
    assert run(kernel, [49.0, 50.0, 100.0], [0.0] * 3)[1:] == (
        [GOOD, UNCERTAIN, BAD], ["", "sat-failed", "calibration-due"])


def test_a_required_record_missing_makes_the_reading_bad(impl):
    kernel = calibration(impl, Entry("A", 100.0), missing=BAD)
    values, quality, reasons = run(kernel, [50.0, 150.0], [7.0, 7.0])
    assert values == [7.0, 7.0] and quality == [BAD, GOOD] and reasons == ["no-calibration", ""]
    assert list(kernel.applied) == [-1, 0]
    assert run(calibration(impl), [1.0], [7.0])[1] == [GOOD]  # not required: no record, no verdict


def test_a_reading_that_arrives_bad_is_not_corrected(impl):
    kernel = calibration(impl, Entry("A", 0.0, offset=5.0))
    values, quality, _r = run(kernel, [1.0, 2.0], [1.0, 1.0], bytes([BAD, GOOD]))
    assert values == [1.0, 6.0] and list(kernel.applied) == [-1, 0]


def test_schedules_must_be_ordered_and_points_ascending(impl):
    kernel = impl.Calibration(UNCERTAIN, UNCERTAIN, GOOD)
    with pytest.raises(ValueError, match="overlap"):
        kernel.set_schedule([Entry("A", 10.0, 20.0), Entry("B", 15.0)])
    with pytest.raises(ValueError, match="ascending"):
        kernel.set_schedule([Entry("A", 0.0, points=((2.0, 0.0), (1.0, 0.0)))])


# ---------------------------------------------------------------- thermocouple life

def life(impl, band=100.0, cycle_above=600.0, hysteresis=50.0, limit_above=600.0, limit_seconds=0.0,
         limit_cycles=0, over=UNCERTAIN, max_gap=300.0):
    return impl.ThermocoupleLife(band, cycle_above, hysteresis, limit_above, limit_seconds, limit_cycles, over, max_gap)


def band_seconds(kernel):
    return {edge: seconds for edge, seconds in kernel.state()["bands"].items()}


def test_time_is_credited_to_the_band_of_the_earlier_reading(impl):
    kernel = life(impl)
    run(kernel, [0.0, 60.0, 120.0, 180.0], [550.0, 650.0, 720.0, 640.0])
    assert band_seconds(kernel) == {500.0: 60.0, 600.0: 60.0, 700.0: 60.0}
    state = kernel.state()
    assert state["seconds_above"] == 120.0  # 650 and 720 were at or above 600 for 60 s each
    assert state["peak"] == 720.0 and state["peak_time"] == 120.0
    assert state["cycles"] == 1 and state["hot"] is True


def test_heat_cycles_need_the_hysteresis_to_end(impl):
    kernel = life(impl, cycle_above=600.0, hysteresis=50.0)
    temperatures = [500, 610, 560, 620, 540, 605, 400, 700]  # 560 is not below 550: still the same cycle
    run(kernel, [float(i) for i in range(len(temperatures))], [float(x) for x in temperatures])
    assert kernel.state()["cycles"] == 3


def test_a_long_gap_is_not_credited(impl):
    kernel = life(impl, max_gap=300.0)
    run(kernel, [0.0, 300.0, 1000.0], [700.0, 700.0, 700.0])
    state = kernel.state()
    assert band_seconds(kernel) == {700.0: 300.0} and state["unaccounted"] == 700.0


def test_a_reading_counts_once(impl):
    """A batch run again (after a crash), a repeated or older reading, and
    warm-up never add time."""
    kernel = life(impl)
    times, values = [0.0, 10.0, 20.0], [700.0, 700.0, 700.0]
    run(kernel, times, values)
    once = kernel.state()
    run(kernel, times, values)
    assert kernel.state() == once
    kernel.counting = False
    run(kernel, [30.0, 40.0], [900.0, 900.0])
    assert kernel.state() == once
    kernel.counting = True
    run(kernel, [30.0], [700.0])
    assert kernel.state()["seconds_above"] == 30.0


def test_the_usage_limit_flips_quality_from_the_reading_that_passes_it(impl):
    kernel = life(impl, limit_above=600.0, limit_seconds=100.0, over=UNCERTAIN)
    _v, quality, reasons = run(kernel, [0.0, 50.0, 100.0, 150.0, 200.0], [700.0] * 5)
    # above 600 for 50, 100 (= the limit, not past it), 150 s: past the limit at t = 150
    assert quality == [GOOD, GOOD, GOOD, UNCERTAIN, UNCERTAIN] and reasons[3] == "usage-limit"
    assert kernel.state()["exceeded_at"] == 150.0
    cycles = life(impl, cycle_above=600.0, limit_cycles=1, over=BAD)
    assert run(cycles, [0.0, 1.0, 2.0, 3.0], [700.0, 500.0, 700.0, 700.0])[1] == [GOOD, GOOD, BAD, BAD]


def test_a_stored_state_continues_exactly(impl):
    whole, first = life(impl, limit_seconds=500.0), life(impl, limit_seconds=500.0)
    times = [float(t) for t in range(0, 1200, 60)]
    values = [500.0 + (t % 400) for t in times]
    run(whole, times, values)
    run(first, times[:7], values[:7])
    second = life(impl, limit_seconds=500.0)
    second.load(first.state())
    assert not second.changed
    run(second, times[7:], values[7:])
    assert second.state() == whole.state()


def test_a_new_life_starts_from_zero_at_its_start(impl):
    kernel = life(impl)
    run(kernel, [0.0, 100.0], [700.0, 700.0])
    kernel.reset(150.0)
    run(kernel, [120.0, 200.0, 260.0], [700.0, 700.0, 700.0])  # 120 belongs to the sensor taken out
    assert band_seconds(kernel) == {700.0: 60.0} and kernel.state()["first_time"] == 200.0


# ---------------------------------------------------------------- the twins agree

def _bits(values):
    return [struct.pack("<d", v) for v in values]


_times = st.one_of(st.floats(0.0, 500.0), st.sampled_from([0.0, 100.0, 200.0, 250.0]))


@st.composite
def schedules(draw):
    starts = sorted(set(draw(st.lists(st.floats(0.0, 400.0), max_size=4))))
    entries = []
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else draw(st.sampled_from([INF, start + 50.0]))
        xs = sorted(set(draw(st.lists(st.floats(-50.0, 1500.0), max_size=5))))
        points = tuple((x, draw(st.floats(-5.0, 5.0))) for x in xs) if len(xs) >= 2 else ()
        entries.append(Entry(f"R{k}", start, end, draw(st.sampled_from([INF, start + 20.0])),
                             draw(st.sampled_from([INF, start + 10.0])), draw(st.floats(0.5, 1.5)),
                             draw(st.floats(-10.0, 10.0)), points))
    return entries


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schedules(), st.lists(st.tuples(_times, st.floats(-100.0, 1600.0), st.sampled_from([0, 0, 1, 2])), max_size=40),
       st.sampled_from([GOOD, UNCERTAIN, BAD]))
def test_compiled_calibration_gives_the_pure_bits(both_impls, entries, samples, missing):
    out = []
    for impl in both_impls:
        kernel = calibration(impl, *entries, overdue=BAD, missing=missing)
        times = [s[0] for s in samples]
        values, quality, reasons = run(kernel, times, [s[1] for s in samples], bytes(s[2] for s in samples))
        out.append((_bits(values), quality, reasons, list(kernel.applied), [kernel.entry_at(t) for t in times]))
    assert out[0] == out[1]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.tuples(st.floats(0.0, 50.0), st.floats(-400.0, 2200.0), st.sampled_from([0, 0, 1, 2])),
                         max_size=20), min_size=1, max_size=4),
       st.sampled_from([7.0, 50.0, 100.0]), st.floats(0.0, 2000.0), st.integers(0, 3))
def test_compiled_life_gives_the_pure_state_in_any_batches(both_impls, batches, band, limit_seconds, limit_cycles):
    """Random increments of time (a batch may also repeat or go back);
    after every batch both twins hold the same state, bit for bit."""
    kernels = [life(impl, band=band, limit_seconds=limit_seconds, limit_cycles=limit_cycles, max_gap=30.0)
               for impl in both_impls]
    clock = 0.0
    for batch in batches:
        times = []
        for step, _value, _q in batch:
            clock += step - 10.0  # sometimes backwards
            times.append(clock)
        got = [run(k, times, [b[1] for b in batch], bytes(b[2] for b in batch)) for k in kernels]
        assert got[0][1:] == got[1][1:]
        states = [k.state() for k in kernels]
        assert {key: (repr(v) if isinstance(v, float) else v) for key, v in states[0].items() if key != "bands"} == \
            {key: (repr(v) if isinstance(v, float) else v) for key, v in states[1].items() if key != "bands"}
        assert {repr(e): repr(s) for e, s in states[0]["bands"].items()} == \
            {repr(e): repr(s) for e, s in states[1]["bands"].items()}


# ---------------------------------------------------------------- against the rules, in any batches

@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.floats(0.0, 400.0), min_size=1, max_size=4, unique=True), st.data())
def test_a_record_added_mid_stream_applies_from_its_start_and_due_dates_flip_at_theirs(impl, starts, data):
    """A stream in random batches; between two batches a record is added
    (as the gateway does when ``smemet calibration add`` commits).  Every
    reading gets the offset of the record in force at its time among those
    known when it is processed -- worked out here from the rule, not by a
    kernel -- and is uncertain ``calibration-due`` exactly from its record's
    due moment on."""
    starts = sorted(starts)
    offsets = [data.draw(st.floats(-10.0, 10.0)) for _ in starts]
    dues = [data.draw(st.sampled_from([INF, start + 0.0, start + 30.0])) for start in starts]
    known = data.draw(st.integers(0, len(starts) - 1))  # records known at first; the next one comes mid-stream
    kernel = calibration(impl)

    def schedule(n):
        return [Entry(f"R{k}", starts[k], starts[k + 1] if k + 1 < n else INF, dues[k], offset=offsets[k])
                for k in range(n)]

    kernel.set_schedule(schedule(known + 1))
    readings = sorted(data.draw(st.lists(st.floats(0.0, 500.0), min_size=1, max_size=30)))
    cut = data.draw(st.integers(0, len(readings)))
    for part, n in ((readings[:cut], known + 1), (readings[cut:], min(known + 2, len(starts)))):
        if n != len(kernel.ids):
            kernel.set_schedule(schedule(n))  # the record added between batches
        values, quality, reasons = run(kernel, part, [100.0] * len(part))
        entries = schedule(n)
        for t, value, q, reason, applied in zip(part, values, quality, reasons, kernel.applied):
            k = next((k for k, e in enumerate(entries) if e.start <= t < e.end), -1)
            assert applied == k
            if k < 0:
                assert (value, q, reason) == (100.0, GOOD, "")
                continue
            assert value == 100.0 + offsets[k]
            overdue = t >= dues[k]
            assert (q, reason) == ((UNCERTAIN, "calibration-due") if overdue else (GOOD, "")), (t, dues[k])


def _life_by_the_rules(readings, band, limit_seconds, limit_cycles, max_gap, above=600.0, hysteresis=50.0):
    """(bands, seconds above, cycles, exceeded_at) of readings (time,
    value, bad) in processing order, by the rules docs/processing.md states."""
    bands, seconds, unaccounted, cycles, hot, last, exceeded_at = {}, 0.0, 0.0, 0, False, None, INF
    for t, value, bad in readings:
        if bad or (last is not None and t <= last[0]):
            continue
        if last is not None:
            dt = t - last[0]
            if dt > max_gap:
                unaccounted += dt
            else:
                edge = min(max(math.floor(last[1] / band) * band, math.floor(-300.0 / band) * band),
                           math.floor(2000.0 / band) * band)
                bands[edge] = bands.get(edge, 0.0) + dt
                seconds += dt if last[1] >= above else 0.0
        if hot and value < above - hysteresis:
            hot = False
        elif not hot and value >= above:
            hot, cycles = True, cycles + 1
        last = (t, value)
        if exceeded_at == INF and ((limit_seconds > 0 and seconds > limit_seconds)
                                   or (limit_cycles > 0 and cycles > limit_cycles)):
            exceeded_at = t
    return bands, seconds, unaccounted, cycles, exceeded_at


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.floats(-5.0, 40.0), st.floats(300.0, 900.0), st.booleans()), min_size=1, max_size=60),
       st.data(), st.sampled_from([50.0, 100.0]), st.sampled_from([0.0, 30.0, 120.0]), st.integers(0, 3))
def test_life_and_its_usage_limit_follow_the_rules_in_any_batches_and_restarts(impl, steps, data, band, limit_seconds,
                                                                               limit_cycles):
    """Readings (sometimes going back in time, some bad) in random
    batches, with a restart (state stored and loaded into a new kernel) at
    a random batch boundary: the counts are those of the rules, and every
    reading from the moment the limit is passed on is uncertain
    ``usage-limit``, none before it."""
    clock, readings = 0.0, []
    for step, value, bad in steps:
        clock += step
        readings.append((clock, value, bad and step > 30.0))  # a few bad ones
    cuts = sorted(data.draw(st.lists(st.integers(0, len(readings)), max_size=3)))
    restart_at = data.draw(st.sampled_from(cuts)) if cuts else None
    kernel = life(impl, band=band, limit_seconds=limit_seconds, limit_cycles=limit_cycles, max_gap=30.0)
    flags, start = [], 0
    for cut in cuts + [len(readings)]:
        part = readings[start:cut]
        if cut == restart_at:  # stored with the batch before, loaded by a new kernel
            state = kernel.state()
            kernel = life(impl, band=band, limit_seconds=limit_seconds, limit_cycles=limit_cycles, max_gap=30.0)
            kernel.load(state)
        if part:
            _v, quality, reasons = run(kernel, [r[0] for r in part], [r[1] for r in part],
                                       bytes(BAD if r[2] else GOOD for r in part))
            flags += list(zip(quality, reasons))
        start = cut
    bands, seconds, unaccounted, cycles, exceeded_at = _life_by_the_rules(readings, band, limit_seconds, limit_cycles,
                                                                          30.0)
    state = kernel.state()
    assert state["seconds_above"] == pytest.approx(seconds, abs=1e-9)
    assert state["unaccounted"] == pytest.approx(unaccounted, abs=1e-9)
    assert {edge: s for edge, s in state["bands"].items()} == pytest.approx(bands, abs=1e-9)
    assert state["cycles"] == cycles and state["exceeded_at"] == exceeded_at
    assert flags == [(BAD, "") if bad else ((UNCERTAIN, "usage-limit") if t >= exceeded_at else (GOOD, ""))
                     for t, _value, bad in readings]
