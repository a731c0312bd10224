"""Kernel behaviour, run against both implementations (the ``impl`` fixture).
Expected values are worked out by hand in the comments."""

import math
import os
import subprocess
import sys
from array import array

import pytest

from smemet.gateway import kernels
from smemet.gateway import quality as codes

G, U, B = codes.GOOD, codes.UNCERTAIN, codes.BAD


def run(kernel, values, times=None, quality=None, reason=None):
    """Process one batch; returns (times, values, quality, reason names) of the survivors."""
    n = len(values)
    t = array("d", times if times is not None else range(n))
    v = array("d", values)
    q = bytearray(quality if quality is not None else [G] * n)
    r = bytearray(reason if reason is not None else [codes.NONE] * n)
    kept = kernel.process(t, v, q, r)
    return list(t[:kept]), list(v[:kept]), list(q[:kept]), [codes.REASON_NAMES[x] for x in r[:kept]]


# ---------------------------------------------------------------- codes and selection

def test_code_table_is_consistent():
    assert codes.QUALITY_NAMES[codes.BAD] == "bad"
    assert codes.GOOD < codes.UNCERTAIN < codes.BAD  # severity order: worse is larger
    assert len(set(codes.REASON_NAMES)) == len(codes.REASON_NAMES)
    for name in ("wire-break", "out-of-range", "spike-replaced", "rate-of-change"):
        assert codes.REASON_NAMES[codes.reason_code(name)] == name
    with pytest.raises(ValueError, match="valid"):
        codes.reason_code("gremlins")


def _implementation_in_subprocess(env_extra, prelude=""):
    env = {**os.environ, **env_extra}
    code = prelude + "import smemet.gateway.kernels as k; print(k.IMPLEMENTATION)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip(), done.stderr


def test_env_var_forces_pure_python():
    assert _implementation_in_subprocess({"SMEMET_PUREPYTHON": "1"})[0] == "pure"


def test_missing_extension_falls_back_with_a_logged_warning():
    # Hide the compiled module, as on a host without a compiler.
    prelude = (
        "import sys, importlib.abc\n"
        "class Hide(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.endswith('kernels._kernels'): raise ImportError(name)\n"
        "sys.meta_path.insert(0, Hide())\n"
    )
    name, stderr = _implementation_in_subprocess({"SMEMET_PUREPYTHON": ""}, prelude)
    assert name == "pure"
    assert "Cython module smemet.gateway.kernels._kernels not compiled; using its pure-Python twin" in stderr


def test_compiled_module_is_the_default_when_built():
    pytest.importorskip("smemet.gateway.kernels._kernels")
    assert _implementation_in_subprocess({"SMEMET_PUREPYTHON": ""})[0] == "cython"


def test_active_names_come_from_the_active_module():
    active = kernels.load(kernels.IMPLEMENTATION)
    for name in kernels.KERNEL_NAMES:
        assert getattr(kernels, name) is getattr(active, name)


def test_mismatched_buffer_lengths_rejected(impl):
    with pytest.raises(ValueError, match="same length"):
        impl.Linear(1.0, 0.0).process(array("d", [0.0]), array("d", [1.0, 2.0]), bytearray(2), bytearray(2))


def test_empty_batch(impl):
    for kernel in (impl.Linear(2.0, 1.0), impl.Hampel(3, 3.0), impl.Deadband(1.0, 0.0, 0.0),
                   impl.Aggregate(1.0, "mean")):
        assert run(kernel, []) == ([], [], [], [])


# ---------------------------------------------------------------- stateless kernels

def test_non_finite_values_and_times_flagged_bad(impl):
    _, values, quality, reasons = run(impl.FlagNonFinite(), [1.0, math.nan, math.inf, 2.0],
                                      times=[0.0, 1.0, 2.0, math.nan])
    assert quality == [G, B, B, B]
    assert reasons == ["", "not-finite", "not-finite", "not-finite"]


