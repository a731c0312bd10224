"""Calibration records, system accuracy tests and sensor lives as values:
frozen, validated on the way in, with the parsing of what people type
(dates, corrections) and the one-line errors for what is wrong.  No I/O:
store.py keeps them, schedule.py says which is in force when.

Conventions, as on calibration certificates and in pyrometry practice:

* a **correction** is what is *added* to the reading to get the true value
  (the error with its sign reversed); ``points`` give it at several
  readings, linearly interpolated between them; ``linear`` is
  ``reading * gain + offset`` (a loop or transmitter calibrated as a line);
* the **expanded uncertainty** is for a coverage factor k = 2, in the
  channel's unit;
* a record is in force from ``valid_from`` until its sensor's next record
  takes over or it is retired; it is **overdue** from the start of the day
  after its due date (local time where it was entered): a reading taken on
  the due date is still within it.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import GatewayError

CORRECTION_KINDS = ("offset", "points", "linear")
MAX_POINTS = 64
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/#+-]{0,63}$")


class RecordError(GatewayError):
    """A calibration record, test or command is wrong; the message says
    what and what would be right (one line, for the command line)."""


@dataclass(frozen=True, slots=True)
class Sensor:
    node: str
    channel: str

    def __str__(self) -> str:
        return f"{self.node}/{self.channel}"

    @classmethod
    def parse(cls, text: str) -> Sensor:
        node, slash, channel = text.partition("/")
        if not slash or not node or not channel or any(c in text for c in "*?[]"):
            raise RecordError(f"{text!r} is not a sensor: give node/channel as the node sends it, e.g. furnace-1/tc_s")
        return cls(node, channel)


@dataclass(frozen=True, slots=True)
class Correction:
    """What a record adds to a reading (see the module docstring)."""

    kind: str  # CORRECTION_KINDS
    offset: float = 0.0
    gain: float = 1.0
    points: tuple[tuple[float, float], ...] = ()  # (reading, correction), ascending readings

    def __post_init__(self) -> None:
        if self.kind not in CORRECTION_KINDS:
            raise RecordError(f"unknown correction kind {self.kind!r}; valid: {', '.join(CORRECTION_KINDS)}")
        if not (math.isfinite(self.offset) and math.isfinite(self.gain)):
            raise RecordError("a correction must be a finite number")
        if self.kind == "points":
            if not 2 <= len(self.points) <= MAX_POINTS:
                raise RecordError(f"correction points: give 2 to {MAX_POINTS} reading:correction pairs "
                                  "(one correction for every reading is --offset)")
            for (x0, _c0), (x1, _c1) in zip(self.points, self.points[1:]):
                if not x0 < x1:
                    raise RecordError(f"correction points must be in ascending order of reading: {x1:g} after {x0:g}")
            if not all(math.isfinite(x) and math.isfinite(c) for x, c in self.points):
                raise RecordError("correction points must be finite numbers")
        elif self.points:
            raise RecordError(f"a {self.kind} correction has no points")
        if self.kind == "offset" and self.gain != 1.0:
            raise RecordError("an offset correction has no gain (use a linear one)")
        if self.kind == "linear" and self.gain == 0.0:
            raise RecordError("a linear correction's gain must not be 0")

    @property
    def kernel_gain(self) -> float:
        return self.gain if self.kind == "linear" else 1.0

    @property
    def kernel_offset(self) -> float:
        return 0.0 if self.kind == "points" else self.offset

    def text(self) -> str:
        if self.kind == "offset":
            return f"{self.offset:+g}"
        if self.kind == "linear":
            return f"x*{self.gain:g}{self.offset:+g}"
        return " ".join(f"{x:g}:{c:+g}" for x, c in self.points)

    def to_json(self) -> dict:
        if self.kind == "offset":
            return {"kind": "offset", "offset": self.offset}
        if self.kind == "linear":
            return {"kind": "linear", "gain": self.gain, "offset": self.offset}
        return {"kind": "points", "points": [[x, c] for x, c in self.points]}

    @classmethod
    def from_json(cls, doc: dict) -> Correction:
        try:
            kind = doc["kind"]
            if kind == "points":
                return cls("points", points=tuple((float(x), float(c)) for x, c in doc["points"]))
            return cls(kind, offset=float(doc.get("offset", 0.0)), gain=float(doc.get("gain", 1.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"correction {doc!r} is not readable ({exc})") from None

    def corrected(self, reading: float) -> float:
        """The corrected reading, as the calibration step computes it (for
        previews and SAT arithmetic; the kernels are the implementation)."""
        value = reading * self.kernel_gain + self.kernel_offset
        if self.kind != "points":
            return value
        points = self.points
        if reading <= points[0][0]:
            return value + points[0][1]
        for (x0, c0), (x1, c1) in zip(points, points[1:]):
            if reading <= x1:
                return value + (c0 + (c1 - c0) * ((reading - x0) / (x1 - x0)))
        return value + points[-1][1]


@dataclass(frozen=True, slots=True)
class CalibrationRecord:
    """One calibration of one sensor, as its certificate gives it."""

    id: str
    sensor: Sensor
    life: int  # the sensor life it belongs to (smemet calibration replace starts the next)
    certificate: str
    laboratory: str
    calibrated: str  # YYYY-MM-DD, as on the certificate
    due: str  # YYYY-MM-DD
    overdue_from: float  # Unix s: the start of the day after ``due``
    valid_from: float  # Unix s
    correction: Correction
    uncertainty: float  # expanded, k = 2, in ``unit``
    unit: str | None = None
    method: str = ""
    sat_tolerance: float | None = None  # a system accuracy test passes within max(this, percent of reading)
    sat_tolerance_percent: float | None = None
    note: str = ""
    recorded_at: float = 0.0
    recorded_by: str = ""
    retired_at: float | None = None
    retired_reason: str = ""
    retired_by: str = ""

    def __post_init__(self) -> None:
        if not _ID.match(self.id):
            raise RecordError(f"record id {self.id!r}: 1 to 64 letters, digits and . _ : / # + - "
                              "(starting with a letter or digit)")
        for name in ("certificate", "laboratory"):
            if not getattr(self, name).strip():
                raise RecordError(f"the {name} is missing (--{name if name != 'laboratory' else 'lab'})")
        if parse_date(self.due, "--due") < parse_date(self.calibrated, "--date"):
            raise RecordError(f"due date {self.due} is before the calibration date {self.calibrated}")
        if not (math.isfinite(self.uncertainty) and self.uncertainty >= 0.0):
            raise RecordError(f"the expanded uncertainty must be a number >= 0, not {self.uncertainty!r}")
        for name in ("sat_tolerance", "sat_tolerance_percent"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0.0):
                raise RecordError(f"--{name.replace('_', '-')} must be a number > 0, not {value!r}")
        if self.life < 1:
            raise RecordError("a sensor life is numbered from 1")

    @property
    def withdrawn(self) -> bool:
        """Retired before it came into force: it never applied."""
        return self.retired_at is not None and self.retired_at <= self.valid_from

    @property
    def node(self) -> str:
        return self.sensor.node

    @property
    def channel(self) -> str:
        return self.sensor.channel

    def sat_tolerance_at(self, reading: float) -> float | None:
        """The SAT tolerance at a reading (the larger of the absolute and
        the percentage one), or None when the record gives none."""
        found = [t for t in (self.sat_tolerance,
                             None if self.sat_tolerance_percent is None else abs(reading) * self.sat_tolerance_percent / 100.0)
                 if t is not None]
        return max(found) if found else None


@dataclass(frozen=True, slots=True)
class SatResult:
    """A system accuracy test: the test instrument's reading (corrected by
    its own certificate) beside what the installed system showed."""

    sensor: Sensor
    record: str  # the record in force when it was done
    at: float  # Unix s
    test_reading: float
    system_reading: float
    tolerance: float
    instrument: str = ""
    note: str = ""
    recorded_at: float = 0.0
    recorded_by: str = ""
    id: int = 0  # given by the store

    @property
    def difference(self) -> float:
        """System minus test: what the installed system reads too high."""
        return self.system_reading - self.test_reading

    @property
    def passed(self) -> bool:
        return abs(self.difference) <= self.tolerance


@dataclass(frozen=True, slots=True)
class SensorLife:
    """One installed sensor on a channel: ``number`` from 1, ``started``
    (Unix s; None for the first life: from its first reading)."""

    sensor: Sensor
    number: int
    started: float | None
    reason: str = ""
    recorded_at: float = 0.0
    recorded_by: str = ""
    state: object = None  # life.LifeState once processing counted something
    frame_id: int = 0  # the processing cursor the state covers
    limits: dict = field(default_factory=dict)  # the limits processing last applied


# ---------------------------------------------------------------- what people type

def parse_date(text: str, option: str) -> _dt.date:
    try:
        return _dt.date.fromisoformat(text)
    except (TypeError, ValueError):
        raise RecordError(f"{option} {text!r} is not a date; give YYYY-MM-DD") from None


def parse_moment(text: str, option: str) -> float:
    """Unix s from an ISO 8601 date or date and time; without a UTC
    offset it is local time (a date alone: its midnight)."""
    try:
        moment = _dt.datetime.fromisoformat(text.strip().replace(" ", "T", 1) if "T" not in text else text.strip())
    except (AttributeError, ValueError):
        raise RecordError(f"{option} {text!r} is not a time; give YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM]") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # local time
    return moment.timestamp()


def overdue_from(due: str) -> float:
    """The start (local time) of the day after the due date."""
    day = parse_date(due, "--due") + _dt.timedelta(days=1)
    return _dt.datetime(day.year, day.month, day.day).astimezone().timestamp()


def parse_points(text: str) -> tuple[tuple[float, float], ...]:
    """``600:+1.2,800:0.9 1000:-0.4`` -> ((600, 1.2), (800, 0.9), (1000, -0.4))."""
    points = []
    for item in re.split(r"[,\s;]+", text.strip()):
        if not item:
            continue
        reading, colon, correction = item.partition(":")
        try:
            if not colon:
                raise ValueError
            points.append((float(reading), float(correction)))
        except ValueError:
            raise RecordError(f"--points: {item!r} is not reading:correction (e.g. 800:+1.2)") from None
    return tuple(points)


def utc_text(moment: float | None) -> str:
    """ISO 8601 in UTC ('Z'), to the second unless it has a fraction: what exports carry."""
    if moment is None:
        return ""
    stamp = _dt.datetime.fromtimestamp(moment, _dt.timezone.utc)
    text = stamp.isoformat(timespec="microseconds" if stamp.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def local_text(moment: float | None) -> str:
    """Local time for people, with its UTC offset: 2025-05-01 14:00:00+02:00."""
    if moment is None:
        return "—"
    return _dt.datetime.fromtimestamp(moment).astimezone().isoformat(sep=" ", timespec="seconds")


def check_follows(new: CalibrationRecord, earlier: Sequence[CalibrationRecord]) -> None:
    """A sensor's records follow one another: a new one must start after
    the latest one started (it then ends that one's span); otherwise it
    would overlap a span already used for readings."""
    for record in earlier:
        if record.id == new.id:
            raise RecordError(f"record id {new.id!r} is already used (for {record.sensor}); give another with --id")
        if record.sensor != new.sensor or record.withdrawn:
            continue
        if new.valid_from <= record.valid_from:
            raise RecordError(
                f"validity overlaps record {record.id} of {record.sensor}, in force from {local_text(record.valid_from)}: "
                f"a new record must start later (--valid-from); a record entered in error that is not in force yet "
                f"is withdrawn with: smemet calibration retire {record.id}")
