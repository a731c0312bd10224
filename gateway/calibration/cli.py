"""``smemet calibration ...``: calibration records, system accuracy tests
and thermocouple lives in the gateway's database, for measurement
engineers and auditors.  It works while the gateway runs (the gateway
picks a change up before its next processing batch, no restart).

    smemet calibration add furnace-1/tc_s --certificate K-2025-117 --lab "Kalibrierlabor Nord" \\
        --date 2025-05-01 --due 2026-05-01 --points "600:+1.2,800:+0.9,1000:-0.4" --uncertainty 1.5
    smemet calibration list [PATTERN] [--all] [--json]
    smemet calibration show furnace-1/tc_s [--json]
    smemet calibration due [--within 30d] [--json]
    smemet calibration retire K-2025-117 [--reason "sensor removed"]
    smemet calibration replace furnace-1/tc_s --certificate ... (a new sensor: a new life, its own record)
    smemet calibration sat furnace-1/tc_s --test-reading 1001.2 --system-reading 1003.0 [--instrument ...]
    smemet calibration export [--format json|csv] [--table records|sats|lives] [--output FILE] [PATTERN]
    smemet calibration import FILE

A mistake (a bad date, overlapping validity, points out of order, ...)
prints one line and exits 2; a failed system accuracy test exits 1.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import sys
import time

from ..errors import GatewayError
from ..settings import Table
from . import export, schedule
from .attention import needing_attention
from .config import DEFAULT_DUE_WARNING
from .records import (CalibrationRecord, Correction, RecordError, SatResult, Sensor, local_text, overdue_from,
                      parse_date, parse_moment, parse_points)
from .store import CalibrationStore, user

EXIT_USER_ERROR = 2
EXIT_SAT_FAILED = 1
DEFAULT_CONFIG = "/etc/smemet/gateway.toml"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "calibration", help="calibration records, system accuracy tests and thermocouple life (for audits)",
        description="Calibration records per sensor (node/channel) in the gateway's database: the calibration "
        "step applies the one in force at each reading's time and every delivered measurement names it. "
        "Works while the gateway runs. See docs/processing.md, 'Calibration'.")
    commands = parser.add_subparsers(dest="calibration_command", metavar="COMMAND", required=True)

    add = commands.add_parser("add", help="record a calibration of a sensor (its certificate)")
    add.add_argument("sensor", metavar="NODE/CHANNEL")
    _record_arguments(add)
    _where(add)
    add.set_defaults(func=_guard(_add))

    listing = commands.add_parser("list", help="the records in force (with --all: every record, retired too)")
    listing.add_argument("pattern", nargs="?", default="*", metavar="PATTERN", help="node/channel glob (default: all)")
    listing.add_argument("--all", action="store_true", help="every record, history included")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _where(listing)
    listing.set_defaults(func=_guard(_list))

    show = commands.add_parser("show", help="a sensor's records, tests and lives")
    show.add_argument("sensor", metavar="NODE/CHANNEL")
    show.add_argument("--json", action="store_true")
    _where(show)
    show.set_defaults(func=_guard(_show))

    due = commands.add_parser("due", help="sensors due for calibration soon, overdue, failed a test or past a usage limit")
    due.add_argument("--within", metavar="DAYS", help="how soon counts as due: days, or a duration such as 12h "
                     "(default: [calibration] due_warning, else 30 days)")
    due.add_argument("--json", action="store_true")
    _where(due)
    due.set_defaults(func=_guard(_due))

    retire = commands.add_parser("retire", help="end a record's validity (a record entered in error and not yet "
                                 "in force is withdrawn)")
    retire.add_argument("record", metavar="RECORD_ID")
    retire.add_argument("--at", metavar="TIME", help="when it ends (ISO 8601; default: now)")
    retire.add_argument("--reason", default="", help="why (kept with the record)")
    retire.add_argument("--by", metavar="NAME", help="who (default: the login name)")
    _where(retire)
    retire.set_defaults(func=_guard(_retire))

    replace = commands.add_parser("replace", help="a new sensor on the channel: a new life with its own record")
    replace.add_argument("sensor", metavar="NODE/CHANNEL")
    _record_arguments(replace)
    replace.add_argument("--reason", default="", help="why it was replaced (kept with the life)")
    _where(replace)
    replace.set_defaults(func=_guard(_replace))

    sat = commands.add_parser("sat", help="record a system accuracy test (test instrument beside the installed "
                              "system); a failed one marks the channel until a new calibration")
    sat.add_argument("sensor", metavar="NODE/CHANNEL")
    sat.add_argument("--test-reading", type=float, required=True, metavar="VALUE",
                     help="the test instrument's reading, corrected by its own certificate")
    sat.add_argument("--system-reading", type=float, required=True, metavar="VALUE",
                     help="what the installed system showed at the same moment (the delivered value)")
    sat.add_argument("--at", metavar="TIME", help="when (ISO 8601; default: now)")
    sat.add_argument("--instrument", default="", help="the test instrument and its certificate")
    sat.add_argument("--note", default="")
    sat.add_argument("--by", metavar="NAME")
    _where(sat)
    sat.set_defaults(func=_guard(_sat))

    out = commands.add_parser("export", help="records, tests and lives as JSON (everything) or CSV (one table)")
    out.add_argument("pattern", nargs="?", default="*", metavar="PATTERN", help="node/channel glob (default: all)")
    out.add_argument("--format", choices=("json", "csv"), default="json")
    out.add_argument("--table", choices=export.TABLES, default="records", help="for CSV: which table")
    out.add_argument("--output", "-o", metavar="FILE", help="write there instead of stdout")
    _where(out)
    out.set_defaults(func=_guard(_export))

    into = commands.add_parser("import", help="records and tests from an export (those already here are skipped)")
    into.add_argument("file", metavar="FILE")
    into.add_argument("--by", metavar="NAME")
    _where(into)
    into.set_defaults(func=_guard(_import))


def _record_arguments(parser) -> None:
    parser.add_argument("--certificate", required=True, help="the certificate's number")
    parser.add_argument("--lab", required=True, metavar="LABORATORY", help="who calibrated it")
    parser.add_argument("--date", required=True, metavar="YYYY-MM-DD", help="calibration date (certificate)")
    parser.add_argument("--due", required=True, metavar="YYYY-MM-DD", help="due date of the next calibration")
    parser.add_argument("--uncertainty", required=True, type=float, metavar="U",
                        help="expanded uncertainty (k = 2), in the channel's unit")
    correction = parser.add_argument_group("correction (added to the reading; one form)")
    correction.add_argument("--offset", type=float, help="one correction for every reading (with --gain: the offset)")
    correction.add_argument("--points", metavar="R:C,...", help="corrections at readings, interpolated linearly, "
                            "e.g. \"600:+1.2,800:+0.9,1000:-0.4\"")
    correction.add_argument("--gain", type=float, help="reading * gain + offset (loops, transmitters)")
    parser.add_argument("--unit", help="the unit of the correction and uncertainty (e.g. Cel)")
    parser.add_argument("--method", default="", help="e.g. 'comparison with a type S standard, ITS-90'")
    parser.add_argument("--valid-from", metavar="TIME", help="in force from (ISO 8601; default: now)")
    parser.add_argument("--sat-tolerance", type=float, metavar="VALUE",
                        help="system accuracy test tolerance, in the channel's unit")
    parser.add_argument("--sat-tolerance-percent", type=float, metavar="PERCENT",
                        help="...or as a percentage of the reading (the larger one applies)")
    parser.add_argument("--id", help="the record's id (default: the certificate number)")
    parser.add_argument("--note", default="")
    parser.add_argument("--by", metavar="NAME", help="who records it (default: the login name)")


def _where(parser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--gateway-config", metavar="FILE",
                        help=f"the gateway's gateway.toml (default {DEFAULT_CONFIG} when --outbox is not given)")
    source.add_argument("--outbox", metavar="FILE", help="the gateway's outbox database itself")


def _guard(command):
    def guarded(args) -> int:
        try:
            return command(args)
        except GatewayError as exc:
            print(f"smemet calibration: {exc}", file=sys.stderr)
            return EXIT_USER_ERROR
        except KeyboardInterrupt:
            return 130

    return guarded


class _Gateway:
    """What the command needs of the gateway: its database, its due
    warning, its chains (to say when a record would not be applied)."""

    def __init__(self, args, *, readonly: bool) -> None:
        self.config = None
        if args.outbox:
            path = args.outbox
        else:
            from ..config import load_config

            self.config = load_config(args.gateway_config or DEFAULT_CONFIG)
            path = self.config.outbox.path
        self.store = CalibrationStore.open(path, readonly=readonly)

    @property
    def due_warning(self) -> float:
        return self.config.calibration.due_warning if self.config is not None else DEFAULT_DUE_WARNING

    def applies(self, sensor: Sensor) -> bool | None:
        """Whether the sensor's chain has a calibration step (None: no config at hand)."""
        if self.config is None:
            return None
        steps = self.config.steps_for(sensor.node, sensor.channel) or []
        return any(step.get("type") == "calibration" and not {"gain", "offset", "coefficients"} & set(step)
                   for step in steps)


