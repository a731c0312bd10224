"""Quality and reason codes: the one table that gives the small integers the
kernels, the processed frames and the outputs use their names.

Quality codes are ordered by severity, so "worse" is simply "larger": a step
only ever raises a sample's quality code, never lowers it.  When a step raises
it, the step's reason replaces the old one; a step that finds a sample already
as bad as its own verdict leaves the first reason in place (the first cause is
the useful one to a field engineer).

Both kernel implementations (Cython and pure Python) read their codes from
here, so the two can never disagree on a number; the outbox stores quality
as these codes and every sink names them from ``QUALITY_NAMES``.
"""

QUALITY_NAMES = ("good", "uncertain", "bad")
GOOD = 0
UNCERTAIN = 1
BAD = 2

# code -> (name, meaning).  Append only: codes travel in stored data.
REASON_TABLE = (
    ("", "no reason: the sample is good"),
    ("node-fault", "the node reported the sensor or its bus in a fault state"),
    ("not-finite", "the value is NaN or infinite"),
    ("out-of-range", "outside the configured min/max of a range step"),
    ("emf-out-of-range", "thermocouple EMF outside the NIST inverse polynomial's range"),
    ("cj-out-of-range", "cold-junction temperature outside the NIST reference function's range"),
    ("wire-break", "loop current <= 3.6 mA (NAMUR NE43 failure, low)"),
    ("short-circuit", "loop current >= 21 mA (NAMUR NE43 failure, high)"),
    ("loop-under-range", "3.8 <= current < 4 mA: measured, below the span"),
    ("loop-over-range", "20 < current <= 20.5 mA: measured, above the span"),
    ("loop-fault-band-low", "3.6 < current < 3.8 mA: NE43 band between measuring and failure"),
    ("loop-fault-band-high", "20.5 < current < 21 mA: NE43 band between measuring and failure"),
    ("spike-replaced", "Hampel filter replaced an outlier by the window median"),
    ("rate-of-change", "changed faster than the configured max rate"),
    ("no-good-data", "aggregation window held no good or uncertain sample"),
    ("uncertain-inputs", "aggregation window included uncertain samples"),
    ("no-cold-junction", "per-sample cold junction: the frame has no <channel>.cj reading at that time"),
    ("calibration-due", "taken after the due date of the sensor's calibration record in force"),
    ("no-calibration", "the calibration step requires a record and none was in force at the reading's time"),
    ("sat-failed", "a system accuracy test failed and no new calibration has been recorded since"),
    ("usage-limit", "the thermocouple is past its usage limit (hours above a temperature or heat cycles)"),
    ("outside-calibration", "the reading lies outside the calibrated points (the nearest point's correction applied)"),
)
REASON_NAMES = tuple(name for name, _meaning in REASON_TABLE)

NONE = 0
NODE_FAULT = 1
NOT_FINITE = 2
OUT_OF_RANGE = 3
EMF_OUT_OF_RANGE = 4
CJ_OUT_OF_RANGE = 5
WIRE_BREAK = 6
SHORT_CIRCUIT = 7
LOOP_UNDER_RANGE = 8
LOOP_OVER_RANGE = 9
LOOP_FAULT_BAND_LOW = 10
LOOP_FAULT_BAND_HIGH = 11
SPIKE_REPLACED = 12
RATE_OF_CHANGE = 13
NO_GOOD_DATA = 14
UNCERTAIN_INPUTS = 15
NO_COLD_JUNCTION = 16
CALIBRATION_DUE = 17
NO_CALIBRATION = 18
SAT_FAILED = 19
USAGE_LIMIT = 20
OUTSIDE_CALIBRATION = 21

_QUALITY_BY_NAME = {name: code for code, name in enumerate(QUALITY_NAMES)}
_REASON_BY_NAME = {name: code for code, name in enumerate(REASON_NAMES)}


def quality_code(name: str) -> int:
    """``"bad"`` -> 2; raises ValueError naming the valid names."""
    try:
        return _QUALITY_BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown quality {name!r}; valid: {', '.join(QUALITY_NAMES)}") from None


def reason_code(name: str) -> int:
    """``"wire-break"`` -> 6; raises ValueError naming the valid names."""
    try:
        return _REASON_BY_NAME[name]
    except KeyError:
        valid = ", ".join(repr(n) for n in REASON_NAMES)
        raise ValueError(f"unknown reason {name!r}; valid: {valid}") from None
