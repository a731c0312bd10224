"""Calibration records, system accuracy tests and sensor lives for audits:
JSON (everything, one document) and CSV (one table per file), and back
(``smemet calibration import``).  Times are ISO 8601 in UTC; numbers keep
every digit (Python's repr), so an export read back gives the same records,
bit for bit.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
from collections.abc import Sequence

from .records import CalibrationRecord, Correction, RecordError, SatResult, Sensor, SensorLife, utc_text

FORMAT = "smemet-calibration"
VERSION = 1

RECORD_FIELDS = ("id", "node", "channel", "life", "certificate", "laboratory", "method", "calibrated", "due",
                 "overdue_from", "valid_from", "correction", "offset", "gain", "points", "uncertainty", "unit",
                 "sat_tolerance", "sat_tolerance_percent", "note", "recorded_at", "recorded_by", "retired_at",
                 "retired_reason", "retired_by")
SAT_FIELDS = ("node", "channel", "record", "at", "test_reading", "system_reading", "difference", "tolerance",
              "passed", "instrument", "note", "recorded_at", "recorded_by")
LIFE_FIELDS = ("node", "channel", "life", "started", "ended", "reason", "first_reading", "last_reading",
               "hours_above", "counted_above", "heat_cycles", "cycle_above", "peak", "peak_at", "unaccounted_hours",
               "limit_hours", "limit_cycles", "exceeded_at", "bands")
TABLES = ("records", "sats", "lives")


def _moment(text, what: str) -> float | None:
    if text in (None, ""):
        return None
    try:
        return _dt.datetime.fromisoformat(text).timestamp()
    except (TypeError, ValueError):
        raise RecordError(f"{what}: {text!r} is not an ISO 8601 time") from None


def _number(text, what: str) -> float | None:
    if text in (None, ""):
        return None
    try:
        return float(text)
    except (TypeError, ValueError):
        raise RecordError(f"{what}: {text!r} is not a number") from None


# ---------------------------------------------------------------- records

def record_doc(r: CalibrationRecord) -> dict:
    c = r.correction
    return {
        "id": r.id, "node": r.node, "channel": r.channel, "life": r.life, "certificate": r.certificate,
        "laboratory": r.laboratory, "method": r.method, "calibrated": r.calibrated, "due": r.due,
        "overdue_from": utc_text(r.overdue_from), "valid_from": utc_text(r.valid_from), "correction": c.kind,
        "offset": c.offset if c.kind != "points" else None, "gain": c.gain if c.kind == "linear" else None,
        "points": [[x, y] for x, y in c.points] if c.kind == "points" else None, "uncertainty": r.uncertainty,
        "unit": r.unit, "sat_tolerance": r.sat_tolerance, "sat_tolerance_percent": r.sat_tolerance_percent,
        "note": r.note, "recorded_at": utc_text(r.recorded_at), "recorded_by": r.recorded_by,
        "retired_at": utc_text(r.retired_at) or None, "retired_reason": r.retired_reason, "retired_by": r.retired_by,
    }


def record_of(doc: dict, where: str) -> CalibrationRecord:
    try:
        kind = doc["correction"]
        if kind == "points":
            points = doc["points"]
            if isinstance(points, str):
                points = [item.split(":") for item in points.split(";") if item]
            correction = Correction("points", points=tuple((float(x), float(c)) for x, c in points))
        else:
            correction = Correction(kind, offset=_number(doc.get("offset"), f"{where} offset") or 0.0,
                                    gain=_number(doc.get("gain"), f"{where} gain") or 1.0)
        return CalibrationRecord(
            doc["id"], Sensor(doc["node"], doc["channel"]), int(doc["life"]), doc["certificate"], doc["laboratory"],
            doc["calibrated"], doc["due"], _moment(doc["overdue_from"], f"{where} overdue_from"),
            _moment(doc["valid_from"], f"{where} valid_from"), correction,
            _number(doc["uncertainty"], f"{where} uncertainty"), doc.get("unit") or None, doc.get("method") or "",
            _number(doc.get("sat_tolerance"), f"{where} sat_tolerance"),
            _number(doc.get("sat_tolerance_percent"), f"{where} sat_tolerance_percent"), doc.get("note") or "",
            _moment(doc["recorded_at"], f"{where} recorded_at") or 0.0, doc.get("recorded_by") or "",
            _moment(doc.get("retired_at"), f"{where} retired_at"), doc.get("retired_reason") or "",
            doc.get("retired_by") or "")
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError(f"{where}: not a calibration record ({type(exc).__name__}: {exc})") from None


# ---------------------------------------------------------------- tests and lives

def sat_doc(s: SatResult) -> dict:
    return {"node": s.sensor.node, "channel": s.sensor.channel, "record": s.record, "at": utc_text(s.at),
            "test_reading": s.test_reading, "system_reading": s.system_reading, "difference": s.difference,
            "tolerance": s.tolerance, "passed": s.passed, "instrument": s.instrument, "note": s.note,
            "recorded_at": utc_text(s.recorded_at), "recorded_by": s.recorded_by}


def sat_of(doc: dict, where: str) -> SatResult:
    try:
        return SatResult(Sensor(doc["node"], doc["channel"]), doc["record"], _moment(doc["at"], f"{where} at"),
                         _number(doc["test_reading"], f"{where} test_reading"),
                         _number(doc["system_reading"], f"{where} system_reading"),
                         _number(doc["tolerance"], f"{where} tolerance"), doc.get("instrument") or "",
                         doc.get("note") or "", _moment(doc["recorded_at"], f"{where} recorded_at") or 0.0,
                         doc.get("recorded_by") or "")
    except (KeyError, TypeError) as exc:
        raise RecordError(f"{where}: not a system accuracy test ({type(exc).__name__}: {exc})") from None


def life_doc(life: SensorLife, ended: float | None) -> dict:
    state = life.state
    doc = {"node": life.sensor.node, "channel": life.sensor.channel, "life": life.number,
           "started": utc_text(life.started) or None, "ended": utc_text(ended) or None, "reason": life.reason}
    if state is None:
        return doc | {name: None for name in LIFE_FIELDS if name not in doc}
    return doc | {
        "first_reading": utc_text(state.first_time) if state.started else None,
        "last_reading": utc_text(state.last_time) if state.started else None,
        "hours_above": state.hours_above, "counted_above": state.limit_above, "heat_cycles": state.cycles,
        "cycle_above": state.cycle_above, "peak": state.peak if state.started else None,
        "peak_at": utc_text(state.peak_time) if state.started else None,
        "unaccounted_hours": state.unaccounted / 3600.0, "limit_hours": life.limits.get("limit_hours"),
        "limit_cycles": life.limits.get("limit_cycles"), "exceeded_at": utc_text(state.exceeded_at) or None,
        "bands": [{"from": low, "to": high, "hours": hours} for low, high, hours in state.band_hours()],
    }


def ends_of(lives: Sequence[SensorLife]) -> dict[tuple[Sensor, int], float | None]:
    """When each life ended: when the next one of its sensor started."""
    ends = {}
    for life in lives:
        following = [other for other in lives if other.sensor == life.sensor and other.number == life.number + 1]
        ends[(life.sensor, life.number)] = following[0].started if following else None
    return ends


# ---------------------------------------------------------------- documents

def to_json(records: Sequence[CalibrationRecord], sats: Sequence[SatResult], lives: Sequence[SensorLife],
            log: Sequence[tuple], now: float, source: str) -> str:
    ends = ends_of(lives)
    doc = {
        "format": FORMAT, "version": VERSION, "exported_at": utc_text(now), "source": source,
        "records": [record_doc(r) for r in records], "sats": [sat_doc(s) for s in sats],
        "lives": [life_doc(life, ends[(life.sensor, life.number)]) for life in lives],
        "log": [{"at": utc_text(at), "by": by, "action": action, "sensor": sensor, "detail": detail}
                for _id, at, by, action, sensor, detail in log],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def to_csv(table: str, records: Sequence[CalibrationRecord], sats: Sequence[SatResult],
           lives: Sequence[SensorLife]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if table == "records":
        writer.writerow(RECORD_FIELDS)
        for r in records:
            doc = record_doc(r)
            doc["points"] = ";".join(f"{x!r}:{c!r}" for x, c in r.correction.points) if r.correction.points else None
            writer.writerow([_csv_cell(doc[name]) for name in RECORD_FIELDS])
    elif table == "sats":
        writer.writerow(SAT_FIELDS)
        for s in sats:
            doc = sat_doc(s)
            writer.writerow([_csv_cell(doc[name]) for name in SAT_FIELDS])
    else:
        writer.writerow(LIFE_FIELDS)
        ends = ends_of(lives)
        for life in lives:
            doc = life_doc(life, ends[(life.sensor, life.number)])
            if doc.get("bands"):
                doc["bands"] = ";".join(f"{b['from']:g}-{b['to']:g}:{b['hours']!r}" for b in doc["bands"])
            writer.writerow([_csv_cell(doc.get(name)) for name in LIFE_FIELDS])
    return out.getvalue()


def read(text: str, source: str) -> tuple[list[CalibrationRecord], list[SatResult]]:
    """The records and tests of an export (JSON, or a CSV of records or of
    tests).  Lives are not read back: they are the gateway's own counts."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise RecordError(f"{source}: not valid JSON ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise RecordError(f"{source}: not a calibration export (no \"format\": \"{FORMAT}\")")
        if doc.get("version") != VERSION:
            raise RecordError(f"{source}: export version {doc.get('version')!r}; this gateway reads version {VERSION}")
        records = [record_of(item, f"{source} records[{i}]") for i, item in enumerate(doc.get("records", []))]
        sats = [sat_of(item, f"{source} sats[{i}]") for i, item in enumerate(doc.get("sats", []))]
        return records, sats
    rows = list(csv.DictReader(io.StringIO(text)))
    header = tuple(next(csv.reader(io.StringIO(text)), ()))
    if header == RECORD_FIELDS:
        return [record_of(row, f"{source} line {i + 2}") for i, row in enumerate(rows)], []
    if header == SAT_FIELDS:
        return [], [sat_of(row, f"{source} line {i + 2}") for i, row in enumerate(rows)]
    raise RecordError(f"{source}: neither a JSON export nor a CSV export of records or tests "
                      "(smemet calibration export writes them)")
