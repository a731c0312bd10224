"""Pure-Python reference twin of ``_kernels.pyx``.

Every kernel is a small class built from its parameters, whose
``process(times, values, quality, reason)`` works in place on one batch:
``times``/``values`` hold floats (array('d') or a memoryview of one),
``quality``/``reason`` small ints (bytearray).  It returns the number of
surviving points, which it has moved to the front of the buffers; kernels that
never drop points return ``len(values)``.  State (filter memory, open windows)
lives on the instance, so a stream split into batches gives the result of one
batch.

Shared rules:
- a sample that arrives ``BAD`` is not touched: no arithmetic, no state update,
  its reason kept (deadband and aggregation still decide whether it is output);
- a kernel only raises a quality (see ``codes``); its value stays the step's
  input when the kernel rejects it, so the raw reading remains visible;
- kernels expect finite values; the chain's ``FlagNonFinite`` runs first.

This module is the specification; the Cython twin must match it exactly.
"""

import math
from array import array

from .. import quality as codes
from . import its90
from .batch import origins, process_frames, run_chain  # noqa: F401 - the batch runner's twin

_GOOD = codes.GOOD
_UNCERTAIN = codes.UNCERTAIN
_BAD = codes.BAD

IMPLEMENTATION = "pure"


def _length(times, values, quality, reason):
    n = len(values)
    if len(times) != n or len(quality) != n or len(reason) != n:
        raise ValueError("times, values, quality and reason must have the same length")
    return n


def _horner(coefficients, x):
    acc = 0.0
    for c in reversed(coefficients):
        acc = acc * x + c
    return acc


def _lower_to(quality, reason, i, new_quality, new_reason):
    """Raise sample i to ``new_quality`` unless it is already as bad."""
    if new_quality > quality[i]:
        quality[i] = new_quality
        reason[i] = new_reason


def _median_of_sorted(s):
    n = len(s)
    h = n // 2
    if n % 2:
        return s[h]
    return 0.5 * (s[h - 1] + s[h])


class FlagNonFinite:
    """NaN or infinite value or time -> bad "not-finite"."""

    def process(self, times, values, quality, reason):
        n = _length(times, values, quality, reason)
        for i in range(n):
            if quality[i] != _BAD and not (math.isfinite(values[i]) and math.isfinite(times[i])):
                quality[i] = _BAD
                reason[i] = codes.NOT_FINITE
        return n


class Linear:
    """value * gain + offset."""

    def __init__(self, gain, offset):
        self.gain = float(gain)
        self.offset = float(offset)

    def process(self, times, values, quality, reason):
        n = _length(times, values, quality, reason)
        for i in range(n):
            if quality[i] != _BAD:
                values[i] = values[i] * self.gain + self.offset
        return n


class Polynomial:
    """c0 + c1*x + c2*x**2 + ... (ascending coefficients)."""

    def __init__(self, coefficients):
        self.coefficients = tuple(float(c) for c in coefficients)
        if not self.coefficients:
            raise ValueError("a polynomial needs at least one coefficient")

    def process(self, times, values, quality, reason):
        n = _length(times, values, quality, reason)
        for i in range(n):
            if quality[i] != _BAD:
                values[i] = _horner(self.coefficients, values[i])
        return n


def celsius_to_emf(tc_type, celsius):
    """NIST reference function E(t) in mV; ValueError outside its range."""
    for t_min, t_max, coefficients in its90.FORWARD[tc_type]:
        if t_min <= celsius <= t_max:
            emf = _horner(coefficients, celsius)
            if tc_type == "K" and celsius > 0.0:
                a0, a1, a2 = its90.K_EXPONENTIAL
                d = celsius - a2
                emf += a0 * math.exp(a1 * d * d)
            return emf
    raise ValueError(f"{celsius} °C outside the type {tc_type} reference function")


def emf_to_celsius(tc_type, emf):
    """NIST inverse polynomial t(E) in °C; ValueError outside its range."""
    for emf_min, emf_max, coefficients, _err_min, _err_max in its90.INVERSE[tc_type]:
        if emf_min <= emf <= emf_max:
            return _horner(coefficients, emf)
    raise ValueError(f"{emf} mV outside the type {tc_type} inverse polynomial")


