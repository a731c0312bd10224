"""Where calibration records, system accuracy tests and sensor lives are
kept: tables in the gateway's outbox database (SQLite, WAL), beside the
processed frames -- the only code that knows these tables.

Why the outbox file and not a file of its own: a thermocouple life's
counts must be written in the same transaction as the processed frames
they were counted from (the processing cursor moves with them), and a
transaction covers one SQLite file only when it must survive a power cut
(SQLite's atomic commit across attached WAL databases is per file).  Records
and tests sit with the lives so one backup of one file holds a measurement
and the calibration it depended on; ``smemet calibration export`` copies
them out for audits and ``import`` brings them back.

The command line writes here while the gateway runs: WAL lets the gateway
read and write meanwhile, every change is one short ``BEGIN IMMEDIATE``
transaction, and each appends a row to ``calibration_log`` -- who did what,
when; its newest id is the version the gateway polls before each
processing batch, so a change is in force without a restart.
"""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
from collections.abc import Iterable, Sequence

from ..errors import OutboxError
from .life import LifeState
from .records import (CalibrationRecord, Correction, RecordError, SatResult, Sensor, SensorLife, check_follows,
                      local_text)

_TABLES = """
CREATE TABLE IF NOT EXISTS calibration_records (
    id TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    channel TEXT NOT NULL,
    life INTEGER NOT NULL,                 -- sensor_lives.life it belongs to
    certificate TEXT NOT NULL,
    laboratory TEXT NOT NULL,
    method TEXT NOT NULL,
    calibrated TEXT NOT NULL,              -- YYYY-MM-DD, as on the certificate
    due TEXT NOT NULL,                     -- YYYY-MM-DD
    overdue_from REAL NOT NULL,            -- Unix s: the start of the day after the due date
    valid_from REAL NOT NULL,              -- Unix s
    correction TEXT NOT NULL,              -- JSON: records.Correction.to_json
    uncertainty REAL NOT NULL,             -- expanded, k = 2, in unit
    unit TEXT,
    sat_tolerance REAL,
    sat_tolerance_percent REAL,
    note TEXT NOT NULL,
    recorded_at REAL NOT NULL,
    recorded_by TEXT NOT NULL,
    retired_at REAL,
    retired_reason TEXT NOT NULL DEFAULT '',
    retired_by TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS calibration_records_by_sensor ON calibration_records (node, channel, valid_from);
CREATE TABLE IF NOT EXISTS calibration_sats (
    id INTEGER PRIMARY KEY,
    node TEXT NOT NULL,
    channel TEXT NOT NULL,
    record TEXT NOT NULL,                  -- the record in force at the test
    at REAL NOT NULL,
    test_reading REAL NOT NULL,
    system_reading REAL NOT NULL,
    tolerance REAL NOT NULL,
    passed INTEGER NOT NULL,
    instrument TEXT NOT NULL,
    note TEXT NOT NULL,
    recorded_at REAL NOT NULL,
    recorded_by TEXT NOT NULL,
    UNIQUE (node, channel, at, record)
);
CREATE TABLE IF NOT EXISTS sensor_lives (
    node TEXT NOT NULL,
    channel TEXT NOT NULL,
    life INTEGER NOT NULL,                 -- 1, 2, ...: smemet calibration replace starts the next
    started REAL,                          -- Unix s; NULL: from the first reading
    reason TEXT NOT NULL,
    recorded_at REAL NOT NULL,
    recorded_by TEXT NOT NULL,
    state TEXT,                            -- life.LifeState JSON, written by processing
    frame_id INTEGER NOT NULL DEFAULT 0,   -- the processing cursor (frame id) the state covers
    limits TEXT,                           -- JSON: the limits processing applied
    PRIMARY KEY (node, channel, life)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS calibration_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    by TEXT NOT NULL,
    action TEXT NOT NULL,                  -- add, retire, replace, sat, import
    sensor TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""

_RECORD_COLUMNS = ("id, node, channel, life, certificate, laboratory, method, calibrated, due, overdue_from, valid_from, "
                   "correction, uncertainty, unit, sat_tolerance, sat_tolerance_percent, note, recorded_at, recorded_by, "
                   "retired_at, retired_reason, retired_by")
_SAT_COLUMNS = ("id, node, channel, record, at, test_reading, system_reading, tolerance, instrument, note, recorded_at, "
                "recorded_by")
_LIFE_COLUMNS = "node, channel, life, started, reason, recorded_at, recorded_by, state, frame_id, limits"


def user() -> str:
    """Who makes a change, for the log: the login name."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def ensure_tables(db: sqlite3.Connection) -> None:
    db.executescript(_TABLES)