def _now() -> float:
    return round(time.time(), 6)  # whole microseconds: what ISO 8601 exports carry, exactly


def _correction(args) -> Correction:
    given = [name for name in ("offset", "points", "gain") if getattr(args, name) is not None]
    if not given:
        raise RecordError("give the correction: --offset, --points or --gain (with --offset)")
    if args.points is not None:
        if len(given) > 1:
            raise RecordError("--points is one correction form: not with --offset or --gain")
        return Correction("points", points=parse_points(args.points))
    if args.gain is not None:
        return Correction("linear", offset=args.offset or 0.0, gain=args.gain)
    return Correction("offset", offset=args.offset)


def _new_record(args, gateway: _Gateway, now: float) -> CalibrationRecord:
    sensor = Sensor.parse(args.sensor)
    parse_date(args.date, "--date")
    valid_from = parse_moment(args.valid_from, "--valid-from") if args.valid_from else now
    if not math.isfinite(args.uncertainty):
        raise RecordError("--uncertainty must be a number")
    return CalibrationRecord(
        args.id or args.certificate, sensor, 1, args.certificate, args.lab, args.date, args.due, overdue_from(args.due),
        valid_from, _correction(args), args.uncertainty, args.unit, args.method, args.sat_tolerance,
        args.sat_tolerance_percent, args.note, now, args.by or user())