def test_linear_calibration_skips_bad_samples(impl):
    _, values, quality, reasons = run(impl.Linear(2.0, -1.0), [1.0, 5.0, 7.0],
                                      quality=[G, B, U], reason=[0, codes.NODE_FAULT, 0])
    assert values == [1.0, 5.0, 13.0]  # bad sample keeps its value...
    assert reasons == ["", "node-fault", ""]  # ...and its reason


def test_polynomial_calibration(impl):
    # 1 + 2x + 3x^2 at x = 2 -> 17, at x = -1 -> 2
    assert run(impl.Polynomial([1.0, 2.0, 3.0]), [2.0, -1.0])[1] == [17.0, 2.0]


NE43 = [  # mA, quality, reason, value for LRV 0 / URV 100 (None: raw mA kept)
    (2.0, B, "wire-break", None),
    (3.6, B, "wire-break", None),
    (3.7, U, "loop-fault-band-low", -1.875),
    (3.8, U, "loop-under-range", -1.25),
    (3.95, U, "loop-under-range", -0.3125),
    (4.0, G, "", 0.0),
    (12.0, G, "", 50.0),
    (20.0, G, "", 100.0),
    (20.2, U, "loop-over-range", 101.25),
    (20.5, U, "loop-over-range", 103.125),
    (20.7, U, "loop-fault-band-high", 104.375),
    (21.0, B, "short-circuit", None),
    (23.0, B, "short-circuit", None),
]


@pytest.mark.parametrize("ma, quality, reason, value", NE43, ids=[str(x[0]) for x in NE43])
def test_current_loop_namur_ne43(impl, ma, quality, reason, value):
    _, values, q, r = run(impl.CurrentLoop(0.0, 100.0), [ma])
    assert (q, r) == ([quality], [reason])
    assert values[0] == pytest.approx(ma if value is None else value, abs=1e-9)


def test_current_loop_reverse_acting_span(impl):
    # LRV 500 at 4 mA, URV 100 at 20 mA: 8 mA is a quarter of the way -> 400
    assert run(impl.CurrentLoop(500.0, 100.0), [8.0])[1] == [400.0]


def test_range_check_bounds_inclusive(impl):
    _, values, quality, reasons = run(impl.RangeCheck(0.0, 10.0), [-0.1, 0.0, 10.0, 10.5])
    assert quality == [B, G, G, B]
    assert reasons == ["out-of-range", "", "", "out-of-range"]
    assert values == [-0.1, 0.0, 10.0, 10.5]


def test_worse_verdict_replaces_reason_equal_keeps_first(impl):
    # uncertain (loop-under-range) then range says bad -> bad "out-of-range";
    # a sample already uncertain stays with its first reason when a later
    # step would only make it uncertain too.
    _, _, quality, reasons = run(impl.RangeCheck(0.0, 1.0), [5.0, 0.5], quality=[U, U],
                                 reason=[codes.LOOP_UNDER_RANGE, codes.LOOP_UNDER_RANGE])
    assert quality == [B, U] and reasons == ["out-of-range", "loop-under-range"]
    _, _, quality, reasons = run(impl.RateLimit(1.0, U), [0.0, 9.0], quality=[G, U],
                                 reason=[0, codes.SPIKE_REPLACED])
    assert quality == [G, U] and reasons == ["", "spike-replaced"]


# ---------------------------------------------------------------- Hampel

def test_hampel_replaces_spike_with_window_median(impl):
    # window 5 at the 50: [11, 10, 11, 10, 50] -> median 11, |dev| sorted
    # [0, 0, 1, 1, 39] -> MAD 1; 39 > 3 * 1.4826 * 1 -> replaced by 11.
    # next, [10, 11, 10, 50, 10]: median 10, MAD 0, |10 - 10| = 0 is not > 0.
    _, values, quality, reasons = run(impl.Hampel(5, 3.0), [10, 11, 10, 11, 10, 50, 10])
    assert values == [10, 11, 10, 11, 10, 11, 10]
    assert quality == [G, G, G, G, G, U, G]
    assert reasons[5] == "spike-replaced"