def _record(row) -> CalibrationRecord:
    (id_, node, channel, life, certificate, laboratory, method, calibrated, due, overdue_from, valid_from, correction,
     uncertainty, unit, sat_tolerance, sat_percent, note, recorded_at, recorded_by, retired_at, retired_reason,
     retired_by) = row
    return CalibrationRecord(id_, Sensor(node, channel), life, certificate, laboratory, calibrated, due, overdue_from,
                             valid_from, Correction.from_json(json.loads(correction)), uncertainty, unit, method,
                             sat_tolerance, sat_percent, note, recorded_at, recorded_by, retired_at, retired_reason,
                             retired_by)


def _record_row(r: CalibrationRecord) -> tuple:
    return (r.id, r.node, r.channel, r.life, r.certificate, r.laboratory, r.method, r.calibrated, r.due, r.overdue_from,
            r.valid_from, json.dumps(r.correction.to_json(), separators=(",", ":")), r.uncertainty, r.unit,
            r.sat_tolerance, r.sat_tolerance_percent, r.note, r.recorded_at, r.recorded_by, r.retired_at,
            r.retired_reason, r.retired_by)


def _sat(row) -> SatResult:
    id_, node, channel, record, at, test, system, tolerance, instrument, note, recorded_at, recorded_by = row
    return SatResult(Sensor(node, channel), record, at, test, system, tolerance, instrument, note, recorded_at,
                     recorded_by, id_)


def _life(row) -> SensorLife:
    node, channel, number, started, reason, recorded_at, recorded_by, state, frame_id, limits = row
    return SensorLife(Sensor(node, channel), number, started, reason, recorded_at, recorded_by,
                      LifeState.from_json(state) if state else None, frame_id, json.loads(limits) if limits else {})


