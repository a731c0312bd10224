"""Frames -> processed frames: pass-through columns, chains per (node,
channel) across a batch, dropped and aggregated points keep a (node, seq),
node faults keep their reason, status packs pass unprocessed, consecutive
measurement ids; and the compiled batch runner gives exactly what its
pure-Python twin gives."""

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smemet.gateway.processing import Processor
from smemet.gateway.spine import KIND_DATA as DATA, KIND_STATUS as STATUS, QUALITY_CODES, OpenedFrame


def opened(node, seq, records, content_type=112):
    """records: (name, unit, value, time, quality, reason)"""
    frame = OpenedFrame(b"", node.encode(), node, seq, content_type, 0.0, 0.0, [], [], [], [], bytearray(), [])
    for name, unit, value, time, quality, reason in records:
        frame.names.append(name)
        frame.units.append(unit)
        frame.values.append(value)
        frame.times.append(time)
        frame.quality.append(QUALITY_CODES[quality])
        frame.reasons.append(reason)
    return frame


def good(name, value, time, unit="V"):
    return (name, unit, value, time, "good", None)


class processor:
    """A Processor whose ``rows`` flattens the processed frames to (node,
    seq, channel, time, value, unit, quality code, reason, kind) for easy
    comparison, checking the ids on the way."""

    def __init__(self, channels, units=None, impl=None):
        self.p = Processor(lambda n, c: channels.get(f"{n}/{c}"), lambda n, c: (units or {}).get(f"{n}/{c}"), impl)
        self.next_id = 1

    def rows(self, frames):
        processed = self.p.process(frames, first_frame_id=1, first_id=self.next_id)
        rows = []
        for frame in processed:
            assert frame.first_id == self.next_id and len(frame) > 0  # ids consecutive, no empty frames
            self.next_id += len(frame)
            assert frame.frame_id - 1 in range(len(frames)) and frames[frame.frame_id - 1].seq == frame.seq
            for i in range(len(frame)):
                rows.append((frame.node, frame.seq, frame.channels[i], frame.times[i], frame.values[i], frame.units[i],
                             frame.quality[i], frame.reasons[i], frame.kind))
        assert [f.frame_id for f in processed] == sorted(f.frame_id for f in processed)
        return rows


def test_pass_through_without_chains(impl):
    rows = processor({}, impl=impl).rows([
        opened("a", 1, [good("t", 1, 10.0), ("f", None, None, 11.0, "bad", "open-circuit"), good("b", True, 12.0)]),
        opened("a", 2, [good("fw", "0.1.0", 13.0, None)], content_type=65001),
    ])
    assert rows == [
        ("a", 1, "t", 10.0, 1.0, "V", 0, None, DATA),
        ("a", 1, "f", 11.0, None, None, 2, "open-circuit", DATA),
        ("a", 1, "b", 12.0, True, "V", 0, None, DATA),
        ("a", 2, "fw", 13.0, "0.1.0", None, 0, None, STATUS),
    ]
    assert type(rows[0][4]) is float


def test_chain_runs_per_node_and_channel_with_state_across_batches(impl):
    ema = [{"type": "ema", "alpha": 0.5}]
    p = processor({"a/t": ema, "b/t": ema}, units={"a/t": "Cel"}, impl=impl)
    first = p.rows([opened("a", 1, [good("t", 10.0, 1.0), good("u", 5.0, 1.0)]), opened("b", 1, [good("t", 100.0, 1.0)])])
    second = p.rows([opened("a", 2, [good("t", 20.0, 2.0)])])
    a_t = [(r[1], r[4], r[5]) for r in first + second if r[0] == "a" and r[2] == "t"]
    assert a_t == [(1, 10.0, "Cel"), (2, 15.0, "Cel")]
    assert [(r[0], r[2], r[4], r[5]) for r in first if r[0] == "b"] == [("b", "t", 100.0, "V")]
    assert [(r[2], r[4]) for r in first if r[2] == "u"] == [("u", 5.0)]


