"""Thermocouple life: what one sensor life has counted, as it is stored
(``LifeState``), and the default usage limits per thermocouple type.

The counting itself is the ``thermocouple_life`` kernel (kernels/pure.py
``ThermocoupleLife`` and its compiled twin); the processing stage stores
the kernel's state in the same transaction as the processed frames it
counted, so a crash never loses or repeats a count (book.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LifeDefaults:
    """The usage limits a ``thermocouple_life`` step takes for a type
    unless gateway.toml says otherwise."""

    kind: str
    metal: str  # "base" or "noble"
    above: float  # °C: hours are counted at or above it, and a heat cycle is a rise to it
    hours: float  # hours above ``above`` before "usage-limit"; 0: no limit
    cycles: int  # heat cycles before "usage-limit"; 0: no limit


# Hours: the recalibration interval pyrometry practice gives the class
# (AMS2750 Table 1: base metal sensors every 3 months, noble metal every
# 6), as if spent entirely at temperature -- a sensor that is hot only part
# of the time lasts longer.  "above": where the type starts to drift
# (base metal K, E, N from about 650 °C / 1200 °F; J's iron leg oxidises
# from about 540 °C; T's copper leg from about 200 °C; platinum types R, S
# from about 1100 °C, B from about 1200 °C).  No cycle limit: the number of
# uses AMS2750 allows depends on the sensor's role (load, SAT, TUS) and
# construction; set limit_cycles for those.  docs/processing.md shows
# these to the measurement engineer, who sets the limits their customer's
# specification imposes.
BASE_HOURS = 2190.0  # 3 months
NOBLE_HOURS = 4380.0  # 6 months

LIFE_DEFAULTS: dict[str, LifeDefaults] = {d.kind: d for d in (
    LifeDefaults("K", "base", 650.0, BASE_HOURS, 0),
    LifeDefaults("E", "base", 650.0, BASE_HOURS, 0),
    LifeDefaults("N", "base", 650.0, BASE_HOURS, 0),
    LifeDefaults("J", "base", 540.0, BASE_HOURS, 0),
    LifeDefaults("T", "base", 200.0, BASE_HOURS, 0),
    LifeDefaults("R", "noble", 1100.0, NOBLE_HOURS, 0),
    LifeDefaults("S", "noble", 1100.0, NOBLE_HOURS, 0),
    LifeDefaults("B", "noble", 1200.0, NOBLE_HOURS, 0),
)}


def _number(value: float) -> float | None:
    """JSON has no infinity: None stands for it."""
    return None if math.isinf(value) else value


def _back(value: float | None, infinity: float) -> float:
    return infinity if value is None else float(value)


@dataclass(frozen=True, slots=True)
class LifeState:
    """What a sensor life has counted (the kernel's ``state()``).  Times
    are Unix seconds; ``bands``: (lower edge °C, seconds) of the bands with
    time, ascending; ``life_start`` None: counted from its first reading;
    ``exceeded_at`` None: within its limits."""

    band: float
    cycle_above: float
    hysteresis: float
    limit_above: float
    max_gap: float
    life_start: float | None
    started: bool
    first_time: float
    last_time: float
    last_value: float
    seconds_above: float
    unaccounted: float
    cycles: int
    hot: bool
    peak: float
    peak_time: float
    exceeded_at: float | None
    bands: tuple[tuple[float, float], ...]

    @classmethod
    def of_kernel(cls, state: dict) -> LifeState:
        return cls(
            state["band"], state["cycle_above"], state["hysteresis"], state["limit_above"], state["max_gap"],
            _number(state["life_start"]), bool(state["started"]), state["first_time"], state["last_time"],
            state["last_value"], state["seconds_above"], state["unaccounted"], int(state["cycles"]), bool(state["hot"]),
            state["peak"], state["peak_time"], _number(state["exceeded_at"]),
            tuple(sorted((float(edge), float(seconds)) for edge, seconds in state["bands"].items())),
        )

    def for_kernel(self) -> dict:
        return {
            "band": self.band, "cycle_above": self.cycle_above, "hysteresis": self.hysteresis,
            "limit_above": self.limit_above, "max_gap": self.max_gap, "life_start": _back(self.life_start, -math.inf),
            "started": self.started, "first_time": self.first_time, "last_time": self.last_time,
            "last_value": self.last_value, "seconds_above": self.seconds_above, "unaccounted": self.unaccounted,
            "cycles": self.cycles, "hot": self.hot, "peak": self.peak, "peak_time": self.peak_time,
            "exceeded_at": _back(self.exceeded_at, math.inf), "bands": dict(self.bands),
        }

    def to_json(self) -> str:
        """Exact: Python writes floats so they read back bit for bit."""
        doc = {name: getattr(self, name) for name in self.__slots__}
        doc["bands"] = [list(pair) for pair in self.bands]
        return json.dumps(doc, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> LifeState:
        doc = json.loads(text)
        doc["bands"] = tuple((float(edge), float(seconds)) for edge, seconds in doc["bands"])
        return cls(**doc)

    @property
    def hours_above(self) -> float:
        return self.seconds_above / 3600.0

    def band_hours(self) -> list[tuple[float, float, float]]:
        """(from °C, to °C, hours) of every band with time."""
        return [(edge, edge + self.band, seconds / 3600.0) for edge, seconds in self.bands]