class CalibrationStore:
    """The calibration tables of one outbox database."""

    def __init__(self, db: sqlite3.Connection, path: str) -> None:
        self._db = db
        self.path = path

    @classmethod
    def open(cls, path: str, *, readonly: bool = False) -> CalibrationStore:
        """The tables of the outbox at ``path``, which must exist (the
        gateway creates it, owned by its user).  RecordError says what to do
        when it is missing or not writable."""
        if not os.path.exists(path):
            raise RecordError(f"the gateway's database {path} does not exist yet; start the gateway once "
                              "(it creates it, owned by its user), or give --outbox")
        try:
            db = sqlite3.connect(f"file:{path}?mode={'ro' if readonly else 'rw'}", uri=True, isolation_level=None,
                                 timeout=10.0, check_same_thread=False)
            db.execute("PRAGMA busy_timeout=10000")
            if not readonly:
                ensure_tables(db)
            else:
                db.execute("SELECT 1 FROM sqlite_master LIMIT 1")
        except sqlite3.Error as exc:
            raise RecordError(f"cannot {'read' if readonly else 'write'} {path} ({exc}); run as the gateway's user "
                              "(sudo -u smemet smemet calibration ...)") from None
        return cls(db, path)

    @classmethod
    def of_connection(cls, db: sqlite3.Connection, path: str) -> CalibrationStore:
        """On a connection the caller made (the gateway's); creates the tables."""
        ensure_tables(db)
        return cls(db, path)

    def close(self) -> None:
        self._db.close()

    def _has_tables(self) -> bool:
        return self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'calibration_records'").fetchone() is not None

    # ------------------------------------------------------------ reading

    def version(self) -> int:
        """Moves with every change the command line makes."""
        try:
            row = self._db.execute("SELECT max(id) FROM calibration_log").fetchone()
        except sqlite3.OperationalError:  # read-only view of an outbox that has no tables yet
            return 0
        return row[0] or 0

    def records(self, sensor: Sensor | None = None) -> list[CalibrationRecord]:
        if not self._has_tables():
            return []
        where, args = ("WHERE node = ? AND channel = ?", (sensor.node, sensor.channel)) if sensor else ("", ())
        return [_record(row) for row in self._db.execute(
            f"SELECT {_RECORD_COLUMNS} FROM calibration_records {where} ORDER BY node, channel, valid_from", args)]

    def record(self, record_id: str) -> CalibrationRecord:
        if self._has_tables():
            row = self._db.execute(f"SELECT {_RECORD_COLUMNS} FROM calibration_records WHERE id = ?",
                                   (record_id,)).fetchone()
            if row is not None:
                return _record(row)
        raise RecordError(f"no calibration record {record_id!r} (smemet calibration list shows them)")

    def sats(self, sensor: Sensor | None = None) -> list[SatResult]:
        if not self._has_tables():
            return []
        where, args = ("WHERE node = ? AND channel = ?", (sensor.node, sensor.channel)) if sensor else ("", ())
        return [_sat(row) for row in self._db.execute(
            f"SELECT {_SAT_COLUMNS} FROM calibration_sats {where} ORDER BY node, channel, at, id", args)]

    def lives(self, sensor: Sensor | None = None) -> list[SensorLife]:
        if not self._has_tables():
            return []
        where, args = ("WHERE node = ? AND channel = ?", (sensor.node, sensor.channel)) if sensor else ("", ())
        return [_life(row) for row in self._db.execute(
            f"SELECT {_LIFE_COLUMNS} FROM sensor_lives {where} ORDER BY node, channel, life", args)]

    def log(self) -> list[tuple[int, float, str, str, str, str]]:
        if not self._has_tables():
            return []
        return self._db.execute("SELECT id, at, by, action, sensor, detail FROM calibration_log ORDER BY id").fetchall()

    def snapshot(self) -> tuple[int, list[CalibrationRecord], list[SatResult], list[SensorLife]]:
        """(version, records, tests, lives), read in one transaction."""
        self._db.execute("BEGIN")
        try:
            return self.version(), self.records(), self.sats(), self.lives()
        finally:
            self._db.execute("COMMIT")

    # ------------------------------------------------------------ changing (the command line)

    def _write(self):
        return _Transaction(self._db)

    def _current_life(self, sensor: Sensor) -> int:
        row = self._db.execute("SELECT max(life) FROM sensor_lives WHERE node = ? AND channel = ?",
                               (sensor.node, sensor.channel)).fetchone()
        return row[0] or 0

    def _log(self, at: float, by: str, action: str, sensor: Sensor | str, detail: str) -> None:
        self._db.execute("INSERT INTO calibration_log (at, by, action, sensor, detail) VALUES (?, ?, ?, ?, ?)",
                         (at, by, action, str(sensor), detail))

    def _insert_life(self, sensor: Sensor, number: int, started: float | None, reason: str, at: float, by: str) -> None:
        self._db.execute("INSERT INTO sensor_lives (node, channel, life, started, reason, recorded_at, recorded_by)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?)", (sensor.node, sensor.channel, number, started, reason, at, by))

    def _insert_record(self, record: CalibrationRecord) -> None:
        if self._exists(record.id):
            other = self.record(record.id)
            raise RecordError(f"record id {record.id!r} is already used (for {other.sensor}); give another with --id")
        check_follows(record, self.records(record.sensor))
        self._db.execute(f"INSERT INTO calibration_records ({_RECORD_COLUMNS}) VALUES "
                         f"({','.join('?' * 22)})", _record_row(record))

    def _exists(self, record_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM calibration_records WHERE id = ?", (record_id,)).fetchone() is not None

    def add(self, record: CalibrationRecord) -> CalibrationRecord:
        """Store a new record (its life: the sensor's current one, the
        first when it has none)."""
        with self._write():
            life = self._current_life(record.sensor)
            if life == 0:
                self._insert_life(record.sensor, 1, None, "first calibration record", record.recorded_at,
                                  record.recorded_by)
                life = 1
            if record.life != life:
                record = _with(record, life=life)
            self._insert_record(record)
            self._log(record.recorded_at, record.recorded_by, "add", record.sensor,
                      f"{record.id}: certificate {record.certificate}, correction {record.correction.text()}")
        return record

    def replace(self, record: CalibrationRecord, reason: str) -> CalibrationRecord:
        """A new sensor on the channel: its life starts at the record's
        ``valid_from``, with this record."""
        with self._write():
            life = self._current_life(record.sensor) + 1
            self._insert_life(record.sensor, life, record.valid_from, reason, record.recorded_at, record.recorded_by)
            record = _with(record, life=life)
            self._insert_record(record)
            self._log(record.recorded_at, record.recorded_by, "replace", record.sensor,
                      f"life {life} from {record.valid_from}: {record.id}, certificate {record.certificate}"
                      + (f" ({reason})" if reason else ""))
        return record

    def retire(self, record_id: str, at: float, reason: str, by: str) -> CalibrationRecord:
        with self._write():
            record = self.record(record_id)
            if record.retired_at is not None:
                raise RecordError(f"record {record_id} was already retired at {local_text(record.retired_at)} "
                                  f"({record.retired_reason or 'no reason given'})")
            self._db.execute("UPDATE calibration_records SET retired_at = ?, retired_reason = ?, retired_by = ? "
                             "WHERE id = ?", (at, reason, by, record_id))
            self._log(at, by, "retire", record.sensor, f"{record_id}" + (f": {reason}" if reason else ""))
        return self.record(record_id)

    def add_sat(self, sat: SatResult) -> SatResult:
        with self._write():
            cursor = self._db.execute(
                "INSERT INTO calibration_sats (node, channel, record, at, test_reading, system_reading, tolerance, "
                "passed, instrument, note, recorded_at, recorded_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (sat.sensor.node, sat.sensor.channel, sat.record, sat.at, sat.test_reading, sat.system_reading,
                 sat.tolerance, int(sat.passed), sat.instrument, sat.note, sat.recorded_at, sat.recorded_by))
            self._log(sat.recorded_at, sat.recorded_by, "sat", sat.sensor,
                      f"{'passed' if sat.passed else 'FAILED'}: difference {sat.difference:+g}, "
                      f"tolerance {sat.tolerance:g}, under {sat.record}")
        return _with(sat, id=cursor.lastrowid)

    def import_(self, records: Sequence[CalibrationRecord], sats: Sequence[SatResult], by: str, at: float) -> tuple[int, int]:
        """Records and tests from an export: those already here (same id,
        same content) are skipped, a different one under a known id is an
        error; all or nothing.  Returns (records, tests) added."""
        added_records = added_sats = 0
        with self._write():
            for record in sorted(records, key=lambda r: r.valid_from):
                if self._exists(record.id):
                    if self.record(record.id) != record:
                        raise RecordError(f"record {record.id} exists here with other content; nothing imported")
                    continue
                for number in range(self._current_life(record.sensor) + 1, record.life + 1):
                    self._insert_life(record.sensor, number, record.valid_from if number == record.life else None,
                                      "imported", at, by)
                self._insert_record(record)
                added_records += 1
            for sat in sats:
                exists = self._db.execute("SELECT 1 FROM calibration_sats WHERE node = ? AND channel = ? AND at = ? "
                                          "AND record = ?", (sat.sensor.node, sat.sensor.channel, sat.at,
                                                             sat.record)).fetchone()
                if exists:
                    continue
                if not self._exists(sat.record):
                    raise RecordError(f"the test of {sat.sensor} at {sat.at} names record {sat.record}, which is "
                                      "neither here nor in the file; nothing imported")
                self._db.execute(
                    "INSERT INTO calibration_sats (node, channel, record, at, test_reading, system_reading, tolerance, "
                    "passed, instrument, note, recorded_at, recorded_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (sat.sensor.node, sat.sensor.channel, sat.record, sat.at, sat.test_reading, sat.system_reading,
                     sat.tolerance, int(sat.passed), sat.instrument, sat.note, sat.recorded_at, sat.recorded_by))
                added_sats += 1
            if added_records or added_sats:
                self._log(at, by, "import", "*", f"{added_records} records, {added_sats} tests")
        return added_records, added_sats


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error: short, so the
    gateway's writer waits for it at most a few milliseconds."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise RecordError(f"cannot write the calibration records ({exc})") from None

    def __exit__(self, kind, exc, traceback) -> bool:
        if kind is None:
            try:
                self._db.execute("COMMIT")
                return False
            except sqlite3.Error as error:
                exc = error
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise RecordError(f"cannot write the calibration records ({exc}); nothing was changed") from None
        return False