def _notes(record: CalibrationRecord, gateway: _Gateway, now: float) -> None:
    applies = gateway.applies(record.sensor)
    if applies is False:
        print(f"note: {record.sensor} has no calibration step in {gateway.config.source}: the record is kept but not "
              "applied until one is configured", file=sys.stderr)
    if record.valid_from < now - 60:
        print("note: readings the gateway already processed keep the record they were processed with; this one "
              "applies to readings from its validity that arrive from now on (a node's buffered ones)", file=sys.stderr)
    if record.overdue_from <= now:
        print(f"note: the due date {record.due} has passed: readings are marked calibration-due", file=sys.stderr)


def _describe(record: CalibrationRecord) -> str:
    unit = f" {record.unit}" if record.unit else ""
    return (f"{record.id} for {record.sensor} (life {record.life}): correction {record.correction.text()}{unit}, "
            f"U = {record.uncertainty:g}{unit} (k=2), in force from {local_text(record.valid_from)}, due {record.due}")


def _add(args) -> int:
    gateway = _Gateway(args, readonly=False)
    now = _now()
    record = gateway.store.add(_new_record(args, gateway, now))
    print(f"added calibration record {_describe(record)}")
    _notes(record, gateway, now)
    return 0


def _replace(args) -> int:
    gateway = _Gateway(args, readonly=False)
    now = _now()
    sensor = Sensor.parse(args.sensor)
    before = gateway.store.lives(sensor)
    record = gateway.store.replace(_new_record(args, gateway, now), args.reason)
    ended = ""
    if before and before[-1].state is not None:
        state = before[-1].state
        ended = f"; life {before[-1].number} ended after {state.hours_above:.1f} h at or above " \
                f"{state.limit_above:g} °C and {state.cycles} heat cycles"
    print(f"{sensor}: life {record.life} starts {local_text(record.valid_from)} with record {record.id}{ended}")
    _notes(record, gateway, now)
    return 0


