"""Processing chains: config validation and batch processing, on both kernel
implementations."""

import math
import tomllib

import pytest

from smemet.gateway.chains import MIN_WARMUP_S, STEP_TYPES, Chain, ChainResult, chain_from_config, warmup_seconds
from smemet.gateway.errors import ConfigError

WHERE = 'gateway.toml: channels."furnace-1/t_s".steps'

FURNACE_TOML = """
[[channels."furnace-1/t_s".steps]]
type = "thermocouple"
kind = "S"
cold_junction = "per-sample"

[[channels."furnace-1/t_s".steps]]
type = "range"
min = 0
max = 1700

[[channels."furnace-1/t_s".steps]]
type = "hampel"
window = 5
threshold = 3.0

[[channels."furnace-1/t_s".steps]]
type = "deadband"
absolute = 0.5
max_silence = 60
"""


@pytest.fixture
def build(impl):
    def build(steps, where=WHERE):
        return chain_from_config(steps, where, kernels=impl)
    return build


def test_toml_example_runs(build):
    steps = tomllib.loads(FURNACE_TOML)["channels"]["furnace-1/t_s"]["steps"]
    chain = build(steps)
    assert chain.step_types == ("thermocouple", "range", "hampel", "deadband")
    assert chain.needs_cold_junction
    # S at 1200 °C is 11.951 mV (NIST); cold junction at 0 °C; then a broken
    # reading far outside the EMF range, then a node fault.
    result = chain.process([0.0, 1.0, 2.0, 3.0], [11.951, 11.951, 40.0, 11.951],
                           quality=["good", "good", "good", "bad"],
                           reasons=["", "", "", "node-fault"],
                           cold_junction=[0.0, 0.0, 0.0, 0.0])
    assert isinstance(result, ChainResult)
    assert list(result.times) == [0.0, 2.0, 3.0]  # 1.0 is inside the deadband
    assert result.values[0] == pytest.approx(1200.0, abs=0.1)
    assert result.values[1:] == pytest.approx([40.0, 11.951])  # raw values kept
    assert result.quality == ["good", "bad", "bad"]
    assert result.reasons == ["", "emf-out-of-range", "node-fault"]
    assert [p[2:] for p in result.points()] == [("good", ""), ("bad", "emf-out-of-range"),
                                                ("bad", "node-fault")]


def test_incoming_bad_passes_untouched(build):
    chain = build([{"type": "calibration", "gain": 2.0, "offset": 1.0},
                   {"type": "ema", "alpha": 0.5}])
    result = chain.process([0, 1, 2], [1.0, 1000.0, 3.0], quality=bytes([0, 2, 0]),
                           reasons=bytes([0, 1, 0]))
    # calibrated 3, (bad 1000 untouched), 7; EMA 3 -> 3 + 0.5 * (7 - 3) = 5
    assert list(result.values) == [3.0, 1000.0, 5.0]
    assert result.reasons == ["", "node-fault", ""]


def test_non_finite_input_flagged_before_any_step(build):
    result = build([{"type": "calibration", "coefficients": [0, 1, 1]}]).process([0, 1], [math.nan, 2.0])
    assert result.quality == ["bad", "good"] and result.reasons == ["not-finite", ""]
    assert result.values[1] == 6.0


def test_current_loop_chain_with_aggregation_across_batches(build):
    chain = build([{"type": "current_loop", "lrv": 0, "urv": 1600},
                   {"type": "aggregate", "period": 10, "function": "max"}])
    first = chain.process([0, 5, 9], [4.0, 12.0, 2.0])  # 2 mA: wire break, not in the max
    assert len(first) == 0
    second = chain.process([10, 12], [20.0, 20.0])
    assert list(second.times) == [0.0] and list(second.values) == [800.0]
    assert second.quality == ["good"]


def test_empty_chain_and_empty_batch(build):
    result = build([]).process([], [])
    assert len(result) == 0 and result.quality == []