def _with(value, **changes):
    from dataclasses import replace

    return replace(value, **changes)


# ------------------------------------------------------------ the processing side

def write_lives(db: sqlite3.Connection, lives: Iterable[tuple[Sensor, int, LifeState, dict]], frame_id: int,
                at: float) -> None:
    """(In the processing transaction, on its connection.)  The counted
    state of each (sensor, life), covering frames up to ``frame_id``; a
    life the command line has not made (the first) is made here.  Only the
    counted columns are written: what the command line recorded stays."""
    db.executemany(
        f"INSERT INTO sensor_lives ({_LIFE_COLUMNS}) VALUES (?, ?, ?, NULL, 'first seen by the gateway', ?, 'gateway', ?, ?, ?)"
        " ON CONFLICT (node, channel, life) DO UPDATE SET state = excluded.state, frame_id = excluded.frame_id,"
        " limits = excluded.limits",
        [(sensor.node, sensor.channel, number, at, state.to_json(), frame_id, json.dumps(limits, sort_keys=True))
         for sensor, number, state, limits in lives],
    )


def open_for_gateway(path: str) -> sqlite3.Connection:
    """The gateway's own connection for reading records (writer thread)."""
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
        db.execute("PRAGMA busy_timeout=30000")
        ensure_tables(db)
    except sqlite3.Error as exc:
        raise OutboxError(f"{path}: cannot open the calibration tables ({exc})") from None
    return db