class Thermocouple:
    """EMF (mV) -> °C with cold-junction compensation: E = E_measured +
    E_ref(t_cj), then the inverse polynomial.  ``cold_junction`` is the
    constant CJ temperature; ``process`` takes an optional per-sample array
    that overrides it."""

    def __init__(self, tc_type, cold_junction):
        if tc_type not in its90.FORWARD:
            raise ValueError(f"unknown thermocouple type {tc_type!r}")
        self.tc_type = tc_type
        self.cold_junction = float(cold_junction)

    def process(self, times, values, quality, reason, cold_junction=None):
        n = _length(times, values, quality, reason)
        if cold_junction is not None and len(cold_junction) != n:
            raise ValueError("cold_junction must have one temperature per sample")
        for i in range(n):
            if quality[i] == _BAD:
                continue
            cj = self.cold_junction if cold_junction is None else cold_junction[i]
            try:
                cj_emf = celsius_to_emf(self.tc_type, cj)
            except ValueError:
                _lower_to(quality, reason, i, _BAD, codes.CJ_OUT_OF_RANGE)
                continue
            try:
                values[i] = emf_to_celsius(self.tc_type, values[i] + cj_emf)
            except ValueError:
                _lower_to(quality, reason, i, _BAD, codes.EMF_OUT_OF_RANGE)
        return n


class CurrentLoop:
    """4-20 mA -> engineering units (lrv at 4 mA, urv at 20 mA), quality by
    NAMUR NE43.  Measured samples (3.6 < I < 21 mA) are scaled linearly, even
    outside 4-20; failure signals keep their raw mA."""

    def __init__(self, lrv, urv):
        self.lrv = float(lrv)
        self.urv = float(urv)

    def process(self, times, values, quality, reason):
        n = _length(times, values, quality, reason)
        scale = (self.urv - self.lrv) / 16.0
        for i in range(n):
            if quality[i] == _BAD:
                continue
            ma = values[i]
            if ma <= 3.6:
                _lower_to(quality, reason, i, _BAD, codes.WIRE_BREAK)
                continue
            if ma >= 21.0:
                _lower_to(quality, reason, i, _BAD, codes.SHORT_CIRCUIT)
                continue
            if ma < 3.8:
                _lower_to(quality, reason, i, _UNCERTAIN, codes.LOOP_FAULT_BAND_LOW)
            elif ma < 4.0:
                _lower_to(quality, reason, i, _UNCERTAIN, codes.LOOP_UNDER_RANGE)
            elif ma > 20.5:
                _lower_to(quality, reason, i, _UNCERTAIN, codes.LOOP_FAULT_BAND_HIGH)
            elif ma > 20.0:
                _lower_to(quality, reason, i, _UNCERTAIN, codes.LOOP_OVER_RANGE)
            values[i] = self.lrv + (ma - 4.0) * scale
        return n


class RangeCheck:
    """Outside [minimum, maximum] -> bad "out-of-range" (bounds inclusive)."""

    def __init__(self, minimum, maximum):
        self.minimum = float(minimum)
        self.maximum = float(maximum)

    def process(self, times, values, quality, reason):
        n = _length(times, values, quality, reason)
        for i in range(n):
            if quality[i] != _BAD and not (self.minimum <= values[i] <= self.maximum):
                _lower_to(quality, reason, i, _BAD, codes.OUT_OF_RANGE)
        return n


class Hampel:
    """Causal Hampel identifier.  The window is the current sample and the
    ``window - 1`` non-bad samples before it (raw values, spikes included).  A
    sample farther than ``threshold * 1.4826 * MAD`` from the window median is
    replaced by the median and flagged uncertain "spike-replaced".  Until the
    window has filled, samples pass unchanged."""

    MAD_TO_SIGMA = 1.4826

    def __init__(self, window, threshold):
        if window < 3:
            raise ValueError("Hampel window must be at least 3 samples")
        self.window = int(window)
        self.threshold = float(threshold)
        self.history = []  # raw values, oldest first

    def process(self, times, values, quality, reason):
        n = _length(times, values, quality, reason)
        limit_scale = self.threshold * self.MAD_TO_SIGMA
        for i in range(n):
            if quality[i] == _BAD:
                continue
            x = values[i]
            self.history.append(x)
            if len(self.history) > self.window:
                del self.history[0]
            if len(self.history) < self.window:
                continue
            ordered = sorted(self.history)
            median = _median_of_sorted(ordered)
            mad = _median_of_sorted(sorted(abs(v - median) for v in ordered))
            if abs(x - median) > limit_scale * mad:
                values[i] = median + 0.0  # -0.0 and 0.0 sort as equals: always the same zero
                _lower_to(quality, reason, i, _UNCERTAIN, codes.SPIKE_REPLACED)
        return n