@pytest.mark.parametrize("steps, where, fragment", [
    ([{"type": "smoothing"}], "[0].type", "unknown step type 'smoothing'; valid: 'calibration'"),
    ([{"gain": 2}], "[0].type", "missing 'type'"),
    ([{"type": "current_loop", "lrv": 0}], "[0].urv", "missing; a number is required"),
    ([{"type": "current_loop", "lrv": 0, "urv": "100"}], "[0].urv", "finite number"),
    ([{"type": "current_loop", "lrv": 5, "urv": 5}], "[0].urv", "must differ from lrv"),
    ([{"type": "thermocouple", "kind": "C", "cold_junction": 20}], "[0].kind", "one of 'K', 'S', 'R', 'B', 'N', 'J', 'E', 'T'"),
    ([{"type": "thermocouple", "kind": "K"}], "[0].cold_junction", "missing"),
    ([{"type": "thermocouple", "kind": "K", "cold_junction": "room"}], "[0].cold_junction", "per-sample"),
    ([{"type": "hampel", "window": 2}], "[0].window", "integer 3..10000"),
    ([{"type": "hampel", "window": 5.0}], "[0].window", "integer"),
    ([{"type": "hampel", "window": 5, "threshold": 0}], "[0].threshold", "greater than 0"),
    ([{"type": "hampel", "window": 5, "treshold": 3}], "[0].treshold", "unknown key for a 'hampel' step; valid keys are type, window, threshold"),
    ([{"type": "range"}], "[0].min", "needs 'min', 'max' or both"),
    ([{"type": "range", "min": 5, "max": 1}], "[0].max", "greater than min"),
    ([{"type": "deadband", "max_silence": 5}], "[0].absolute", "'absolute' or 'percent'"),
    ([{"type": "ema"}], "[0].alpha", "exactly one"),
    ([{"type": "ema", "alpha": 0.1, "time_constant": 3}], "[0].alpha", "exactly one"),
    ([{"type": "ema", "alpha": 1.5}], "[0].alpha", "at most 1"),
    ([{"type": "rate_limit", "max_rate": 1, "flag": "ugly"}], "[0].flag", "'bad', 'uncertain'"),
    ([{"type": "aggregate", "period": -1}], "[0].period", "greater than 0"),
    ([{"type": "aggregate", "period": 60, "function": "median"}], "[0].function", "'mean', 'min'"),
    ([{"type": "calibration", "gain": 2, "coefficients": [0, 1]}], "[0].coefficients", "not both"),
    ([{"type": "calibration", "coefficients": [0, True]}], "[0].coefficients[1]", "finite number"),
    ([{"type": "calibration", "gain": True}], "[0].gain", "finite number"),
    ([{"type": "range", "max": 1}, "hampel"], "[1]", "must be a table"),
    ([{"type": "deadband", "absolute": 1},
      {"type": "thermocouple", "kind": "K", "cold_junction": "per-sample"}],
     "[1].cold_junction", "must come before the 'deadband' step"),
])
def test_config_errors_name_the_key_and_what_is_valid(build, steps, where, fragment):
    with pytest.raises(ConfigError) as caught:
        build(steps)
    assert caught.value.where == WHERE + where
    assert fragment in caught.value.message


def test_steps_must_be_a_list(build):
    with pytest.raises(ConfigError, match="must be a list"):
        build({"type": "range"})


def test_every_step_type_builds_with_valid_parameters(build):
    valid = {
        "calibration": {"gain": 1.5, "offset": -2},
        "linear": {"gain": 1.5},
        "polynomial": {"coefficients": [0.1, 1.0]},
        "thermocouple_life": {"kind": "K", "limit_cycles": 10},  # before a step that drops points
        "thermocouple": {"kind": "B", "cold_junction": 25},
        "current_loop": {"lrv": 0, "urv": 10},
        "range": {"min": 0},
        "hampel": {"window": 7},
        "deadband": {"percent": 1, "max_silence": 30},
        "ema": {"time_constant": 5},
        "rate_limit": {"max_rate": 2.5, "flag": "uncertain"},
        "aggregate": {"period": 60, "function": "count"},
    }
    assert set(valid) == set(STEP_TYPES)
    chain = build([{"type": name, **params} for name, params in valid.items()])
    assert chain.step_types == tuple(valid)


def test_process_rejects_misaligned_inputs(build):
    chain = build([{"type": "thermocouple", "kind": "K", "cold_junction": "per-sample"}])
    with pytest.raises(ValueError, match="cold_junction"):
        chain.process([0], [1.0])
    with pytest.raises(ValueError, match="cold-junction"):
        chain.process([0], [1.0], cold_junction=[1.0, 2.0])
    with pytest.raises(ValueError, match="times"):
        chain.process([0, 1], [1.0])
    with pytest.raises(ValueError, match="unknown reason"):
        chain.process([0], [1.0], reasons=["gremlins"], cold_junction=[0.0])
    with pytest.raises(ValueError, match="not in the table"):
        chain.process([0], [1.0], quality=bytes([7]), cold_junction=[0.0])


def test_default_kernels_are_the_active_implementation():
    chain = Chain([{"type": "range", "max": 1}], WHERE)
    assert chain.process([0, 1], [0.5, 2.0]).quality == ["good", "bad"]


def test_warmup_covers_the_longest_memory_of_the_configured_chains():
    assert warmup_seconds(()) == 0.0  # no chains: nothing to warm up
    assert warmup_seconds((("a/t", [{"type": "range", "max": 1.0}]),)) == MIN_WARMUP_S
    channels = (
        ("a/t", [{"type": "aggregate", "period": 600}]),  # an open 10 min window reaches 20 min back
        ("b/*", [{"type": "ema", "time_constant": 30}]),  # 5 time constants
    )
    assert warmup_seconds(channels) == 1200.0
    assert warmup_seconds(channels[1:]) == 150.0


@pytest.mark.parametrize("kind, emf, celsius", [("N", 36.256, 1000.0), ("J", 27.393, 500.0), ("E", 37.005, 500.0),
                                                 ("T", 14.862, 300.0)])
def test_a_chain_linearises_types_n_j_e_t(build, kind, emf, celsius):
    """gateway.toml accepts the four types beside K, S, R, B; a NIST table
    EMF (cold junction 0 °C) comes out as its temperature."""
    chain = build([{"type": "thermocouple", "kind": kind, "cold_junction": 0.0}])
    result = chain.process([0.0], [emf])
    assert result.values[0] == pytest.approx(celsius, abs=0.06)
