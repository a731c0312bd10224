"""The durable outbox: one SQLite database in WAL mode, and the only code
that knows its tables (everything else uses the methods below).

Tables
- ``frames``: every accepted frame, raw, once per (node, seq) (UNIQUE), kept
  until it is processed and past the audit retention;
- ``windows``: each node's replay window as of frame ``meta.windows_frame``.
  A frame commit does not write it (ten window rows per commit were a third
  of the commit's cost): the windows are saved every prune interval, in the
  prune's own transaction before it deletes any frame, and at shutdown; at
  start the frames committed since are replayed into them, so a restart
  neither re-accepts nor forgets a sequence number;
- ``processed``: processed frames, one row per frame holding its
  measurements as packed columns (``frame_codec.py``; a SQLite row per measurement is what
  would make 200k measurements/s unaffordable).  Measurement ids are
  consecutive across frames in commit order: a row's measurements are
  ``first_id .. first_id + count - 1``, so "how many measurements does a sink
  still owe" is a subtraction.  Rows are kept until every durable sink has
  delivered them (without sinks: for the audit retention);
- ``progress``: how far processing got (``processing``: a frame id) and the
  last measurement id given (``measurements``), written in the same
  transaction as the measurements they cover: after kill -9 processing
  resumes exactly where its last commit left it, and ids never repeat;
- ``cursors``: each sink's last delivered measurement id.

Frame ids are given here, never reused after pruning: the next is one above
both the largest stored and the processing cursor (pruning only deletes
processed frames).  Frame commits run with ``synchronous=FULL``: a frame is
ACKed only after its commit returned, i.e. after the WAL was fsync'd.

Threads: the writer thread owns two connections (frame commits and pruning
with fsync; processed frames and sinks' cursors without); one reader
connection for the event loop (sinks' reads, replay look-ups); one
read-only history connection (``history``), opened at its first use, for
sinks that answer history queries from a worker thread.  Nothing on the
event loop writes: ``save_cursor`` only notes a cursor, the writer thread
stores it with its next transaction (or ``flush_cursors``).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import native
from .errors import OutboxError, OutboxFull
from .spine import KIND_DATA, Measurement, ProcessedFrame
from .storage import disk_space, size_text, storage_problem, write_test
from .windows import TaggedWindow

SCHEMA_VERSION = 3
PROCESSING = "processing"
MEASUREMENTS = "measurements"
HISTORY_SKEW = 600.0  # s: how far a reading's time may be ahead of its frame's arrival (history: node clock ahead)
RECENT_FRAMES = 512  # processed frames kept in memory for sinks that keep up (~8 kB per 32-reading frame)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS frames (
    id INTEGER PRIMARY KEY,
    node TEXT NOT NULL,
    seq INTEGER NOT NULL,
    content_type INTEGER NOT NULL,
    received REAL NOT NULL,            -- arrival, Unix s
    raw BLOB NOT NULL,
    UNIQUE (node, seq)
);
CREATE TABLE IF NOT EXISTS windows (node TEXT PRIMARY KEY, highest INTEGER NOT NULL, bitmap BLOB NOT NULL,
                                    tags BLOB NOT NULL) WITHOUT ROWID;  -- tags: MAC tag per number in the window
CREATE TABLE IF NOT EXISTS processed (
    first_id INTEGER PRIMARY KEY,      -- id of its first measurement (ids consecutive in commit order)
    position INTEGER NOT NULL,         -- 1, 2, 3, ...: the frame's place among processed frames
    frame_id INTEGER NOT NULL,         -- frames.id it came from
    node TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind INTEGER NOT NULL,             -- spine.KIND_NAMES
    received REAL NOT NULL,            -- the frame's arrival, Unix s
    count INTEGER NOT NULL,
    columns BLOB NOT NULL              -- frame_codec.py: channels, times, values, units, quality codes, reasons
);
CREATE TABLE IF NOT EXISTS progress (name TEXT PRIMARY KEY, frame_id INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cursors (route TEXT PRIMARY KEY, last_id INTEGER NOT NULL) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class StoredFrame:
    """A frame as the outbox stores it (what a commit writes, what a restart
    reads back to process)."""

    node: str
    seq: int
    content_type: int
    received: float  # arrival, Unix s
    raw: bytes
    id: int = 0  # frames.id, once stored


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """Cheap figures for gauges, health and the console."""

    frames: int  # held: audit retention and not yet processed
    measurements: int  # held for sinks
    bytes: int  # database pages in use
    max_bytes: int
    last_frame_id: int
    processed_frame_id: int
    last_measurement_id: int
    cursors: dict[str, int]


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={synchronous}")
    connection.execute("PRAGMA busy_timeout=30000")
    return connection


def _write_cursors(db: sqlite3.Connection, cursors: dict[str, int]) -> None:
    db.executemany(
        "INSERT INTO cursors VALUES (?, ?) ON CONFLICT (route) DO UPDATE SET last_id = excluded.last_id",
        list(cursors.items()),
    )


def _rollback(db: sqlite3.Connection) -> None:
    """Roll back if a transaction is open (SQLite may have ended it itself,
    e.g. on a full disk)."""
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def _create_private(path: str) -> None:
    """Create the database file readable by its owner only (plant data);
    SQLite gives its -wal and -shm files the database file's mode."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except PermissionError:
        raise OutboxError(f"{path}: cannot create the outbox database: permission denied on {os.path.dirname(path)}; "
                          f"make it writable by the gateway's user (chown smemet: {os.path.dirname(path)})") from None
    except OSError as exc:
        raise OutboxError(f"{path}: cannot create the outbox database ({exc.strerror})") from None