class Deadband:
    """Report by exception.  A sample is output when it is the first, when
    |value - last output value| > max(absolute, percent/100 * |last output
    value|), when its quality or reason differs from the last output, or when
    ``max_silence`` seconds (0 = never) have passed since the last output.
    Bad samples never become the reference value."""

    def __init__(self, absolute, percent, max_silence):
        self.absolute = float(absolute)
        self.percent = float(percent)
        self.max_silence = float(max_silence)
        self.started = False
        self.last_value = 0.0
        self.last_time = 0.0
        self.last_quality = 0
        self.last_reason = 0

    def process(self, times, values, quality, reason):
        kept = 0
        for i in range(_length(times, values, quality, reason)):
            t, v, q, r = times[i], values[i], quality[i], reason[i]
            emit = not self.started or q != self.last_quality or r != self.last_reason
            if not emit and self.max_silence > 0.0 and t - self.last_time >= self.max_silence:
                emit = True
            if not emit and q != _BAD:
                band = max(self.absolute, self.percent * 0.01 * abs(self.last_value))
                emit = abs(v - self.last_value) > band
            if not emit:
                continue
            if q != _BAD:
                self.last_value = v
            self.started = True
            self.last_time = t
            self.last_quality = q
            self.last_reason = r
            times[kept], values[kept], quality[kept], reason[kept] = t, v, q, r
            kept += 1
        return kept


# Ema recomputes a time-constant alpha only when the sample spacing changes by
# more than this fraction: regular sampling then costs no exp() per sample, and
# alpha is off by at most ~1 ppm of itself.
ALPHA_REUSE = 1e-6


class Ema:
    """Exponential moving average y += alpha * (x - y).  With a time
    constant tau (> 0) alpha follows the sample spacing:
    alpha = 1 - exp(-dt / tau) (recomputed when dt changes by more than
    ``ALPHA_REUSE``); samples not later than the previous one leave y
    unchanged.  The first sample initialises y."""

    def __init__(self, alpha, time_constant):
        self.alpha = float(alpha)
        self.time_constant = float(time_constant)
        self.started = False
        self.y = 0.0
        self.last_time = 0.0
        self.alpha_dt = -1.0  # the spacing cached_alpha was computed for
        self.cached_alpha = 0.0

    def process(self, times, values, quality, reason):
        n = _length(times, values, quality, reason)
        for i in range(n):
            if quality[i] == _BAD:
                continue
            t = times[i]
            if not self.started:
                self.started = True
                self.y = values[i]
            else:
                if self.time_constant > 0.0:
                    dt = t - self.last_time
                    if dt <= 0.0:
                        alpha = 0.0
                    else:
                        if abs(dt - self.alpha_dt) > ALPHA_REUSE * self.alpha_dt:
                            self.alpha_dt = dt
                            self.cached_alpha = -math.expm1(-dt / self.time_constant)
                        alpha = self.cached_alpha
                else:
                    alpha = self.alpha
                self.y = self.y + alpha * (values[i] - self.y)
            self.last_time = t
            values[i] = self.y
        return n


class RateLimit:
    """A sample that differs from the last accepted sample by more than
    ``max_rate * dt`` is flagged (``flag_quality``, default bad) with reason
    "rate-of-change" and does not become the reference, so a genuine step is
    accepted once enough time has passed to make it plausible."""

    def __init__(self, max_rate, flag_quality):
        self.max_rate = float(max_rate)
        self.flag_quality = int(flag_quality)
        self.started = False
        self.ref_time = 0.0
        self.ref_value = 0.0

    def process(self, times, values, quality, reason):
        n = _length(times, values, quality, reason)
        for i in range(n):
            if quality[i] == _BAD:
                continue
            t, v = times[i], values[i]
            if self.started and abs(v - self.ref_value) > self.max_rate * (t - self.ref_time):
                _lower_to(quality, reason, i, self.flag_quality, codes.RATE_OF_CHANGE)
                continue
            self.started = True
            self.ref_time = t
            self.ref_value = v
        return n


AGGREGATE_FUNCTIONS = ("min", "max", "mean", "count")