def test_rows_stay_grouped_by_frame_in_commit_order(impl):
    p = processor({"a/t": [{"type": "calibration", "gain": 2.0}]}, impl=impl)
    rows = p.rows([opened("a", s, [good("t", float(s), float(s)), good("u", float(s), float(s))]) for s in (1, 2, 3)])
    assert [r[1] for r in rows] == [1, 1, 2, 2, 3, 3]
    assert [r[4] for r in rows if r[2] == "t"] == [2.0, 4.0, 6.0]


def test_dropped_points_keep_their_frame(impl):
    p = processor({"a/t": [{"type": "deadband", "absolute": 1.0}]}, impl=impl)
    frames = [opened("a", s, [good("t", v, float(s))]) for s, v in ((1, 10.0), (2, 10.5), (3, 12.0), (4, 12.2))]
    rows = p.rows(frames)
    assert [(r[1], r[3], r[4]) for r in rows] == [(1, 1.0, 10.0), (3, 3.0, 12.0)]


def test_aggregates_are_attributed_to_the_closing_frame(impl):
    p = processor({"a/t": [{"type": "aggregate", "period": 10.0, "function": "mean"}]}, impl=impl)
    frames = [opened("a", s, [good("t", float(s), float(s * 4))]) for s in range(1, 6)]  # times 4..20
    rows = p.rows(frames)
    # windows [0,10) closes at t=12 (seq 3), [10,20) closes at t=20 (seq 5)
    assert [(r[1], r[3], r[4]) for r in rows] == [(3, 0.0, 1.5), (5, 10.0, 3.5)]


def test_node_faults_pass_through_chains_with_their_reason(impl):
    p = processor({"a/t": [{"type": "calibration", "gain": 2.0}, {"type": "range", "max": 100.0}]}, impl=impl)
    rows = p.rows([opened("a", 1, [
        good("t", 10.0, 1.0),
        ("t", None, None, 2.0, "bad", "open-circuit"),
        ("t", "V", 30.0, 3.0, "uncertain", "namur-low"),
        good("t", 80.0, 4.0),
    ])])
    assert [(r[4], r[6], r[7]) for r in rows] == [
        (20.0, 0, None), (None, 2, "open-circuit"), (60.0, 1, "namur-low"), (160.0, 2, "out-of-range"),
    ]


def test_non_finite_values_are_bad(impl):
    p = processor({"a/t": [{"type": "calibration", "gain": 1.0}]}, impl=impl)
    rows = p.rows([opened("a", 1, [("t", "V", None, 1.0, "bad", "non-finite"), good("t", 1.0, 2.0)])])
    assert rows[0][4] is None and rows[0][6] == 2
    assert not any(isinstance(r[4], float) and math.isnan(r[4]) for r in rows)


def test_per_sample_cold_junction_comes_from_the_frames_cj_record(impl):
    """A thermocouple step with cold_junction = "per-sample" takes each
    sample's CJ from the <channel>.cj record of the same frame and time; a
    sample without one is bad "no-cold-junction" (processing goes on)."""
    steps = [{"type": "thermocouple", "kind": "K", "cold_junction": "per-sample"}]
    p = processor({"a/tc": steps}, impl=impl)
    rows = p.rows([
        opened("a", 1, [good("tc", 4.096, 1.0, "mV"), good("tc.cj", 0.0, 1.0, "Cel"),
                        good("tc", 4.096, 2.0, "mV"), good("tc.cj", 25.0, 2.0, "Cel")]),
        opened("a", 2, [good("tc", 4.096, 3.0, "mV")]),
    ])
    tc = [(r[3], r[4], r[6], r[7]) for r in rows if r[2] == "tc"]
    assert tc[0][0] == 1.0 and abs(tc[0][1] - 100.0) < 0.05 and tc[0][2:] == (0, None)  # 4.096 mV at 0 °C CJ: 100 °C
    with_cj = impl.emf_to_celsius("K", 4.096 + impl.celsius_to_emf("K", 25.0))  # the same EMF, CJ at 25 °C
    assert tc[1][1] == with_cj and 124.0 < with_cj < 125.0 and tc[1][2:] == (0, None)
    assert tc[2][2:] == (2, "no-cold-junction") and tc[2][1] == 4.096  # raw value kept


