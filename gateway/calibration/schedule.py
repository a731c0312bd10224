"""Which calibration record is in force when, and what that means for a
sensor now: the one place these rules live (the calibration kernel runs
the schedule, the command line and the console show the status).

* A sensor's records follow each other: each is in force from its
  ``valid_from`` until the next one's, or until it is retired.  A record
  retired before it came into force (withdrawn) never is.
* A failed system accuracy test marks every reading from the test on, for
  as long as the record it was done under stays in force: a new record
  (a new calibration) ends it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .records import CalibrationRecord, SatResult, Sensor

DUE_SOON = "due-soon"
OVERDUE = "overdue"
SAT_FAILED = "sat-failed"
OK = "ok"
NONE = "none"  # no record in force
STATES = (OK, DUE_SOON, OVERDUE, SAT_FAILED, NONE)


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    """What the calibration kernel reads of one record's span (the
    attributes kernels/pure.py ``schedule_entries`` names)."""

    record_id: str
    start: float
    end: float  # inf while no later record or retirement ends it
    overdue_from: float
    sat_failed_from: float  # inf: no failed test in this span
    gain: float
    offset: float
    points: tuple[tuple[float, float], ...]


def spans(records: Iterable[CalibrationRecord]) -> list[tuple[CalibrationRecord, float, float]]:
    """(record, start, end) of one sensor's records in force, in time order."""
    ordered = sorted((r for r in records if not r.withdrawn), key=lambda r: r.valid_from)
    out = []
    for k, record in enumerate(ordered):
        end = ordered[k + 1].valid_from if k + 1 < len(ordered) else math.inf
        if record.retired_at is not None:
            end = min(end, record.retired_at)
        if record.valid_from < end:
            out.append((record, record.valid_from, end))
    return out


def first_failure(record: CalibrationRecord, sats: Iterable[SatResult]) -> float:
    """When the first failed test under ``record`` was done (inf: none)."""
    return min((s.at for s in sats if s.record == record.id and not s.passed), default=math.inf)


def schedule(records: Iterable[CalibrationRecord], sats: Sequence[SatResult]) -> tuple[ScheduleEntry, ...]:
    """One sensor's schedule for its calibration kernel."""
    return tuple(
        ScheduleEntry(record.id, start, end, record.overdue_from, max(start, first_failure(record, sats)),
                      record.correction.kernel_gain, record.correction.kernel_offset, record.correction.points)
        for record, start, end in spans(records)
    )


def in_force(records: Iterable[CalibrationRecord], moment: float) -> CalibrationRecord | None:
    for record, start, end in spans(records):
        if start <= moment < end:
            return record
    return None


@dataclass(frozen=True, slots=True)
class SensorStatus:
    """A sensor's calibration now: ``state`` (STATES), the record in force
    (None: none), seconds until it is overdue (negative: overdue for that
    long), when a failed test marked it."""

    sensor: Sensor
    state: str
    record: CalibrationRecord | None
    due_in: float | None
    sat_failed_at: float | None

    @property
    def due_in_days(self) -> float | None:
        return None if self.due_in is None else self.due_in / 86400.0


def status(sensor: Sensor, records: Sequence[CalibrationRecord], sats: Sequence[SatResult], now: float,
           warning: float) -> SensorStatus:
    """``warning``: seconds before the due date from which it is "due-soon"."""
    record = in_force(records, now)
    if record is None:
        return SensorStatus(sensor, NONE, None, None, None)
    failed = first_failure(record, sats)
    failed_at = failed if failed <= now else None
    due_in = record.overdue_from - now
    if failed_at is not None:
        state = SAT_FAILED
    elif due_in <= 0:
        state = OVERDUE
    elif due_in <= warning:
        state = DUE_SOON
    else:
        state = OK
    return SensorStatus(sensor, state, record, due_in, failed_at)