def _retire(args) -> int:
    gateway = _Gateway(args, readonly=False)
    at = parse_moment(args.at, "--at") if args.at else _now()
    record = gateway.store.retire(args.record, at, args.reason, args.by or user())
    if record.withdrawn:
        print(f"withdrew record {record.id} of {record.sensor}: it never came into force")
    else:
        print(f"retired record {record.id} of {record.sensor}: in force until {local_text(at)}")
    return 0


def _sat(args) -> int:
    gateway = _Gateway(args, readonly=False)
    sensor = Sensor.parse(args.sensor)
    now = _now()
    at = parse_moment(args.at, "--at") if args.at else now
    for name in ("test_reading", "system_reading"):
        if not math.isfinite(getattr(args, name)):
            raise RecordError(f"--{name.replace('_', '-')} must be a number")
    record = schedule.in_force(gateway.store.records(sensor), at)
    if record is None:
        raise RecordError(f"no calibration record of {sensor} in force at {local_text(at)}: a system accuracy test "
                          "is judged by the record's tolerance; add the calibration first")
    tolerance = record.sat_tolerance_at(args.test_reading)
    if tolerance is None:
        raise RecordError(f"record {record.id} gives no SAT tolerance; it is part of the calibration record "
                          "(--sat-tolerance / --sat-tolerance-percent when it is added)")
    result = gateway.store.add_sat(SatResult(sensor, record.id, at, args.test_reading, args.system_reading, tolerance,
                                             args.instrument, args.note, now, args.by or user()))
    unit = f" {record.unit}" if record.unit else ""
    if result.passed:
        print(f"{sensor}: system accuracy test passed: difference {result.difference:+g}{unit} within "
              f"±{tolerance:g}{unit} (record {record.id})")
        return 0
    print(f"{sensor}: system accuracy test FAILED: difference {result.difference:+g}{unit} exceeds ±{tolerance:g}{unit} "
          f"(record {record.id}); its readings from {local_text(at)} are marked sat-failed until a new calibration "
          "is recorded (smemet calibration add)")
    return EXIT_SAT_FAILED


def _matching(pattern: str, sensor: Sensor) -> bool:
    return fnmatch.fnmatchcase(str(sensor), pattern)