class Aggregate:
    """Windowed aggregation over periods aligned to multiples of ``period``
    seconds (since the epoch).  A window closes when the first sample of a
    later window arrives; it is output as one point stamped with the window's
    start.  Bad samples are left out of the statistic; a window with only bad
    samples is output bad "no-good-data" (value NaN, count 0); one including
    uncertain samples is uncertain "uncertain-inputs".  Samples older than the
    open window, or whose time is not finite, are dropped and counted in
    ``dropped``."""

    def __init__(self, period, function):
        if function not in AGGREGATE_FUNCTIONS:
            raise ValueError(f"unknown aggregate function {function!r}")
        self.period = float(period)
        self.function = AGGREGATE_FUNCTIONS.index(function)
        self.dropped = 0
        self.open = False
        self.index = 0.0
        self._reset()

    def _reset(self):
        self.count = 0
        self.uncertain = 0
        self.total = 0.0
        self.low = math.inf
        self.high = -math.inf

    def _result(self):
        if self.count == 0:
            return (0.0 if self.function == 3 else math.nan), _BAD, codes.NO_GOOD_DATA
        if self.function == 0:
            value = self.low
        elif self.function == 1:
            value = self.high
        elif self.function == 2:
            value = self.total / self.count
        else:
            value = float(self.count)
        if self.uncertain:
            return value, _UNCERTAIN, codes.UNCERTAIN_INPUTS
        return value, _GOOD, codes.NONE

    def process(self, times, values, quality, reason):
        kept = 0
        for i in range(_length(times, values, quality, reason)):
            t, v, q = times[i], values[i], quality[i]
            index = t / self.period
            if not math.isfinite(index):
                self.dropped += 1
                continue
            index = math.floor(index)
            if self.open and index < self.index:
                self.dropped += 1
                continue
            if self.open and index > self.index:
                out_value, out_quality, out_reason = self._result()
                times[kept] = self.index * self.period
                values[kept] = out_value
                quality[kept] = out_quality
                reason[kept] = out_reason
                kept += 1
                self._reset()
            self.open = True
            self.index = index
            if q == _BAD:
                continue
            self.count += 1
            self.total += v
            if v < self.low:
                self.low = v
            if v > self.high:
                self.high = v
            if q == _UNCERTAIN:
                self.uncertain += 1
        return kept


class _Entry:
    """One calibration record's span in a Calibration schedule."""

    __slots__ = ("start", "end", "overdue_from", "sat_failed_from", "gain", "offset", "points")

    def __init__(self, start, end, overdue_from, sat_failed_from, gain, offset, points):
        self.start = start
        self.end = end
        self.overdue_from = overdue_from
        self.sat_failed_from = sat_failed_from
        self.gain = gain
        self.offset = offset
        self.points = points


def schedule_entries(entries):
    """Check a schedule (objects with ``start``, ``end``, ``overdue_from``,
    ``sat_failed_from``, ``gain``, ``offset``, ``points`` and ``record_id``,
    in ascending ``start``, spans not overlapping) and return it as
    (entries, ids).  Shared by both twins so they refuse the same input."""
    checked = []
    ids = []
    previous_end = -math.inf
    for e in entries:
        start, end = float(e.start), float(e.end)
        if not start < end or start < previous_end:
            raise ValueError("calibration schedule spans must be ascending and must not overlap")
        points = tuple((float(x), float(c)) for x, c in e.points)
        if len(points) == 1 or any(not a[0] < b[0] for a, b in zip(points, points[1:])):
            raise ValueError("calibration points: none, or at least two in ascending order")
        checked.append(_Entry(start, end, float(e.overdue_from), float(e.sat_failed_from), float(e.gain),
                              float(e.offset), points))
        ids.append(str(e.record_id))
        previous_end = end
    return tuple(checked), tuple(ids)


def _interpolate(points, x):
    """The correction at reading ``x`` (linear between points; outside them
    the nearest point's) and whether ``x`` lies outside."""
    if x < points[0][0]:
        return points[0][1], True
    last = len(points) - 1
    if x > points[last][0]:
        return points[last][1], True
    for j in range(last):
        x1, c1 = points[j + 1]
        if x <= x1:
            x0, c0 = points[j]
            return c0 + (c1 - c0) * ((x - x0) / (x1 - x0)), False
    return points[last][1], False  # not reached: x <= the last point