def _open_hint(directory: str, exc: sqlite3.Error) -> str:
    """What to do when the database does not open, where the cause is known."""
    problem = storage_problem(exc)
    disk = disk_space(directory)
    if disk is not None and disk.read_only:
        return f"; the file system holding {directory} is read-only: remount it read-write"
    if problem == "disk full" or (disk is not None and disk.free < disk.reserve):
        free = "" if disk is None else f" ({size_text(disk.free)} free)"
        return f"; the disk holding {directory} is full{free}: free space there"
    if problem in ("read-only", "cannot open its files") and not os.access(directory, os.W_OK):
        return f"; {directory} is not writable by this user (chown it to the gateway's user)"
    return ""


_codec = native.load("smemet.gateway._frame_codec", "smemet.gateway.frame_codec")


def _first_received_at_or_after(db: sqlite3.Connection, moment: float) -> int | None:
    """The smallest first_id from which every processed row arrived at or
    after ``moment`` (binary search on the primary key; arrival order is
    commit order), or None when no such row exists."""
    low, high = db.execute("SELECT min(first_id), max(first_id) FROM processed").fetchone()
    if low is None:
        return None
    high += 1  # "past the end": no row qualifies

    def first_row_from(position: int):
        return db.execute("SELECT first_id, received FROM processed WHERE first_id >= ? ORDER BY first_id LIMIT 1",
                          (position,)).fetchone()

    while low < high:
        middle = (low + high) // 2
        row = first_row_from(middle)
        if row is None or row[1] >= moment:
            high = middle
        else:
            low = row[0] + 1
    row = first_row_from(low)
    return None if row is None else row[0]


def pack_columns(frame: ProcessedFrame) -> bytes:
    """A processed frame's columns as stored (frame_codec.py has the format)."""
    return _codec.pack(frame.channels, frame.times, frame.values, frame.units, frame.quality, frame.reasons,
                       frame.calibrations)


def unpack_frame(first_id: int, frame_id: int, node: str, seq: int, kind: int, received: float,
                 columns: bytes) -> ProcessedFrame:
    stored = _codec.unpack(columns)  # six columns, a seventh (calibration ids) when the frame had them
    return ProcessedFrame(first_id, frame_id, node, seq, kind, received, *stored[:6],
                          calibrations=stored[6] if len(stored) > 6 else None)