def _list(args) -> int:
    gateway = _Gateway(args, readonly=True)
    now = time.time()
    records = [r for r in gateway.store.records() if _matching(args.pattern, r.sensor)]
    if not args.all:
        by_sensor: dict[Sensor, list[CalibrationRecord]] = {}
        for r in records:
            by_sensor.setdefault(r.sensor, []).append(r)
        records = [found for found in (schedule.in_force(rs, now) for rs in by_sensor.values()) if found]
    if args.json:
        json.dump([export.record_doc(r) for r in records], sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    print(_table(["record", "sensor", "life", "certificate", "laboratory", "calibrated", "due", "correction",
                  "U (k=2)", "in force from", "retired"],
                 [[r.id, str(r.sensor), str(r.life), r.certificate, r.laboratory, r.calibrated, r.due,
                   r.correction.text() + (f" {r.unit}" if r.unit else ""), f"{r.uncertainty:g}",
                   local_text(r.valid_from), local_text(r.retired_at) if r.retired_at is not None else ""]
                  for r in records]))
    if not records:
        print("(no records" + ("" if args.all else " in force") + ": add one with smemet calibration add)")
    return 0


def _status_line(status: schedule.SensorStatus) -> str:
    if status.state == schedule.NONE:
        return "no record in force"
    days = status.due_in_days
    when = f"due in {days:.1f} days" if days > 0 else f"overdue for {-days:.1f} days"
    if status.state == schedule.SAT_FAILED:
        return f"system accuracy test failed {local_text(status.sat_failed_at)}; {when}"
    return f"{status.state}: {when} (record {status.record.id})"


def _show(args) -> int:
    gateway = _Gateway(args, readonly=True)
    sensor = Sensor.parse(args.sensor)
    store = gateway.store
    records, sats, lives = store.records(sensor), store.sats(sensor), store.lives(sensor)
    if not (records or lives):
        raise RecordError(f"nothing is recorded for {sensor} (smemet calibration list shows the sensors)")
    status = schedule.status(sensor, records, sats, time.time(), gateway.due_warning)
    if args.json:
        ends = export.ends_of(lives)
        doc = {"sensor": str(sensor), "state": status.state, "record_in_force": status.record.id if status.record else None,
               "due_in_days": status.due_in_days, "records": [export.record_doc(r) for r in records],
               "sats": [export.sat_doc(s) for s in sats],
               "lives": [export.life_doc(life, ends[(life.sensor, life.number)]) for life in lives]}
        json.dump(doc, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    print(f"{sensor}: {_status_line(status)}")
    print("\nrecords")
    for r in records:
        unit = f" {r.unit}" if r.unit else ""
        flag = " (withdrawn)" if r.withdrawn else (f" (retired {local_text(r.retired_at)}: {r.retired_reason or '-'})"
                                                    if r.retired_at is not None else "")
        print(f"  {r.id}  life {r.life}  certificate {r.certificate}, {r.laboratory}, calibrated {r.calibrated}, "
              f"due {r.due}{flag}")
        print(f"      correction {r.correction.text()}{unit}, U = {r.uncertainty:g}{unit} (k=2)"
              + (f", method {r.method}" if r.method else "")
              + (f", SAT tolerance {_tolerance(r)}" if _tolerance(r) else ""))
        print(f"      in force from {local_text(r.valid_from)}; recorded {local_text(r.recorded_at)} by {r.recorded_by}")
    if sats:
        print("\nsystem accuracy tests")
        for s in sats:
            print(f"  {local_text(s.at)}  {'passed' if s.passed else 'FAILED'}: test {s.test_reading:g}, "
                  f"system {s.system_reading:g}, difference {s.difference:+g}, tolerance ±{s.tolerance:g} "
                  f"(record {s.record}{', ' + s.instrument if s.instrument else ''})")
    for life in lives:
        started = local_text(life.started) if life.started is not None else "its first reading"
        print(f"\nlife {life.number}: from {started}" + (f" ({life.reason})" if life.reason else ""))
        state = life.state
        if state is None or not state.started:
            print("  nothing counted yet (no thermocouple_life step, or no reading since)")
            continue
        limits = life.limits
        print(f"  {state.hours_above:.2f} h at or above {state.limit_above:g} °C"
              + (f" (limit {limits['limit_hours']:g} h)" if limits.get("limit_hours") else "")
              + f", {state.cycles} heat cycles above {state.cycle_above:g} °C"
              + (f" (limit {limits['limit_cycles']})" if limits.get("limit_cycles") else "")
              + f", peak {state.peak:.1f} °C at {local_text(state.peak_time)}")
        if state.exceeded_at is not None:
            print(f"  PAST ITS USAGE LIMIT since {local_text(state.exceeded_at)}: readings are marked usage-limit")
        if state.unaccounted:
            print(f"  {state.unaccounted / 3600.0:.2f} h not counted (gaps between readings longer than "
                  f"{state.max_gap:g} s)")
        for low, high, hours in state.band_hours():
            print(f"    {low:7g} – {high:<7g} °C  {hours:10.2f} h")
    return 0


def _tolerance(record: CalibrationRecord) -> str:
    parts = []
    if record.sat_tolerance is not None:
        parts.append(f"±{record.sat_tolerance:g}" + (f" {record.unit}" if record.unit else ""))
    if record.sat_tolerance_percent is not None:
        parts.append(f"±{record.sat_tolerance_percent:g} % of reading")
    return " or ".join(parts) + (" (the larger)" if len(parts) == 2 else "")


def _within(text: str | None, default: float) -> float:
    """--within: days (a number) or a duration (30d, 12h); seconds."""
    if text is None:
        return default
    try:
        return float(text) * 86400.0 if float(text) >= 0 else -1.0
    except ValueError:
        try:
            return Table({"within": text}, "--", ("within",)).duration("within", low=0.0)
        except GatewayError:
            return -1.0


def _due(args) -> int:
    gateway = _Gateway(args, readonly=True)
    within = _within(args.within, gateway.due_warning)
    if within < 0:
        raise RecordError(f"--within {args.within}: give days >= 0 or a duration such as 12h")
    store, now = gateway.store, time.time()
    records, sats, lives = store.records(), store.sats(), store.lives()
    sensors = {r.sensor for r in records} | {life.sensor for life in lives}
    rows = [item.as_dict() for item in needing_attention(records, sats, lives, now, within)]
    if args.json:
        json.dump({"within_days": within / 86400.0, "sensors": rows}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(_table(["sensor", "state", "record", "due", "days", "test failed", "usage limit since"],
                 [[row["sensor"], row["state"], row["record"] or "—", row["due"] or "—",
                   "—" if row["due_in_days"] is None else f"{row['due_in_days']:.1f}",
                   row["sat_failed_at"] or "", row["usage_limit_since"] or ""] for row in rows]))
    print(f"{len(rows)} of {len(sensors)} sensors need attention (due within {within / 86400.0:g} days, overdue, "
          "failed a test, or past a usage limit)")
    return 0


def _export(args) -> int:
    gateway = _Gateway(args, readonly=True)
    store = gateway.store
    records = [r for r in store.records() if _matching(args.pattern, r.sensor)]
    sats = [s for s in store.sats() if _matching(args.pattern, s.sensor)]
    lives = [life for life in store.lives() if _matching(args.pattern, life.sensor)]
    if args.format == "json":
        text = export.to_json(records, sats, lives, store.log(), _now(), store.path)
    else:
        text = export.to_csv(args.table, records, sats, lives)
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8", newline="") as f:
                f.write(text)
        except OSError as exc:
            raise RecordError(f"cannot write {args.output} ({exc.strerror})") from None
        print(f"wrote {len(records)} records, {len(sats)} tests, {len(lives)} lives to {args.output}"
              if args.format == "json" else f"wrote the {args.table} table to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _import(args) -> int:
    gateway = _Gateway(args, readonly=False)
    try:
        with open(args.file, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise RecordError(f"cannot read {args.file} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise RecordError(f"{args.file} is not UTF-8 text (an export is)") from None
    records, sats = export.read(text, os.path.basename(args.file))
    added, tests = gateway.store.import_(records, sats, args.by or user(), _now())
    print(f"imported {added} records and {tests} tests from {args.file} "
          f"({len(records) - added} records and {len(sats) - tests} tests were here already)")
    return 0


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(header[k]), *(len(row[k]) for row in rows)) if rows else len(header[k]) for k in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m smemet.gateway.calibration.cli ...``."""
    parser = argparse.ArgumentParser(prog="smemet")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["calibration", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
