"""Which sensors need a measurement engineer's attention: due for
calibration soon, overdue, failed a system accuracy test, or past a usage
limit.  One rule for everything that shows it (``smemet calibration due``,
``smemet nodes``), read from the stored records, so it works while the
gateway is stopped too."""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import schedule
from .records import CalibrationRecord, SatResult, Sensor, SensorLife, utc_text


@dataclass(frozen=True, slots=True)
class Attention:
    """A sensor and what about it needs attention.  ``state``: a
    schedule state (due-soon, overdue, sat-failed; "ok" or "none" when only
    its usage limit is passed); ``usage_limit_since``: Unix s, or None."""

    sensor: Sensor
    state: str
    record: CalibrationRecord | None
    due_in: float | None  # seconds until overdue (negative: overdue for that long)
    sat_failed_at: float | None
    usage_limit_since: float | None

    def as_dict(self) -> dict:
        """The JSON rows of ``smemet calibration due --json`` and ``smemet nodes --json``."""
        return {"sensor": str(self.sensor), "state": self.state,
                "record": self.record.id if self.record else None,
                "due": self.record.due if self.record else None,
                "due_in_days": None if self.due_in is None else round(self.due_in / 86400.0, 2),
                "sat_failed_at": utc_text(self.sat_failed_at) or None,
                "usage_limit_since": utc_text(self.usage_limit_since) or None}

    def summary(self) -> str:
        """One short phrase for a table cell: "tc_s overdue 3 d", "tc_b due in 12 d"."""
        parts = []  # whole days: a due date 9 calendar days ahead is "due in 9 d" until its end
        if self.state == schedule.DUE_SOON and self.due_in is not None:
            parts.append(f"due in {math.floor(self.due_in / 86400.0)} d")
        elif self.state == schedule.OVERDUE and self.due_in is not None:
            parts.append(f"overdue {math.floor(-self.due_in / 86400.0)} d")
        elif self.state == schedule.SAT_FAILED:
            parts.append("SAT failed")
        if self.usage_limit_since is not None:
            parts.append("usage limit")
        return f"{self.sensor.channel} " + ", ".join(parts)


def needing_attention(records: list[CalibrationRecord], sats: list[SatResult], lives: list[SensorLife],
                      now: float, within: float) -> list[Attention]:
    """Every sensor needing attention, by name; ``within``: seconds before
    a due date from which it is due soon."""
    sensors = sorted({r.sensor for r in records} | {life.sensor for life in lives}, key=str)
    out = []
    for sensor in sensors:
        status = schedule.status(sensor, [r for r in records if r.sensor == sensor],
                                 [s for s in sats if s.sensor == sensor], now, within)
        current = [life for life in lives if life.sensor == sensor][-1:]
        state = current[0].state if current else None
        over = state.exceeded_at if state is not None else None
        if status.state in (schedule.OK, schedule.NONE) and over is None:
            continue
        out.append(Attention(sensor, status.state, status.record, status.due_in, status.sat_failed_at, over))
    return out