class Calibration:
    """Corrections from calibration records, each applied to the readings
    taken while it was in force: ``set_schedule`` gives the spans
    [start, end) with each record's correction (value * gain + offset, plus
    the correction interpolated over ``points``, in the reading), the
    moment it became overdue and the moment a system accuracy test failed
    (inf: never).  A reading in no span is left as it is (quality
    ``missing_quality`` "no-calibration" when a record is required, GOOD:
    not required); one past its record's due date gets ``overdue_quality``
    "calibration-due", one after a failed test ``sat_failed_quality``
    "sat-failed", one outside the points uncertain "outside-calibration".

    ``applied[i]`` says which schedule entry corrected sample i of the last
    batch (-1: none) and ``ids`` names the entries: the batch runner stamps
    each measurement with the record applied to it."""

    def __init__(self, overdue_quality, sat_failed_quality, missing_quality):
        self.overdue_quality = int(overdue_quality)
        self.sat_failed_quality = int(sat_failed_quality)
        self.missing_quality = int(missing_quality)
        self.entries = ()
        self.ids = ()
        self.applied = array("q")

    def set_schedule(self, entries):
        self.entries, self.ids = schedule_entries(entries)

    def reserve(self, n):
        """(The compiled twin sizes its ``applied`` buffer here.)"""

    def entry_at(self, t):
        """The entry in force at time ``t``, or -1 (the last one starting
        at or before ``t``, if ``t`` is before its end)."""
        entries = self.entries
        for k in range(len(entries) - 1, -1, -1):
            if entries[k].start <= t:
                return k if t < entries[k].end else -1
        return -1

    def process(self, times, values, quality, reason):
        n = _length(times, values, quality, reason)
        applied = self.applied = array("q", [-1]) * n
        for i in range(n):
            if quality[i] == _BAD:
                continue
            t = times[i]
            k = self.entry_at(t)
            if k < 0:
                if self.missing_quality:
                    _lower_to(quality, reason, i, self.missing_quality, codes.NO_CALIBRATION)
                continue
            e = self.entries[k]
            x = values[i]
            y = x * e.gain + e.offset
            outside = False
            if e.points:
                correction, outside = _interpolate(e.points, x)
                y = y + correction
            values[i] = y
            applied[i] = k
            if t >= e.overdue_from:
                _lower_to(quality, reason, i, self.overdue_quality, codes.CALIBRATION_DUE)
            if t >= e.sat_failed_from:
                _lower_to(quality, reason, i, self.sat_failed_quality, codes.SAT_FAILED)
            if outside:
                _lower_to(quality, reason, i, _UNCERTAIN, codes.OUTSIDE_CALIBRATION)
        return n


# Time at temperature is kept in bands over this span (°C); readings beyond
# it count in the first or last band.
LIFE_LOW_C = -300.0
LIFE_HIGH_C = 2000.0


