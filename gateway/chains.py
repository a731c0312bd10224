"""Processing chains: the per-channel list of steps from the configuration,
validated once and run batch by batch through the kernels.

A channel's steps come from TOML, e.g.::

    [[channels."furnace-1/t_s".steps]]
    type = "thermocouple"
    kind = "S"
    cold_junction = "per-sample"

    [[channels."furnace-1/t_s".steps]]
    type = "hampel"
    window = 7

Step types and parameters (``*`` = required; see docs/processing.md):

================  ==========================================================
type              parameters
================  ==========================================================
calibration       the calibration records in force at each reading's time
                  (smemet calibration add): require (false), missing
                  ("bad" | "uncertain"), overdue ("uncertain" | "bad"),
                  sat_failed ("uncertain" | "bad").  Given gain/offset or
                  coefficients it is the fixed linear/polynomial step it
                  was before records existed (still valid: "linear" and
                  "polynomial" are its names now)
linear            gain (1.0), offset (0.0): value * gain + offset
polynomial        coefficients* (list, ascending powers: c0 + c1*x + ...)
thermocouple_life kind* (thermocouple type: the default limits), band (100 °C),
                  cycle_above, hysteresis (50 °C), limit_above, limit_hours,
                  limit_cycles, over_limit ("uncertain" | "bad"), max_gap (300 s)
thermocouple      kind* ("K" | "S" | "R" | "B" | "N" | "J" | "E" | "T"),
                  cold_junction* (°C, or
                  "per-sample" to pass one CJ temperature per sample)
current_loop      lrv* (value at 4 mA), urv* (value at 20 mA)
range             min, max (at least one)
hampel            window* (samples, 3..10000), threshold (3.0, in scaled MADs)
deadband          absolute, percent (at least one > 0; the larger band
                  applies), max_silence (0 = off; seconds between heartbeats)
ema               alpha (0 < alpha <= 1) -- or -- time_constant (s); one
rate_limit        max_rate* (units/s), flag ("bad" | "uncertain"; "bad")
aggregate         period* (s), function ("mean" | "min" | "max" | "count")
================  ==========================================================

Every chain first flags NaN/infinite values and times bad "not-finite".
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from . import kernels as _kernels
from . import quality as codes
from .calibration.life import LIFE_DEFAULTS
from .errors import ConfigError
from .kernels import its90 as _its90
from .kernels.batch import run_chain as _pure_run_chain
from .settings import Table, quoted  # works on either twin's kernels (their ``process``)

__all__ = ["STEP_TYPES", "Chain", "ChainResult", "chain_from_config"]



@dataclass(frozen=True, slots=True)
class ChainResult:
    """The points that survived a batch: times (s) and values as array('d'),
    quality and reason as code bytes; ``quality``/``reasons`` give names."""

    times: array
    values: array
    quality_codes: bytes
    reason_codes: bytes

    def __len__(self) -> int:
        return len(self.values)

    @property
    def quality(self) -> list[str]:
        return [codes.QUALITY_NAMES[q] for q in self.quality_codes]

    @property
    def reasons(self) -> list[str]:
        return [codes.REASON_NAMES[r] for r in self.reason_codes]

    def points(self) -> Iterator[tuple[float, float, str, str]]:
        """(time, value, quality name, reason name) per point."""
        return zip(self.times, self.values, self.quality, self.reasons)


_quoted = quoted


# Each builder reads its step and returns (kernel, needs per-sample CJ, drops points).

_FIXED_KEYS = ("gain", "offset", "coefficients")
_RECORD_KEYS = ("require", "missing", "overdue", "sat_failed")


def _calibration(p: Table, k: ModuleType) -> tuple[Any, bool, bool]:
    fixed = [key for key in _FIXED_KEYS if p.has(key)]
    if fixed:  # the step as it was before calibration records: a fixed correction
        mixed = next((key for key in _RECORD_KEYS if p.has(key)), None)
        if mixed is not None:
            raise p.error(mixed, f"applies to calibration records, not to a fixed {fixed[0]!r} correction; "
                                 "use a 'linear' or 'polynomial' step for that and a 'calibration' step for records")
        if p.has("coefficients"):
            return _polynomial(p, k)
        return _linear(p, k)
    require = p.boolean("require", False)
    if p.has("missing") and not require:
        raise p.error("missing", "applies only with require = true")
    missing = codes.quality_code(p.choice("missing", ("bad", "uncertain"), "bad")) if require else codes.GOOD
    overdue = codes.quality_code(p.choice("overdue", ("uncertain", "bad"), "uncertain"))
    sat_failed = codes.quality_code(p.choice("sat_failed", ("uncertain", "bad"), "uncertain"))
    return k.Calibration(overdue, sat_failed, missing), False, False


def _linear(p: Table, k: ModuleType) -> tuple[Any, bool, bool]:
    return k.Linear(p.number("gain", 1.0), p.number("offset", 0.0)), False, False


def _polynomial(p: Table, k: ModuleType) -> tuple[Any, bool, bool]:
    if p.has("gain") or p.has("offset"):
        raise p.error("coefficients", "give either gain/offset or coefficients, not both")
    return k.Polynomial(p.numbers("coefficients")), False, False


def _thermocouple_life(p: Table, k: ModuleType) -> tuple[Any, bool, bool]:
    defaults = LIFE_DEFAULTS[p.choice("kind", tuple(LIFE_DEFAULTS))]
    band = p.number("band", 100.0, low=1.0, high=1000.0)
    cycle_above = p.number("cycle_above", defaults.above)
    hysteresis = p.number("hysteresis", 50.0, low=0.0)
    limit_above = p.number("limit_above", defaults.above)
    limit_hours = p.number("limit_hours", defaults.hours, low=0.0)
    limit_cycles = p.integer("limit_cycles", defaults.cycles, low=0)
    over = codes.quality_code(p.choice("over_limit", ("uncertain", "bad"), "uncertain"))
    max_gap = p.duration("max_gap", 300.0, low=1.0)
    kernel = k.ThermocoupleLife(band, cycle_above, hysteresis, limit_above, limit_hours * 3600.0, limit_cycles,
                                over, max_gap)
    return kernel, False, False


def _thermocouple(p: Table, k: ModuleType) -> tuple[Any, bool, bool]:
    kind = p.choice("kind", _its90.TYPES)
    if p.get("cold_junction") == "per-sample":
        return k.Thermocouple(kind, 0.0), True, False
    if p.has("cold_junction") and isinstance(p.get("cold_junction"), str):
        raise p.error("cold_junction", "must be a temperature in °C or \"per-sample\"")
    return k.Thermocouple(kind, p.number("cold_junction", low=-273.15)), False, False


def _current_loop(p: Table, k: ModuleType) -> tuple[Any, bool, bool]:
    lrv, urv = p.number("lrv"), p.number("urv")
    if lrv == urv:
        raise p.error("urv", "must differ from lrv (the span would be zero)")
    return k.CurrentLoop(lrv, urv), False, False


def _range(p: Table, k: ModuleType) -> tuple[Any, bool, bool]:
    if not (p.has("min") or p.has("max")):
        raise p.error("min", "a range step needs 'min', 'max' or both")
    low, high = p.number("min", -math.inf), p.number("max", math.inf)
    if not low < high:
        raise p.error("max", f"must be greater than min ({low:g})")
    return k.RangeCheck(low, high), False, False


def _hampel(p: Table, k: ModuleType) -> tuple[Any, bool, bool]:
    window = p.integer("window", low=3, high=10_000)
    return k.Hampel(window, p.number("threshold", 3.0, above=0.0)), False, False


def _deadband(p: Table, k: ModuleType) -> tuple[Any, bool, bool]:
    absolute = p.number("absolute", 0.0, low=0.0)
    percent = p.number("percent", 0.0, low=0.0)
    if absolute == 0.0 and percent == 0.0:
        raise p.error("absolute", "a deadband step needs 'absolute' or 'percent' greater than 0")
    max_silence = p.number("max_silence", 0.0, low=0.0)
    return k.Deadband(absolute, percent, max_silence), False, True


def _ema(p: Table, k: ModuleType) -> tuple[Any, bool, bool]:
    if p.has("alpha") == p.has("time_constant"):
        raise p.error("alpha", "an ema step needs exactly one of 'alpha' (0 < alpha <= 1) "
                               "or 'time_constant' (seconds > 0)")
    if p.has("alpha"):
        return k.Ema(p.number("alpha", above=0.0, high=1.0), 0.0), False, False
    return k.Ema(1.0, p.number("time_constant", above=0.0)), False, False


def _rate_limit(p: Table, k: ModuleType) -> tuple[Any, bool, bool]:
    max_rate = p.number("max_rate", above=0.0)
    flag = p.choice("flag", ("bad", "uncertain"), "bad")
    return k.RateLimit(max_rate, codes.quality_code(flag)), False, False


def _aggregate(p: Table, k: ModuleType) -> tuple[Any, bool, bool]:
    period = p.number("period", above=0.0)
    function = p.choice("function", ("mean", "min", "max", "count"), "mean")
    return k.Aggregate(period, function), False, True


# type -> (builder, its parameter names)
STEP_TYPES = {
    "calibration": (_calibration, (*_FIXED_KEYS, *_RECORD_KEYS)),
    "linear": (_linear, ("gain", "offset")),
    "polynomial": (_polynomial, ("coefficients",)),
    "thermocouple_life": (_thermocouple_life, ("kind", "band", "cycle_above", "hysteresis", "limit_above",
                                               "limit_hours", "limit_cycles", "over_limit", "max_gap")),
    "thermocouple": (_thermocouple, ("kind", "cold_junction")),
    "current_loop": (_current_loop, ("lrv", "urv")),
    "range": (_range, ("min", "max")),
    "hampel": (_hampel, ("window", "threshold")),
    "deadband": (_deadband, ("absolute", "percent", "max_silence")),
    "ema": (_ema, ("alpha", "time_constant")),
    "rate_limit": (_rate_limit, ("max_rate", "flag")),
    "aggregate": (_aggregate, ("period", "function")),
}


class Chain:
    """A validated list of steps with their kernel state; ``process`` runs
    one batch and may be called again with the next batch of the stream.

    ``kernels`` (FlagNonFinite first) and ``per_sample_cj`` (whether each
    takes the per-sample cold junction) are what the batch runners
    (``kernels.process_frames``) run; ``unit`` is the unit of the chain's
    output (None: the node's); ``drops`` says whether a step may drop or
    aggregate points.  ``calibration`` and ``life`` are its calibration-record
    and thermocouple-life kernels, if it has those steps: the processor
    gives them their records and stored state."""

    def __init__(self, steps: Sequence[Mapping[str, Any]], where: str,
                 kernels: ModuleType | None = None, unit: str | None = None) -> None:
        k = kernels if kernels is not None else _kernels
        if not isinstance(steps, (list, tuple)):
            raise ConfigError(where, f"steps must be a list of step tables, not {type(steps).__name__}")
        self.step_types: tuple[str, ...] = ()
        self.needs_cold_junction = False
        self.drops = False
        self.unit = unit
        self.calibration: Any = None
        self.life: Any = None
        built: list[tuple[Any, bool]] = [(k.FlagNonFinite(), False)]
        dropping_step: str | None = None
        for index, step in enumerate(steps):
            step_where = f"{where}[{index}]"
            if not isinstance(step, Mapping):
                raise ConfigError(step_where, f"a step must be a table, not {type(step).__name__}")
            step_type = step.get("type")
            if step_type not in STEP_TYPES:
                problem = "missing 'type'" if step_type is None else f"unknown step type {step_type!r}"
                raise ConfigError(f"{step_where}.type", f"{problem}; valid: {_quoted(STEP_TYPES)}")
            builder, keys = STEP_TYPES[step_type]
            reader = Table(step, step_where, ("type", *keys), context=f" for a {step_type!r} step")
            kernel, per_sample_cj, drops_points = builder(reader, k)
            reader.finish()
            if per_sample_cj and dropping_step is not None:
                # the CJ array is aligned with the input batch, not with survivors
                raise ConfigError(f"{step_where}.cold_junction",
                                  f"a per-sample cold junction must come before the "
                                  f"{dropping_step!r} step, which drops points")
            if isinstance(kernel, (k.Calibration, k.ThermocoupleLife)):
                role = "calibration" if isinstance(kernel, k.Calibration) else "life"
                if getattr(self, role) is not None:
                    raise ConfigError(f"{step_where}.type", f"a chain takes one {step_type!r} step")
                if dropping_step is not None:
                    # both follow each reading: calibration stamps it with its record, life counts its time
                    raise ConfigError(f"{step_where}.type", f"a {step_type!r} step must come before the "
                                                            f"{dropping_step!r} step, which drops points")
                setattr(self, role, kernel)
            if drops_points and dropping_step is None:
                dropping_step = step_type
            self.needs_cold_junction |= per_sample_cj
            self.drops |= drops_points
            built.append((kernel, per_sample_cj))
            self.step_types += (step_type,)
        self.kernels: tuple[Any, ...] = tuple(kernel for kernel, _cj in built)
        self.per_sample_cj: tuple[bool, ...] = tuple(cj for _kernel, cj in built)

    def process(self, times: Sequence[float], values: Sequence[float],
                quality: Sequence[int | str] | bytes | None = None,
                reasons: Sequence[int | str] | bytes | None = None,
                cold_junction: Sequence[float] | None = None) -> ChainResult:
        """Run one batch.  ``quality``/``reasons`` (codes or names, default
        good/"") carry incoming states such as node faults: a bad sample is
        passed through untouched with its reason.  ``cold_junction`` (°C per
        sample) is required by a "per-sample" thermocouple step."""
        t = array("d", times)
        v = array("d", values)
        n = len(v)
        if len(t) != n:
            raise ValueError(f"{len(t)} times for {n} values")
        q = _codes_buffer(quality, n, codes.QUALITY_NAMES, codes.quality_code, "quality")
        r = _codes_buffer(reasons, n, codes.REASON_NAMES, codes.reason_code, "reasons")
        cj = None
        if self.needs_cold_junction:
            if cold_junction is None:
                raise ValueError("this chain has a per-sample cold junction: pass cold_junction")
            cj = array("d", cold_junction)
            if len(cj) != n:
                raise ValueError(f"{len(cj)} cold-junction temperatures for {n} values")
        n = _pure_run_chain(self, t, v, q, r, cj)
        del t[n:], v[n:], q[n:], r[n:]
        return ChainResult(t, v, bytes(q), bytes(r))


def _codes_buffer(given: Any, n: int, names: Sequence[str], by_name: Any, what: str) -> bytearray:
    if given is None:
        return bytearray(n)
    if isinstance(given, (bytes, bytearray, memoryview)):
        buffer = bytearray(given)
    else:
        buffer = bytearray(by_name(x) if isinstance(x, str) else x for x in given)
    if len(buffer) != n:
        raise ValueError(f"{len(buffer)} {what} for {n} values")
    if buffer and max(buffer) >= len(names):
        raise ValueError(f"{what} code {max(buffer)} is not in the table (0..{len(names) - 1})")
    return buffer


# How far back (seconds) a step's state reaches into its input: an open
# aggregation window can have started up to a period before the latest sample
# (twice that, so the window before it closes too); an EMA with a time
# constant has forgotten what lies 5 of them back.  Steps whose memory is a
# number of samples (hampel, ema by alpha) or one value (deadband,
# rate_limit) are covered by MIN_WARMUP_S at the usual sample rates.
_MEMORY_S = {
    "aggregate": lambda step: 2.0 * float(step["period"]),
    "ema": lambda step: 5.0 * float(step.get("time_constant", 0.0)),
}
MIN_WARMUP_S = 60.0


def warmup_seconds(channels: Sequence[tuple[str, Sequence[Mapping[str, Any]]]]) -> float:
    """How much already processed input to run through the chains again at
    start (output discarded) so their state continues where it stopped: the
    longest memory (``_MEMORY_S``) of the configured (validated) steps, at
    least MIN_WARMUP_S; 0 without chains."""
    if not channels:
        return 0.0
    memories = [_MEMORY_S[step["type"]](step) for _, steps in channels for step in steps if step["type"] in _MEMORY_S]
    return max([MIN_WARMUP_S] + memories)


def chain_from_config(steps: Sequence[Mapping[str, Any]], where: str,
                      kernels: ModuleType | None = None, unit: str | None = None) -> Chain:
    """Build a Chain from a channel's parsed ``steps`` list; ``where`` names
    that list in the configuration (e.g. ``gateway.toml: channels."x".steps``)."""
    return Chain(steps, where, kernels, unit)
