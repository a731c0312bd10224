"""Property tests: the Cython kernels give exactly the pure-Python results,
and a stream split into batches gives the same output as one batch."""

from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smemet.gateway import kernels

pytest.importorskip("smemet.gateway.kernels._kernels", reason="Cython kernels not compiled")
CYTHON = kernels.load("cython")
PURE = kernels.load("pure")

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
# small integers make ties and zero MADs, which the median code must handle
reading = st.one_of(finite, st.integers(-3, 3).map(float), st.floats(-10, 60))
positive = st.floats(1e-3, 1e3)

KERNEL_SPECS = st.one_of(
    st.tuples(st.just("FlagNonFinite"), st.just(())),
    st.tuples(st.just("Linear"), st.tuples(finite, finite)),
    st.tuples(st.just("Polynomial"), st.lists(st.floats(-2, 2), min_size=1, max_size=6).map(lambda c: (c,))),
    st.tuples(st.just("Thermocouple"), st.tuples(st.sampled_from("KSRB"), st.floats(-60, 120))),
    st.tuples(st.just("CurrentLoop"), st.tuples(finite, finite)),
    st.tuples(st.just("RangeCheck"), st.tuples(st.floats(-100, 0), st.floats(0, 100))),
    st.tuples(st.just("Hampel"), st.tuples(st.integers(3, 12), st.floats(0.5, 5))),
    st.tuples(st.just("Deadband"), st.tuples(st.floats(0, 5), st.floats(0, 20), st.sampled_from([0.0, 2.0, 7.5]))),
    st.tuples(st.just("Ema"), st.tuples(st.floats(0.01, 1), st.sampled_from([0.0, 0.5, 10.0]))),
    st.tuples(st.just("RateLimit"), st.tuples(positive, st.sampled_from([1, 2]))),
    st.tuples(st.just("Aggregate"), st.tuples(st.sampled_from([0.5, 1.0, 3.0, 10.0]),
                                              st.sampled_from(["min", "max", "mean", "count"]))),
)


@st.composite
def batches(draw):
    n = draw(st.integers(0, 80))
    steps = draw(st.lists(st.one_of(st.just(0.0), st.floats(0, 3), st.just(-1.5)), min_size=n, max_size=n))
    times, t = [], draw(st.floats(0, 1e6))
    for step in steps:
        t += step
        times.append(t)
    values = draw(st.lists(reading, min_size=n, max_size=n))
    quality = draw(st.lists(st.sampled_from([0, 0, 0, 1, 2]), min_size=n, max_size=n))
    # reasons vary independently of quality, so "reason changed" paths run too
    reason = draw(st.lists(st.sampled_from([0, 1, 12]), min_size=n, max_size=n))
    cold_junction = draw(st.none() | st.lists(st.floats(-80, 120), min_size=n, max_size=n))
    return times, values, quality, reason, cold_junction


def run(module, spec, parts):
    """Feed ``parts`` (a list of batches) through one kernel; return the survivors."""
    name, args = spec
    kernel = getattr(module, name)(*args)
    out = ([], [], [], [])
    for times, values, quality, reason, cold_junction in parts:
        buffers = (array("d", times), array("d", values), bytearray(quality), bytearray(reason))
        if name == "Thermocouple" and cold_junction is not None:
            kept = kernel.process(*buffers, array("d", cold_junction))
        else:
            kept = kernel.process(*buffers)
        for column, buffer in zip(out, buffers):
            column.extend(buffer[:kept])
    times, values, quality, reason = out
    # compare values bit for bit, NaN included
    return times, [v.hex() for v in values], quality, reason


def split(batch, cuts):
    n = len(batch[1])
    edges = sorted({0, n, *(c % (n + 1) for c in cuts)})
    return [tuple(None if col is None else col[a:b] for col in batch) for a, b in zip(edges, edges[1:])]


@settings(max_examples=400, deadline=None)
@given(spec=KERNEL_SPECS, batch=batches())
def test_cython_equals_pure(spec, batch):
    assert run(CYTHON, spec, [batch]) == run(PURE, spec, [batch])


@settings(max_examples=300, deadline=None)
@given(spec=KERNEL_SPECS, batch=batches(), cuts=st.lists(st.integers(0, 80), max_size=5),
       implementation=st.sampled_from([CYTHON, PURE]))
def test_batch_split_gives_same_stream(spec, batch, cuts, implementation):
    whole = run(implementation, spec, [batch])
    assert run(implementation, spec, split(batch, cuts)) == whole