class ThermocoupleLife:
    """Usage of one thermocouple's current life, accumulated from its
    readings (°C): seconds in bands of ``band`` °C, seconds at or above
    ``limit_above``, heat cycles (a rise to ``cycle_above`` or more after
    having been below ``cycle_above - hysteresis``), the peak.

    Between two consecutive readings the time is credited to the earlier
    one's temperature; a gap longer than ``max_gap`` seconds is not credited
    (the temperature in between is unknown) but added to ``unaccounted``.
    A reading counts once: only readings later than the last one counted
    (and not before ``life_start``), and only while ``counting`` (warm-up
    runs with it off) -- so a batch run again after a crash, or a reading
    repeated, never counts twice.  Bad readings are not counted.

    Past a limit (``limit_seconds`` above ``limit_above``, ``limit_cycles``
    cycles; 0: none) every reading from ``exceeded_at`` on gets
    ``over_quality`` "usage-limit".  ``state()``/``load(state)`` give and
    restore what is counted (the processing stage stores it with the
    processed frames); ``changed`` says it moved since it was last taken."""

    def __init__(self, band, cycle_above, hysteresis, limit_above, limit_seconds, limit_cycles, over_quality, max_gap):
        if not band > 0.0:
            raise ValueError("the band width must be greater than 0")
        self.limit_seconds = float(limit_seconds)
        self.limit_cycles = int(limit_cycles)
        self.over_quality = int(over_quality)
        self.counting = True
        self.changed = False
        self._counted_as(float(band), float(cycle_above), float(hysteresis), float(limit_above), float(max_gap))
        self.reset(-math.inf)

    def _counted_as(self, band, cycle_above, hysteresis, limit_above, max_gap):
        self.band = band
        self.cycle_above = cycle_above
        self.hysteresis = hysteresis
        self.limit_above = limit_above
        self.max_gap = max_gap
        self.first_band = math.floor(LIFE_LOW_C / band)
        self.n_bands = math.floor(LIFE_HIGH_C / band) - self.first_band + 1

    def reset(self, life_start):
        """A new life from ``life_start`` (Unix s; -inf: from the first reading)."""
        self.life_start = float(life_start)
        self.bands = [0.0] * self.n_bands
        self.seconds_above = 0.0
        self.unaccounted = 0.0
        self.cycles = 0
        self.hot = False
        self.started = False
        self.first_time = 0.0
        self.last_time = 0.0
        self.last_value = 0.0
        self.peak = 0.0
        self.peak_time = 0.0
        self.exceeded_at = math.inf
        self.changed = True

    def band_of(self, celsius):
        k = math.floor(celsius / self.band) - self.first_band
        if k < 0:
            return 0
        if k > self.n_bands - 1:
            return self.n_bands - 1
        return int(k)

    def _check_limits(self, t):
        if self.exceeded_at == math.inf and (
                (self.limit_seconds > 0.0 and self.seconds_above > self.limit_seconds)
                or (self.limit_cycles > 0 and self.cycles > self.limit_cycles)):
            self.exceeded_at = t

    def process(self, times, values, quality, reason):
        n = _length(times, values, quality, reason)
        for i in range(n):
            if quality[i] == _BAD:
                continue
            t = times[i]
            if self.counting and t >= self.life_start and (not self.started or t > self.last_time):
                x = values[i]
                if self.started:
                    dt = t - self.last_time
                    if dt <= self.max_gap:
                        k = self.band_of(self.last_value)
                        self.bands[k] = self.bands[k] + dt
                        if self.last_value >= self.limit_above:
                            self.seconds_above = self.seconds_above + dt
                    else:
                        self.unaccounted = self.unaccounted + dt
                else:
                    self.first_time = t
                if not self.started or x > self.peak:
                    self.peak = x
                    self.peak_time = t
                if self.hot:
                    if x < self.cycle_above - self.hysteresis:
                        self.hot = False
                elif x >= self.cycle_above:
                    self.hot = True
                    self.cycles += 1
                self.started = True
                self.last_time = t
                self.last_value = x
                self.changed = True
                self._check_limits(t)
            if t >= self.exceeded_at:
                _lower_to(quality, reason, i, self.over_quality, codes.USAGE_LIMIT)
        return n

    def state(self):
        """What is counted, as a dict of numbers (bands: lower edge °C ->
        seconds, the bands with time only)."""
        return {
            "band": self.band, "cycle_above": self.cycle_above, "hysteresis": self.hysteresis,
            "limit_above": self.limit_above, "max_gap": self.max_gap, "life_start": self.life_start,
            "started": self.started, "first_time": self.first_time, "last_time": self.last_time,
            "last_value": self.last_value, "seconds_above": self.seconds_above, "unaccounted": self.unaccounted,
            "cycles": self.cycles, "hot": self.hot, "peak": self.peak, "peak_time": self.peak_time,
            "exceeded_at": self.exceeded_at,
            "bands": {(k + self.first_band) * self.band: s for k, s in enumerate(self.bands) if s},
        }

    def load(self, state):
        """Continue a life from ``state()``: what it counts (band width,
        temperatures) stays as it started; the limits are this kernel's."""
        self._counted_as(float(state["band"]), float(state["cycle_above"]), float(state["hysteresis"]),
                         float(state["limit_above"]), float(state["max_gap"]))
        self.reset(state["life_start"])
        for edge, seconds in state["bands"].items():
            self.bands[self.band_of(float(edge) + 0.5 * self.band)] = float(seconds)
        self.started = bool(state["started"])
        self.first_time = float(state["first_time"])
        self.last_time = float(state["last_time"])
        self.last_value = float(state["last_value"])
        self.seconds_above = float(state["seconds_above"])
        self.unaccounted = float(state["unaccounted"])
        self.cycles = int(state["cycles"])
        self.hot = bool(state["hot"])
        self.peak = float(state["peak"])
        self.peak_time = float(state["peak_time"])
        self.exceeded_at = math.inf
        if self.started:
            self._check_limits(self.last_time)
            if self.exceeded_at != math.inf:
                self.exceeded_at = min(self.last_time, float(state["exceeded_at"]))
        self.changed = False