def test_hampel_even_window(impl):
    # [2, 3, 4, 20]: median 3.5, |dev| sorted [0.5, 0.5, 1.5, 16.5] -> MAD 1.0;
    # 16.5 > 4.4478 -> replaced by 3.5.  At [1, 2, 3, 4]: |4 - 2.5| = 1.5, kept.
    _, values, quality, _ = run(impl.Hampel(4, 3.0), [1, 2, 3, 4, 20])
    assert values == [1, 2, 3, 4, 3.5]
    assert quality == [G, G, G, G, U]


def test_hampel_threshold_is_in_scaled_mads(impl):
    # window [0, 1, 0, 1, 4]: median 1, MAD 1 -> limit = t * 1.4826; deviation 3
    assert run(impl.Hampel(5, 2.0), [0, 1, 0, 1, 4])[2][-1] == U  # 3 > 2.9652
    assert run(impl.Hampel(5, 2.1), [0, 1, 0, 1, 4])[2][-1] == G  # 3 < 3.11346


def test_hampel_ignores_bad_samples_and_waits_for_full_window(impl):
    # the bad 1000 is neither in the window nor changed: at the 90 the window
    # is [5, 5, 90] (median 5, MAD 0), so 90 is a spike; with the 1000 in it,
    # the median would have been 90.
    _, values, quality, _ = run(impl.Hampel(3, 3.0), [5, 1000, 5, 90], quality=[G, B, G, G])
    assert values == [5, 1000, 5, 5]
    assert quality == [G, B, G, U]
    # until the window has filled nothing is judged
    assert run(impl.Hampel(5, 3.0), [1, 1, 1, 100])[1] == [1, 1, 1, 100]


def test_hampel_state_spans_batches(impl):
    kernel = impl.Hampel(5, 3.0)
    run(kernel, [10, 11, 10])
    _, values, quality, _ = run(kernel, [11, 10, 50])
    assert values == [11, 10, 11] and quality == [G, G, U]


# ---------------------------------------------------------------- deadband

def test_deadband_absolute_drops_points_inside_band(impl):
    times, values, _, _ = run(impl.Deadband(0.5, 0.0, 0.0), [10, 10.2, 10.6, 10.7, 11.2, 11.2, 11.7])
    # 10.2: 0.2 in band; 10.6: 0.6 out; 10.7: 0.1 in; 11.2: 0.6 out;
    # 11.7: exactly 0.5 from 11.2 is still inside
    assert times == [0, 2, 4]
    assert values == [10, 10.6, 11.2]


def test_deadband_percent_of_last_reported_value(impl):
    times, values, _, _ = run(impl.Deadband(0.0, 10.0, 0.0), [100, 105, 111, 122, 122.2])
    # band 10 around 100: 111 out; band 11.1 around 111: 122 in, 122.2 out
    assert values == [100, 111, 122.2]


def test_deadband_larger_of_absolute_and_percent(impl):
    # around 1.0: 10 % is 0.1, absolute 0.5 wins -> 1.4 in, 1.6 out
    assert run(impl.Deadband(0.5, 10.0, 0.0), [1.0, 1.4, 1.6])[1] == [1.0, 1.6]


def test_deadband_heartbeat_after_max_silence(impl):
    times, _, _, _ = run(impl.Deadband(1.0, 0.0, 3.0), [5.0] * 8)
    assert times == [0, 3, 6]


def test_deadband_reports_quality_changes(impl):
    times, _, quality, reasons = run(impl.Deadband(1.0, 0.0, 0.0), [5.0, 5.0, 5.0, 5.0, 5.0],
                                     quality=[G, U, U, B, G],
                                     reason=[0, codes.SPIKE_REPLACED, codes.SPIKE_REPLACED,
                                             codes.NODE_FAULT, 0])
    assert times == [0, 1, 3, 4]
    assert reasons == ["", "spike-replaced", "node-fault", ""]