def test_frames_whose_points_all_dropped_give_no_frame_and_no_ids(impl):
    p = processor({"a/t": [{"type": "deadband", "absolute": 5.0}]}, impl=impl)
    rows = p.rows([opened("a", s, [good("t", 10.0 + s * 0.1, float(s))]) for s in (1, 2, 3)])
    assert [(r[1], r[4]) for r in rows] == [(1, 10.1)]
    assert p.next_id == 2


# ---------------------------------------------------------------- the two batch runners agree

_STEPS = [
    [{"type": "calibration", "gain": 1.001, "offset": -0.2}, {"type": "range", "min": -50.0, "max": 1800.0},
     {"type": "ema", "alpha": 0.3}],
    [{"type": "current_loop", "lrv": 0.0, "urv": 40.0}, {"type": "hampel", "window": 5}],
    [{"type": "deadband", "absolute": 0.5, "max_silence": 3.0}],
    [{"type": "aggregate", "period": 2.0, "function": "mean"}],
    [{"type": "thermocouple", "kind": "S", "cold_junction": "per-sample"}, {"type": "rate_limit", "max_rate": 50.0}],
    [{"type": "ema", "time_constant": 2.0}, {"type": "aggregate", "period": 3.0, "function": "max"}],
]
_values = st.one_of(st.floats(-5.0, 25.0), st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 30),
                    st.none(), st.booleans(), st.just("x"), st.just(b"\x01"))


@st.composite
def batches(draw):
    frames = []
    for seq in range(1, draw(st.integers(1, 12)) + 1):
        node = draw(st.sampled_from(["a", "b"]))
        records = []
        for _ in range(draw(st.integers(0, 10))):
            channel = draw(st.sampled_from(["c0", "c1", "c2", "c3", "c4", "c5", "c4.cj", "free"]))
            value = draw(_values)
            quality = draw(st.sampled_from(["good", "good", "uncertain", "bad"]))
            reason = None if quality == "good" and draw(st.booleans()) else draw(st.sampled_from([None, "namur-low"]))
            time = draw(st.one_of(st.floats(0.0, 20.0), st.integers(0, 5), st.sampled_from([1.0, 2.0, 2.5]),
                                  st.just(float("nan"))))  # repeated times: the origins' tie rule
            records.append((channel, "V", value, time, quality, reason))
        frames.append(opened(node, seq, records, draw(st.sampled_from([112, 112, 112, 65001]))))
    return frames


def _flat(processed):
    def same(x):
        return "nan" if isinstance(x, float) and math.isnan(x) else (type(x).__name__, x)
    return [(f.first_id, f.frame_id, f.node, f.seq, f.kind, f.quality, f.reasons, f.channels, f.units,
             [same(t) for t in f.times], [same(v) for v in f.values]) for f in processed]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # the modules are stateless
@given(st.lists(batches(), min_size=1, max_size=3))
def test_compiled_batches_equal_the_reference(both_impls, stream):
    cython, pure = both_impls
    steps = {f"{node}/c{k}": s for node in ("a", "b") for k, s in enumerate(_STEPS)}
    runners = [Processor(lambda n, c: steps.get(f"{n}/{c}"), lambda n, c: "Cel" if c == "c0" else None, k)
               for k in (cython, pure)]
    next_id = 1
    for batch in stream:  # state carries over between batches
        got = [runner.process(batch, 7, next_id) for runner in runners]
        assert _flat(got[0]) == _flat(got[1])
        next_id += sum(len(f) for f in got[0])


@pytest.fixture(params=["cython", "pure"])
def impl(request):
    from smemet.gateway import kernels

    try:
        return kernels.load(request.param)
    except ImportError:
        pytest.skip("Cython kernels not compiled")