class Outbox:
    """The database and its operations; also the sinks' frame source."""

    def __init__(self, path: str, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.directory = directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise OutboxError(f"{path}: directory {directory} does not exist; create it (owned by the gateway user)")
        _create_private(path)
        try:
            self._writer = _connect(path, "FULL")
            self._writer.executescript(_SCHEMA)
            self._check_schema()
            self._reader = _connect(path, "FULL")
            # Processed frames need no fsync of their own either (see
            # write_processed); a connection of their own spares two PRAGMA
            # switches per processing batch.
            self._processed_db = _connect(path, "NORMAL")
        except sqlite3.Error as exc:
            raise OutboxError(f"{path}: cannot open the outbox database ({exc}){_open_hint(directory, exc)}") from None
        # Sinks save cursors often, on the event loop; writing them there
        # would wait for SQLite's write lock behind a commit's fsync (or a
        # prune), stalling ingest.  So a save only notes the cursor; the
        # writer thread writes the noted ones with the next processing
        # transaction, prune or flush_cursors (no fsync of their own: a
        # cursor lost to a power cut only makes a sink resend, deduplicated
        # by (node, seq); the WAL's order means a cursor never outlives the
        # measurements it points past).
        self._cursor_lock = threading.Lock()
        self._cursors_noted: dict[str, int] = {}
        self.page_size = self._writer.execute("PRAGMA page_size").fetchone()[0]
        stored = self._writer.execute("SELECT coalesce(max(id), 0) FROM frames").fetchone()[0]
        self.last_frame_id = max(stored, self._sequence("frames"), self._progress(PROCESSING))
        self.last_measurement_id = self._progress(MEASUREMENTS)
        row = self._writer.execute("SELECT coalesce(sum(count), 0), coalesce(max(position), 0) FROM processed").fetchone()
        self.held_measurements, self.last_position = row
        self._changed: asyncio.Event | None = None
        # The newest processed frames, also kept in memory for the sinks
        # (they would otherwise read back at once what was just written).
        # Every processed frame from ``_recent[0]`` on is in it; SQLite stays
        # the record and serves any read that starts before it (a lagging
        # sink, a restart).
        self._recent: list[ProcessedFrame] = []  # between RECENT_FRAMES and twice that
        self._recent_first: list[int] = []  # their first ids, for bisect
        self._recent_lock = threading.Lock()
        # The size check costs two PRAGMAs; a commit does it only when what
        # was written since the last check could have used the room left then.
        self._room = 0  # max_bytes - used bytes, at the last exact check
        self._written = 0  # payload bytes stored since then
        self._history_db: sqlite3.Connection | None = None
        self._history_lock = threading.Lock()
        # Why the last write failed for want of storage ("" when none since
        # the last successful probe): a read-only or failing disk looks fine
        # to statvfs, so until a test write succeeds the outbox stays full.
        self.write_failure = ""

    def _sequence(self, table: str) -> int:
        """The largest id an AUTOINCREMENT ``table`` ever used (outboxes
        upgraded from schema 2 have one); 0 without."""
        try:
            row = self._writer.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
        except sqlite3.OperationalError:  # no AUTOINCREMENT table at all
            return 0
        return row[0] if row else 0

    def _meta(self, key: str, default: int = 0) -> int:
        row = self._writer.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def _progress(self, name: str) -> int:
        row = self._writer.execute("SELECT frame_id FROM progress WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    def _check_schema(self) -> None:
        row = self._writer.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            self._writer.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        elif row[0] == 2:
            from .outbox_migrate import migrate_2_to_3

            migrate_2_to_3(self._writer)
        elif row[0] != SCHEMA_VERSION:
            raise OutboxError(f"{self.path}: outbox schema {row[0]} is not {SCHEMA_VERSION}; use the gateway version that wrote it")

    def close(self) -> None:
        with self._history_lock:
            history, self._history_db = self._history_db, None
        try:
            self.flush_cursors()
        except sqlite3.Error:  # closing anyway: a lost cursor only makes a sink resend
            pass
        for connection in (self._reader, self._processed_db, self._writer, *([history] if history else [])):
            try:
                connection.close()
            except sqlite3.Error:
                pass

    # ------------------------------------------------------------ writer thread

    def used_bytes(self) -> int:
        """Bytes of database pages in use (free pages are reused first)."""
        pages = self._writer.execute("PRAGMA page_count").fetchone()[0]
        free = self._writer.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * self.page_size

    def storage_state(self) -> str:
        """Why nothing more may be stored now, "" when there is room: the
        size limit, a file system that is full (below its reserve,
        storage.py) or read-only, or a write that failed for want of
        storage and still fails (a test write, fsync'd, says so)."""
        if self.write_failure:
            try:
                self._writer.execute("BEGIN IMMEDIATE")
                try:
                    self._writer.execute("INSERT OR REPLACE INTO meta VALUES ('storage_probe', ?)", (os.getpid(),))
                    self._writer.execute("COMMIT")
                except BaseException:
                    _rollback(self._writer)
                    raise
            except sqlite3.Error as exc:
                if storage_problem(exc) is None:
                    raise
                self.write_failure = self._storage_text(exc)
                self._room, self._written = 0, 0
                return self.write_failure
            self.write_failure = ""
        used = self.used_bytes()
        room = self.max_bytes - used
        disk = disk_space(self.directory)
        if disk is not None:
            free_pages = self._writer.execute("PRAGMA freelist_count").fetchone()[0] * self.page_size
            room = min(room, disk.free + free_pages - disk.reserve)  # free pages are reused before the file grows
        self._room, self._written = room, 0
        if disk is not None and disk.read_only:
            return f"the file system holding {self.directory} is read-only"
        if used >= self.max_bytes:
            return f"outbox uses {size_text(used)} of [outbox] max_bytes {size_text(self.max_bytes)}"
        if room <= 0:
            return (f"disk full: {size_text(disk.free)} free on the file system holding {self.directory}, "
                    f"below the {size_text(disk.reserve)} the gateway keeps free for pruning")
        return ""

    def is_full(self) -> bool:
        return bool(self.storage_state())

    def _may_be_full(self) -> bool:
        """``is_full``, skipped while the bytes written since the last check
        (x4 for pages, indexes and row headers, plus 64 KiB) fit in the room
        left then; pruning only adds room, so skipping is never wrong."""
        if self._written * 4 + 65536 < self._room:
            return False
        return self.is_full()

    def _storage_text(self, exc: BaseException) -> str:
        problem = storage_problem(exc)
        if problem in ("I/O error", "read-only", "cannot open its files"):
            problem = write_test(self.directory) or problem  # which one: SQLite says "disk I/O error" for most
        disk = disk_space(self.directory)
        free = "" if disk is None else f", {size_text(disk.free)} free"
        return f"cannot write {self.path}: {problem} ({exc}{free})"

    def _storage_failed(self, exc: BaseException) -> OutboxFull | None:
        """The OutboxFull to raise for ``exc`` when it is a storage failure
        (remembered until a test write succeeds), else None."""
        if storage_problem(exc) is None:
            return None
        self.write_failure = self._storage_text(exc)
        self._room, self._written = 0, 0
        return OutboxFull(self.write_failure)

    def load_windows(self) -> dict[str, TaggedWindow]:
        """Every node's replay window: as saved, then moved by the frames
        committed since (in commit order, as the commits moved them)."""
        rows = self._writer.execute("SELECT node, highest, bitmap, tags FROM windows").fetchall()
        windows = {node: TaggedWindow(highest, int.from_bytes(bitmap, "big"), tags)
                   for node, highest, bitmap, tags in rows}
        for node, seq, tag in self._writer.execute(
            "SELECT node, seq, substr(raw, -8) FROM frames WHERE id > ? ORDER BY id", (self._meta("windows_frame"),)
        ):
            window = windows.get(node)
            if window is None:
                window = windows[node] = TaggedWindow()
            window.accept(seq, bytes(tag))
        return windows

    def _save_windows(self, windows: dict[str, TaggedWindow], covered_frame_id: int) -> None:
        """(In an open transaction.)  ``windows`` as they stand after frame
        ``covered_frame_id``."""
        self._writer.executemany(
            "INSERT OR REPLACE INTO windows VALUES (?, ?, ?, ?)",
            [(node, w.highest, w.bitmap.to_bytes(8, "big"), bytes(w.tags)) for node, w in windows.items()],
        )
        self._writer.execute("INSERT OR REPLACE INTO meta VALUES ('windows_frame', ?)", (covered_frame_id,))

    def save_windows(self, windows: dict[str, TaggedWindow], covered_frame_id: int) -> None:
        """Save replay windows (copies, as they stand after frame
        ``covered_frame_id``), so a start replays fewer frames."""
        db = self._writer
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                self._save_windows(windows, covered_frame_id)
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise
        except sqlite3.Error as exc:
            raise self._storage_failed(exc) or exc from None

    def commit_frames(self, frames: Sequence[StoredFrame]) -> int:
        """Store ``frames`` in one durable transaction; returns the id of the
        last frame (ids are consecutive).  Raises OutboxFull (nothing stored)
        when the size limit is reached or the disk is full, failing or
        read-only."""
        if self._may_be_full():
            raise OutboxFull(self.storage_state() or f"outbox uses {self.used_bytes()} of {self.max_bytes} bytes")
        db = self._writer
        first = self.last_frame_id + 1
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT INTO frames (id, node, seq, content_type, received, raw) VALUES (?, ?, ?, ?, ?, ?)",
                    [(first + i, f.node, f.seq, f.content_type, f.received, f.raw) for i, f in enumerate(frames)],
                )
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise
        except sqlite3.Error as exc:
            raise self._storage_failed(exc) or exc from None
        self.last_frame_id = first + len(frames) - 1
        # The WAL grows by whole pages per commit (a table and an index leaf
        # at least) until a checkpoint: on a small disk that, not the
        # payload, is what fills it between two exact checks.
        self._written += sum(len(f.raw) + 64 for f in frames) + 2 * self.page_size
        return self.last_frame_id

    def processing_cursor(self) -> int:
        return self._progress(PROCESSING)

    def _frames_where(self, where: str, arguments: tuple) -> list[StoredFrame]:
        return [
            StoredFrame(node, seq, content_type, received, raw, id_)
            for id_, node, seq, content_type, received, raw in self._writer.execute(
                f"SELECT id, node, seq, content_type, received, raw FROM frames WHERE {where}", arguments
            )
        ]

    def frames_after(self, after_id: int, limit: int) -> list[StoredFrame]:
        """Stored frames after ``after_id`` (a frame id), oldest first (after
        the processing cursor: the frames not processed yet)."""
        return self._frames_where("id > ? ORDER BY id LIMIT ?", (after_id, limit))

    def processed_frames_since(self, seconds: float, max_frames: int) -> list[StoredFrame]:
        """The processed frames received in the ``seconds`` before the last
        processed one, oldest first, at most the ``max_frames`` newest of
        them.  Walks back from the processing cursor by id (no index on
        ``received`` needed)."""
        found: list[StoredFrame] = []
        before = self.processing_cursor() + 1
        newest = None
        while len(found) < max_frames:
            chunk = self._frames_where("id < ? ORDER BY id DESC LIMIT ?", (before, min(1024, max_frames - len(found))))
            if not chunk:
                break
            if newest is None:
                newest = chunk[0].received
            kept = [frame for frame in chunk if frame.received >= newest - seconds]
            found += kept
            if len(kept) < len(chunk):
                break  # reached frames older than the span
            before = chunk[-1].id
        found.reverse()
        return found

    def write_processed(self, frames: Sequence[ProcessedFrame], last_frame_id: int, also=None) -> int:
        """Store processed frames (ascending, consecutive ids after the last
        stored) and move the processing cursor to ``last_frame_id``,
        atomically; returns the last measurement id.  ``also(db,
        last_frame_id)``, if given, writes what must move with them in the
        same transaction (the thermocouple lives' counts: calibration/store.py).

        No fsync of its own: any later durable commit (the next frame group,
        a sink's cursor) carries it, and a sink can only advance its cursor
        over measurements a durable commit already covers."""
        expected = self.last_measurement_id + 1
        records = []
        position = self.last_position
        for frame in frames:
            if frame.first_id != expected or frame.offsets is not None:
                raise ValueError(f"processed frame ids must continue at {expected}, not {frame.first_id}")
            position += 1
            count = len(frame.channels)
            records.append((frame.first_id, position, frame.frame_id, frame.node, frame.seq, frame.kind,
                            frame.received, count, pack_columns(frame)))
            expected += count
        last_id = expected - 1
        db = self._processed_db
        noted = self._take_noted_cursors()  # ride along: no transaction of their own
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT INTO processed VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", records)
                db.executemany("INSERT OR REPLACE INTO progress VALUES (?, ?)",
                               ((PROCESSING, last_frame_id), (MEASUREMENTS, last_id)))
                if noted:
                    _write_cursors(db, noted)
                if also is not None:
                    also(db, last_frame_id)
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise
        except sqlite3.Error as exc:  # nothing stored: processing tries the same frames again
            self._renote_cursors(noted)
            raise self._storage_failed(exc) or exc from None
        except BaseException:
            self._renote_cursors(noted)
            raise
        self._written += sum(len(r[8]) + 64 for r in records) + 2 * self.page_size
        with self._recent_lock:
            self._recent.extend(frames)
            self._recent_first.extend(frame.first_id for frame in frames)
            if len(self._recent) > 2 * RECENT_FRAMES:
                del self._recent[:-RECENT_FRAMES], self._recent_first[:-RECENT_FRAMES]
        self.last_position = position
        self.held_measurements += last_id - self.last_measurement_id
        self.last_measurement_id = last_id
        return last_id

    def prune(self, now: float, audit_retention: float, sinks: Sequence[str],
              windows: dict[str, TaggedWindow] | None = None, covered_frame_id: int = 0,
              keep_processed: float = 0.0) -> tuple[int, int]:
        """Delete processed frames older than the audit retention, and
        processed measurements every durable sink delivered (without sinks:
        older than the retention).  ``windows`` (copies, as they stand after
        frame ``covered_frame_id``) are saved first, in the same transaction:
        only frames they cover are deleted.  ``keep_processed``: seconds of
        processed measurements (by arrival) kept even when delivered, for
        sinks that answer history queries.  Returns (frames, measurements)
        deleted."""
        db = self._writer
        cutoff = now - audit_retention
        hold = now - keep_processed  # processed rows that arrived after this stay
        noted = self._take_noted_cursors()  # what sinks delivered up to now counts
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._renote_cursors(noted)
            raise self._storage_failed(exc) or exc from None
        try:
            if noted:
                _write_cursors(db, noted)
            if windows is not None:
                self._save_windows(windows, covered_frame_id)
            deletable = min(self.processing_cursor(), self._meta("windows_frame"))
            frames = db.execute("DELETE FROM frames WHERE id <= ? AND received < ?", (deletable, cutoff)).rowcount
            if sinks:
                placeholders = ",".join("?" * len(sinks))
                known = db.execute(
                    f"SELECT count(*), coalesce(min(last_id), 0) FROM cursors WHERE route IN ({placeholders})", list(sinks)
                ).fetchone()
                delivered = known[1] if known[0] == len(sinks) else 0
                where, arguments = "first_id <= ? AND first_id + count - 1 <= ?", (delivered, delivered)
                if keep_processed > 0:
                    where, arguments = where + " AND received < ?", (*arguments, hold)
            else:
                where, arguments = "received < ?", (min(cutoff, hold),)
            measurements = db.execute(f"SELECT coalesce(sum(count), 0) FROM processed WHERE {where}", arguments).fetchone()[0]
            db.execute(f"DELETE FROM processed WHERE {where}", arguments)
            db.execute("COMMIT")
        except sqlite3.Error as exc:  # on a full disk a DELETE needs WAL room too (storage.py: the reserve)
            _rollback(db)
            self._renote_cursors(noted)
            raise self._storage_failed(exc) or exc from None
        except BaseException:
            _rollback(db)
            self._renote_cursors(noted)
            raise
        self.held_measurements -= measurements
        with self._recent_lock:  # memory holds no more than the database
            gone = 0
            for frame in self._recent:
                gone_from_db = (frame.last_id <= delivered and (keep_processed <= 0 or frame.received < hold)) \
                    if sinks else frame.received < min(cutoff, hold)
                if not gone_from_db:
                    break
                gone += 1
            del self._recent[:gone], self._recent_first[:gone]
        return frames, measurements

    def checkpoint(self) -> None:
        """Fold the WAL into the database so it does not grow unbounded."""
        try:
            self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            raise self._storage_failed(exc) or exc from None

    # ------------------------------------------------------------ event loop

    def has_frame(self, node: str, seq: int) -> bool:
        """Whether (node, seq) is stored: a retransmission below the window."""
        return self._reader.execute("SELECT 1 FROM frames WHERE node = ? AND seq = ?", (node, seq)).fetchone() is not None

    def frame_tag(self, node: str, seq: int) -> bytes | None:
        """The MAC tag of the stored frame (node, seq), or None.  A verified
        frame ends with its 8-byte tag, whatever its unprotected header."""
        row = self._reader.execute("SELECT substr(raw, -8) FROM frames WHERE node = ? AND seq = ?", (node, seq)).fetchone()
        return None if row is None else bytes(row[0])

    def stats(self) -> OutboxStats:
        """Cheap figures for the gauges (counts from id ranges: ids are
        consecutive and pruning removes from the low end)."""
        db = self._reader
        low_frame = db.execute("SELECT min(id) FROM frames").fetchone()[0]
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        processed = db.execute("SELECT frame_id FROM progress WHERE name = ?", (PROCESSING,)).fetchone()
        return OutboxStats(
            frames=0 if low_frame is None else self.last_frame_id - low_frame + 1,
            measurements=self.held_measurements,
            bytes=(pages - free) * self.page_size,
            max_bytes=self.max_bytes,
            last_frame_id=self.last_frame_id,
            processed_frame_id=processed[0] if processed else 0,
            last_measurement_id=self.last_measurement_id,
            cursors=self.cursors(),
        )

    def cursors(self) -> dict[str, int]:
        stored = dict(self._reader.execute("SELECT route, last_id FROM cursors").fetchall())
        with self._cursor_lock:
            stored.update(self._cursors_noted)
        return stored

    def lag(self, cursor: int) -> tuple[int, int]:
        """(measurements, frames) processed after measurement id ``cursor``."""
        measurements = max(0, self.last_measurement_id - cursor)
        if not measurements:
            return 0, 0
        row = self._reader.execute(
            "SELECT position, first_id + count - 1 FROM processed WHERE first_id <= ? ORDER BY first_id DESC LIMIT 1",
            (cursor,),
        ).fetchone()
        if row is None:  # before everything still held
            first = self._reader.execute("SELECT min(position) FROM processed").fetchone()[0]
            return measurements, 0 if first is None else self.last_position - first + 1
        position, last_of_frame = row
        return measurements, self.last_position - position + (1 if last_of_frame > cursor else 0)

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._changed = asyncio.Event()

    def notify(self) -> None:
        """Wake ``wait_beyond`` callers (call on the loop after processing)."""
        if self._changed is not None:
            self._changed.set()

    async def wait_beyond(self, after_id: int, timeout: float | None = None) -> None:
        """Return when a measurement with id > ``after_id`` exists (or on timeout)."""
        if self._changed is None:
            self.bind_loop(asyncio.get_running_loop())
        assert self._changed is not None
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self.last_measurement_id <= after_id:
            self._changed.clear()
            if self.last_measurement_id > after_id:
                return
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return

    def read_frames(self, after_id: int, max_frames: int) -> list[ProcessedFrame]:
        """Up to ``max_frames`` processed frames holding measurement ids >
        ``after_id``, oldest first; the first is cut at ``after_id`` when the
        position falls inside it.  From memory when memory holds every frame
        from there on, else from SQLite."""
        with self._recent_lock:
            if self._recent and self._recent_first[0] <= after_id + 1:
                at = max(0, bisect_right(self._recent_first, after_id) - 1)  # the frame holding after_id, or the next
                frames = self._recent[at:at + max_frames + 1]
                if frames and frames[0].last_id <= after_id:
                    del frames[0]
                del frames[max_frames:]
            else:
                frames = None
        if frames is None:
            frames = [
                unpack_frame(*row)
                for row in self._reader.execute(
                    "SELECT first_id, frame_id, node, seq, kind, received, columns FROM processed"
                    " WHERE first_id >= coalesce((SELECT max(first_id) FROM processed WHERE first_id <= ?), 0)"
                    " ORDER BY first_id LIMIT ?",
                    (after_id, max_frames + 1),
                )
            ]
            frames = [frame for frame in frames if frame.last_id > after_id][:max_frames]
        if frames and frames[0].first_id <= after_id:
            first = frames[0].after(after_id)
            frames[0] = first  # type: ignore[assignment]  (never None: its last id is beyond after_id)
        return frames

    def read(self, after_id: int, limit: int) -> list[Measurement]:
        """Up to ``limit`` measurements with id > ``after_id``, ascending (for
        tools and tests; sinks read whole frames)."""
        out: list[Measurement] = []
        position = after_id
        while len(out) < limit:
            frames = self.read_frames(position, 64)
            if not frames:
                break
            for frame in frames:
                for measurement in frame.measurements():
                    out.append(measurement)
                    if len(out) >= limit:
                        return out
            position = frames[-1].last_id
        return out

    def history(self, channels: Iterable[tuple[str, str]], start: float, end: float,
                skew: float = HISTORY_SKEW) -> dict[tuple[str, str], list[Measurement]]:
        """The data measurements still held of each (node, channel) in
        ``channels`` with ``start <= time <= end``, each channel's in
        (time, id) order.  Read-only, on its own connection: call it from a
        worker thread.

        Rows are found by their frame's arrival: a reading is never taken
        after its frame arrived (node clocks follow the gateway's ACKs), so
        rows that arrived before ``start - skew`` are skipped, found by a
        binary search over the row ids (arrival order is commit order; the
        skew also covers a wall clock stepped back a little)."""
        wanted: dict[str, set[str]] = {}
        for node, channel in channels:
            wanted.setdefault(node, set()).add(channel)
        found: dict[tuple[str, str], list[Measurement]] = {(n, c): [] for n, cs in wanted.items() for c in cs}
        if not wanted or end < start:
            return found
        with self._history_lock:
            db = self._history_db
            if db is None:
                db = self._history_db = _connect(self.path, "NORMAL")
                db.execute("PRAGMA query_only=1")
            first = _first_received_at_or_after(db, start - skew)
            if first is None:
                return found
            nodes = sorted(wanted)
            node_filter = f" AND node IN ({','.join('?' * len(nodes))})" if len(nodes) <= 500 else ""
            rows = db.execute(
                "SELECT first_id, frame_id, node, seq, kind, received, columns FROM processed"
                f" WHERE first_id >= ? AND kind = ?{node_filter} ORDER BY first_id",
                (first, KIND_DATA, *(nodes if node_filter else ())),
            ).fetchall()
        for row in rows:
            names = wanted.get(row[2])
            if names is None:
                continue
            frame = unpack_frame(*row)
            for i, channel in enumerate(frame.channels):
                if channel in names and start <= frame.times[i] <= end:
                    found[(frame.node, channel)].append(frame.measurement(i))
        for measurements in found.values():
            measurements.sort(key=lambda m: (m.time, m.id))
        return found

    def load_cursor(self, sink: str) -> int:
        with self._cursor_lock:
            noted = self._cursors_noted.get(sink)
        if noted is not None:
            return noted
        row = self._reader.execute("SELECT last_id FROM cursors WHERE route = ?", (sink,)).fetchone()
        return row[0] if row else 0

    def save_cursor(self, sink: str, last_id: int) -> None:
        """Note ``sink``'s cursor (any thread, never waits on the database);
        the writer thread stores it soon (see flush_cursors)."""
        with self._cursor_lock:
            self._cursors_noted[sink] = last_id

    @property
    def cursors_waiting(self) -> bool:
        """Whether cursors were noted that are not stored yet."""
        return bool(self._cursors_noted)

    def flush_cursors(self) -> None:
        """Writer thread: store the cursors noted since the last flush."""
        noted = self._take_noted_cursors()
        if not noted:
            return
        db = self._processed_db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                _write_cursors(db, noted)
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise
        except sqlite3.Error as exc:  # the sinks resend from their last stored cursors: deduplicated by (node, seq)
            self._renote_cursors(noted)
            raise self._storage_failed(exc) or exc from None
        except BaseException:
            self._renote_cursors(noted)
            raise

    def _take_noted_cursors(self) -> dict[str, int]:
        with self._cursor_lock:
            noted, self._cursors_noted = self._cursors_noted, {}
        return noted

    def _renote_cursors(self, noted: dict[str, int]) -> None:
        """Not stored after all: note them again unless newer ones came."""
        with self._cursor_lock:
            for sink, last_id in noted.items():
                self._cursors_noted.setdefault(sink, last_id)
