"""Frames -> measurement rows: pass-through columns, chains per (node,
channel) across a batch, dropped and aggregated points keep a (node, seq),
node faults keep their reason, status packs pass unprocessed."""

import math

import pytest

from smemet.gateway import fastpath
from smemet.gateway.processing import DATA, STATUS, Processor


def opened(node, seq, records, content_type=112):
    """records: (name, unit, value, time, quality, reason)"""
    frame = fastpath.Opened(b"", node.encode(), node, seq, content_type, 0.0, [], [], [], [], [], [])
    for name, unit, value, time, quality, reason in records:
        frame.names.append(name)
        frame.units.append(unit)
        frame.values.append(value)
        frame.times.append(time)
        frame.qualities.append(quality)
        frame.reasons.append(reason)
    return frame


def good(name, value, time, unit="V"):
    return (name, unit, value, time, "good", None)


class processor:
    """A Processor whose ``rows`` flattens to (node, seq, channel, time,
    value, unit, quality, reason, kind) for easy comparison."""

    def __init__(self, channels, units=None, impl=None):
        self.p = Processor(lambda n, c: channels.get(f"{n}/{c}"), lambda n, c: (units or {}).get(f"{n}/{c}"), impl)

    def rows(self, frames):
        for i, frame in enumerate(frames):
            frame.frame_id = i + 1
        entries = self.p.rows(frames)
        assert [e[0] for e in entries] == [f.frame_id for f in frames]
        return [(node, seq, *row, kind) for _id, node, seq, kind, _received, rows in entries for row in rows]


def test_pass_through_without_chains():
    rows = processor({}).rows([
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


@pytest.fixture(params=["cython", "pure"])
def impl(request):
    from smemet.gateway import kernels

    try:
        return kernels.load(request.param)
    except ImportError:
        pytest.skip("Cython kernels not compiled")