def test_deadband_state_spans_batches(impl):
    kernel = impl.Deadband(0.5, 0.0, 0.0)
    assert run(kernel, [10.0, 10.2])[1] == [10.0]
    assert run(kernel, [10.4, 10.6], times=[2, 3])[1] == [10.6]


# ---------------------------------------------------------------- EMA

def test_ema_fixed_alpha(impl):
    assert run(impl.Ema(0.5, 0.0), [0, 10, 10, 10])[1] == [0, 5, 7.5, 8.75]


def test_ema_time_constant(impl):
    # tau 1 s, dt 1 s: alpha = 1 - e^-1 = 0.6321205588; dt 0: unchanged
    _, values, _, _ = run(impl.Ema(1.0, 1.0), [0, 10, 20], times=[0, 1, 1])
    assert values == pytest.approx([0, 6.321205588285577, 6.321205588285577], rel=1e-12)


def test_ema_skips_bad_and_spans_batches(impl):
    kernel = impl.Ema(0.5, 0.0)
    assert run(kernel, [0, 99], quality=[G, B])[1] == [0, 99]
    assert run(kernel, [10])[1] == [5]


# ---------------------------------------------------------------- rate of change

def test_rate_limit_flags_impossible_change(impl):
    # 1 unit/s: 0.5 after 1 s ok; 5 after 1 more s is not; 1.0 at t=3 is 0.5 in 2 s from 0.5
    _, values, quality, reasons = run(impl.RateLimit(1.0, B), [0, 0.5, 5, 1.0, 1.5])
    assert quality == [G, G, B, G, G]
    assert reasons[2] == "rate-of-change" and values[2] == 5


def test_rate_limit_accepts_genuine_step_once_plausible(impl):
    # a step of 10 at 1 unit/s becomes plausible 10 s after the last accepted sample
    _, _, quality, _ = run(impl.RateLimit(1.0, B), [0] + [10] * 11)
    assert quality == [G] + [B] * 9 + [G, G]


def test_rate_limit_uncertain_option(impl):
    assert run(impl.RateLimit(1.0, U), [0, 5])[2] == [G, U]


# ---------------------------------------------------------------- aggregation

AGG_TIMES = [0, 3, 9.9, 10, 15, 25, 31]
AGG_VALUES = [1, 2, 3, 10, 20, 5, 7]


@pytest.mark.parametrize("function, expected", [
    ("mean", [2, 15, 5]), ("min", [1, 10, 5]), ("max", [3, 20, 5]), ("count", [3, 2, 1]),
])
def test_aggregate_closed_windows_only(impl, function, expected):
    times, values, quality, _ = run(impl.Aggregate(10.0, function), AGG_VALUES, times=AGG_TIMES)
    assert times == [0, 10, 20]  # window starts; [30, 40) is still open
    assert values == expected
    assert quality == [G, G, G]


def test_aggregate_quality(impl):
    # window 0: one uncertain -> uncertain; window 1: only bad -> bad no-good-data
    kernel = impl.Aggregate(1.0, "mean")
    times, values, quality, reasons = run(kernel, [1, 3, 99, 7], times=[0.1, 0.5, 1.5, 2.0],
                                          quality=[G, U, B, G])
    assert times == [0, 1]
    assert values[0] == 2 and math.isnan(values[1])
    assert quality == [U, B]
    assert reasons == ["uncertain-inputs", "no-good-data"]


def test_aggregate_drops_late_samples_and_spans_batches(impl):
    kernel = impl.Aggregate(10.0, "count")
    assert run(kernel, [1, 1], times=[10, 12])[0] == []
    assert run(kernel, [1, 1, 1], times=[5, 19, 20]) == ([10], [3], [G], [""])
    assert kernel.dropped == 1
