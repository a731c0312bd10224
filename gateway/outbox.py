"""The durable outbox: one SQLite database in WAL mode.

Tables
- ``frames``: every accepted frame, raw, once per (node, seq) (UNIQUE), kept
  until it is processed and past the audit retention;
- ``windows``: each node's replay window, written in the same transaction as
  the frames that moved it, so a restart neither re-accepts nor forgets;
- ``measurements``: processed measurements, one row per frame holding all of
  that frame's measurements (marshal'd tuples: one SQLite row per frame is
  what makes 200k measurements/s affordable); a measurement's id is
  ``frame_id * ID_SPACE + index``.  Routes read them in id order; they are
  kept until every configured route has delivered them;
- ``progress``: how far processing got (a frame id), written in the same
  transaction as the measurements it produced: after kill -9 processing
  resumes exactly where its last commit left it;
- ``cursors``: each route's last delivered measurement id.

Frame ids use AUTOINCREMENT so they are never reused after pruning (cursors
compare ids, measurement ids derive from frame ids).  Frame commits run with ``synchronous=FULL``: a frame is ACKed only
after its commit returned, i.e. after the WAL was fsync'd.

Threads: one writer connection, used by one worker thread (frame commits,
processing, pruning); one reader connection for the event loop (routes'
``read``, replay look-ups); one cursor connection for routes' ``save_cursor``.
"""

from __future__ import annotations

import asyncio
import marshal
import os
import sqlite3
import threading
from bisect import bisect_left
from collections.abc import Iterable, Sequence

from .windows import TaggedWindow

from .errors import OutboxError, OutboxFull
from .model import QUALITY_BAD, QUALITY_GOOD, QUALITY_UNCERTAIN, Measurement

SCHEMA_VERSION = 2
ID_SPACE = 4096  # measurement id = frame id * ID_SPACE + index: a frame yields < 1024 rows
QUALITY_NAMES = (QUALITY_GOOD, QUALITY_UNCERTAIN, QUALITY_BAD)  # stored as the index
KIND_NAMES = ("data", "status")
PROCESSING = "processing"
RECENT_FRAMES = 256  # processed frames kept in memory for routes (between this and twice this; ~7 kB per 32-reading frame)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS frames (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node TEXT NOT NULL,
    seq INTEGER NOT NULL,
    content_type INTEGER NOT NULL,
    received REAL NOT NULL,            -- arrival, Unix s
    raw BLOB NOT NULL,
    UNIQUE (node, seq)
);
CREATE TABLE IF NOT EXISTS windows (node TEXT PRIMARY KEY, highest INTEGER NOT NULL, bitmap BLOB NOT NULL,
                                    tags BLOB NOT NULL) WITHOUT ROWID;  -- tags: MAC tag per number in the window
CREATE TABLE IF NOT EXISTS measurements (
    frame_id INTEGER PRIMARY KEY,      -- the frame they were attributed to (frames.id)
    node TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind INTEGER NOT NULL,             -- index into KIND_NAMES
    received REAL NOT NULL,            -- the frame's arrival, Unix s
    count INTEGER NOT NULL,
    rows BLOB NOT NULL                 -- marshal: tuple of (channel, time, value, unit, quality, reason)
);
CREATE TABLE IF NOT EXISTS progress (name TEXT PRIMARY KEY, frame_id INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cursors (route TEXT PRIMARY KEY, last_id INTEGER NOT NULL) WITHOUT ROWID;
"""




def _is_full_error(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code == sqlite3.SQLITE_FULL or "full" in str(exc).lower()


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={synchronous}")
    connection.execute("PRAGMA busy_timeout=30000")
    return connection


class FrameRow:
    """What a frame commit stores (built by the pipeline)."""

    __slots__ = ("node", "seq", "content_type", "received", "raw")

    def __init__(self, node: str, seq: int, content_type: int, received: float, raw: bytes) -> None:
        self.node = node
        self.seq = seq
        self.content_type = content_type
        self.received = received
        self.raw = raw


class Outbox:
    """The database and its operations; also the routes' MeasurementSource."""

    def __init__(self, path: str, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise OutboxError(f"{path}: directory {directory} does not exist; create it (owned by the gateway user)")
        try:
            self._writer = _connect(path, "FULL")
            self._writer.executescript(_SCHEMA)
            self._check_schema()
            self._reader = _connect(path, "FULL")
            # Routes save cursors often, on the event loop: no fsync of their own
            # (WAL, NORMAL).  A cursor commit lost to a power cut only makes a
            # route resend (deduplicated by (node, seq)); the WAL's order means
            # a cursor never outlives the measurements it points past.
            self._cursor_db = _connect(path, "NORMAL")
        except sqlite3.Error as exc:
            raise OutboxError(f"{path}: cannot open the outbox database ({exc})") from None
        self._cursor_lock = threading.Lock()
        self.page_size = self._writer.execute("PRAGMA page_size").fetchone()[0]
        self.last_frame_id = self._sequence("frames")
        row = self._writer.execute(
            "SELECT frame_id, count FROM measurements ORDER BY frame_id DESC LIMIT 1"
        ).fetchone()
        self.last_measurement_id = row[0] * ID_SPACE + row[1] - 1 if row else 0
        self.held_measurements = self._writer.execute("SELECT coalesce(sum(count), 0) FROM measurements").fetchone()[0]
        self._changed: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # The size check costs two PRAGMAs; a commit does it only when what
        # was written since the last check could have used the room left then.
        # The newest processed frames, also kept in memory for the routes
        # (they would otherwise read back at once what was just written):
        # (frame_id, node, seq, kind, rows) in frame order; every stored frame
        # with frame_id >= _recent_from is in it.  SQLite stays the record and
        # serves any read that starts before it (a lagging route, a restart).
        self._recent: list[tuple] = []
        self._recent_ids: list[int] = []
        self._recent_from: int | None = None
        self._recent_lock = threading.Lock()
        self._recent_off = False
        self._room = 0  # max_bytes - used bytes, at the last exact check
        self._written = 0  # payload bytes stored since then

    def _sequence(self, table: str) -> int:
        """The largest id ``table`` ever used (pruning does not lower it)."""
        row = self._writer.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
        return row[0] if row else 0

    def _check_schema(self) -> None:
        row = self._writer.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            self._writer.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        elif row[0] != SCHEMA_VERSION:
            raise OutboxError(f"{self.path}: outbox schema {row[0]} is not {SCHEMA_VERSION}; use the gateway version that wrote it")

    def close(self) -> None:
        for connection in (self._reader, self._cursor_db, self._writer):
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

    def is_full(self) -> bool:
        used = self.used_bytes()
        self._room, self._written = self.max_bytes - used, 0
        return used >= self.max_bytes

    def _may_be_full(self) -> bool:
        """``is_full``, skipped while the bytes written since the last check
        (x4 for pages, indexes and row headers, plus 64 KiB) fit in the room
        left then; pruning only adds room, so skipping is never wrong."""
        if self._written * 4 + 65536 < self._room:
            return False
        return self.is_full()

    def load_windows(self) -> dict[str, TaggedWindow]:
        rows = self._writer.execute("SELECT node, highest, bitmap, tags FROM windows").fetchall()
        return {node: TaggedWindow(highest, int.from_bytes(bitmap, "big"), tags) for node, highest, bitmap, tags in rows}

    def commit_frames(self, frames: Sequence[FrameRow], windows: Iterable[tuple[str, TaggedWindow]]) -> int:
        """Store ``frames`` and the replay windows they moved in one durable
        transaction; returns the id of the last frame (ids are consecutive).
        Raises OutboxFull (nothing stored) when the size limit or the disk
        is reached."""
        if self._may_be_full():
            raise OutboxFull(f"outbox uses {self.used_bytes()} of {self.max_bytes} bytes")
        db = self._writer
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                first = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'frames'").fetchone()
                db.executemany(
                    "INSERT INTO frames (node, seq, content_type, received, raw) VALUES (?, ?, ?, ?, ?)",
                    [(f.node, f.seq, f.content_type, f.received, f.raw) for f in frames],
                )
                db.executemany(
                    "INSERT OR REPLACE INTO windows VALUES (?, ?, ?, ?)",
                    [(node, w.highest, w.bitmap.to_bytes(8, "big"), bytes(w.tags)) for node, w in windows],
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            if _is_full_error(exc):
                raise OutboxFull(f"disk full writing {self.path}") from None
            raise
        self.last_frame_id = (first[0] if first else 0) + len(frames)
        self._written += sum(len(f.raw) + 64 for f in frames)
        return self.last_frame_id

    def processing_cursor(self) -> int:
        row = self._writer.execute("SELECT frame_id FROM progress WHERE name = ?", (PROCESSING,)).fetchone()
        return row[0] if row else 0

    def unprocessed_frames(self, after_id: int, limit: int) -> list[tuple[int, str, int, int, float, bytes]]:
        """(id, node, seq, content_type, received, raw) after ``after_id``."""
        return self._writer.execute(
            "SELECT id, node, seq, content_type, received, raw FROM frames WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()

    def processed_frames_since(self, seconds: float, max_frames: int) -> list[tuple[int, str, int, int, float, bytes]]:
        """(id, node, seq, content_type, received, raw) of the processed frames
        received in the ``seconds`` before the last processed one, oldest
        first, at most the ``max_frames`` newest of them.  Walks back from the
        processing cursor by id (no index on ``received`` needed)."""
        found: list[tuple] = []
        before = self.processing_cursor() + 1
        newest = None
        while len(found) < max_frames:
            chunk = self._writer.execute(
                "SELECT id, node, seq, content_type, received, raw FROM frames WHERE id < ? ORDER BY id DESC LIMIT ?",
                (before, min(1024, max_frames - len(found))),
            ).fetchall()
            if not chunk:
                break
            if newest is None:
                newest = chunk[0][4]
            kept = [row for row in chunk if row[4] >= newest - seconds]
            found += kept
            if len(kept) < len(chunk):
                break  # reached frames older than the span
            before = chunk[-1][0]
        found.reverse()
        return found

    def write_processed(self, frames: Sequence[tuple], last_frame_id: int) -> int:
        """Store processed frames -- (frame_id, node, seq, kind, received,
        rows) with rows a sequence of (channel, time, value, unit, quality
        code, reason) -- and move the processing cursor to ``last_frame_id``,
        atomically; returns the last measurement id.

        No fsync of its own: any later durable commit (the next frame group,
        a route's cursor) carries it, and a route can only advance its cursor
        over measurements a durable commit already covers."""
        dumps = marshal.dumps
        records = [
            (frame_id, node, seq, kind, received, len(rows), dumps(tuple(rows)))
            for frame_id, node, seq, kind, received, rows in frames
            if rows
        ]
        db = self._writer
        db.execute("PRAGMA synchronous=NORMAL")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT INTO measurements VALUES (?, ?, ?, ?, ?, ?, ?)", records)
                db.execute("INSERT OR REPLACE INTO progress VALUES (?, ?)", (PROCESSING, last_frame_id))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        finally:
            db.execute("PRAGMA synchronous=FULL")
        self._written += sum(len(r[6]) + 64 for r in records)
        self._remember(frames)
        if records:
            last = records[-1]
            self.last_measurement_id = max(self.last_measurement_id, last[0] * ID_SPACE + last[5] - 1)
            self.held_measurements += sum(r[5] for r in records)
        return self.last_measurement_id

    def _remember(self, frames: Sequence[tuple]) -> None:
        """Keep the frames just committed in memory for ``read_frames``."""
        with self._recent_lock:
            if self._recent_off:
                return
            for frame_id, node, seq, kind, _received, rows in frames:
                if rows:
                    if self._recent_ids and frame_id <= self._recent_ids[-1]:
                        # Out of order (cannot happen: processing follows commit
                        # order): memory could no longer vouch for completeness.
                        self._recent, self._recent_ids, self._recent_from = [], [], None
                        self._recent_off = True
                        return
                    if self._recent_from is None:
                        self._recent_from = frame_id
                    self._recent.append((frame_id, node, seq, kind, rows))
                    self._recent_ids.append(frame_id)
            if len(self._recent) > 2 * RECENT_FRAMES:
                del self._recent[:RECENT_FRAMES], self._recent_ids[:RECENT_FRAMES]
                self._recent_from = self._recent_ids[0]

    def prune(self, now: float, audit_retention: float, routes: Sequence[str]) -> tuple[int, int]:
        """Delete processed frames older than the audit retention, and
        measurements every configured route delivered (without routes: older
        than the retention).  Returns (frames, measurements) deleted."""
        db = self._writer
        cutoff = now - audit_retention
        processed = self.processing_cursor()
        db.execute("BEGIN IMMEDIATE")
        try:
            frames = db.execute("DELETE FROM frames WHERE id <= ? AND received < ?", (processed, cutoff)).rowcount
            if routes:
                placeholders = ",".join("?" * len(routes))
                known = db.execute(
                    f"SELECT count(*), coalesce(min(last_id), 0) FROM cursors WHERE route IN ({placeholders})", list(routes)
                ).fetchone()
                delivered = known[1] if known[0] == len(routes) else 0
                where = "frame_id <= ? AND frame_id * ? + count - 1 <= ?"
                arguments: tuple = (delivered // ID_SPACE, ID_SPACE, delivered)
            else:
                where, arguments = "received < ?", (cutoff,)
            measurements = db.execute(f"SELECT coalesce(sum(count), 0) FROM measurements WHERE {where}", arguments).fetchone()[0]
            db.execute(f"DELETE FROM measurements WHERE {where}", arguments)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.held_measurements -= measurements
        return frames, measurements

    def checkpoint(self) -> None:
        """Fold the WAL into the database so it does not grow unbounded."""
        self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # ------------------------------------------------------------ event loop

    def has_frame(self, node: str, seq: int) -> bool:
        """Whether (node, seq) is stored: a retransmission below the window."""
        return self._reader.execute("SELECT 1 FROM frames WHERE node = ? AND seq = ?", (node, seq)).fetchone() is not None

    def frame_tag(self, node: str, seq: int) -> bytes | None:
        """The MAC tag of the stored frame (node, seq), or None.  A verified
        frame ends with its 8-byte tag, whatever its unprotected header."""
        row = self._reader.execute("SELECT substr(raw, -8) FROM frames WHERE node = ? AND seq = ?", (node, seq)).fetchone()
        return None if row is None else bytes(row[0])

    def stats(self) -> dict:
        """Cheap figures for the gauges (counts from id ranges: ids are
        consecutive and pruning removes from the low end)."""
        db = self._reader
        low_frame = db.execute("SELECT min(id) FROM frames").fetchone()[0]
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        processed = db.execute("SELECT frame_id FROM progress WHERE name = ?", (PROCESSING,)).fetchone()
        return {
            "frames": 0 if low_frame is None else self.last_frame_id - low_frame + 1,
            "measurements": self.held_measurements,
            "bytes": (pages - free) * self.page_size,
            "processed": processed[0] if processed else 0,
            "cursors": self.route_cursors(),
        }

    def route_cursors(self) -> dict[str, int]:
        return dict(self._reader.execute("SELECT route, last_id FROM cursors").fetchall())

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._changed = asyncio.Event()

    def notify(self) -> None:
        """Wake ``wait_beyond`` callers (call on the loop after processing)."""
        if self._changed is not None:
            self._changed.set()

    # MeasurementSource

    async def wait_beyond(self, after_id: int, timeout: float | None = None) -> None:
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

    def read(self, after_id: int, limit: int) -> list[Measurement]:
        frames = self._reader.execute(
            "SELECT frame_id, node, seq, kind, rows FROM measurements WHERE frame_id >= ? ORDER BY frame_id LIMIT ?",
            (after_id // ID_SPACE, limit),
        ).fetchall()
        out: list[Measurement] = []
        loads = marshal.loads
        for frame_id, node, seq, kind, blob in frames:
            base = frame_id * ID_SPACE
            kind_name = KIND_NAMES[kind]
            for index, (channel, time, value, unit, quality, reason) in enumerate(loads(blob)):
                id_ = base + index
                if id_ <= after_id:
                    continue
                if type(value) is bytes:
                    value = value.hex()
                out.append(Measurement(id_, node, seq, channel, time, value, unit, QUALITY_NAMES[quality], reason, kind_name))
                if len(out) >= limit:
                    return out
        return out

    def read_frames(self, after_id: int, max_frames: int) -> list[tuple[int, str, int, str, tuple]]:
        """What ``read`` gives, a stored frame at a time and without a
        ``Measurement`` per row: (first_id, node, seq, kind, rows) for up to
        ``max_frames`` frames holding ids > ``after_id``; rows are the stored
        (channel, time, value, unit, quality code, reason) tuples, ids
        ``first_id``, ``first_id + 1``, ...  Routes use this when the source
        offers it (routes/payload.py ``FrameBlock``)."""
        start = after_id // ID_SPACE
        with self._recent_lock:
            if self._recent_from is not None and start >= self._recent_from:
                at = bisect_left(self._recent_ids, start)
                frames = self._recent[at:at + max_frames]
            else:
                frames = None
        if frames is None:
            loads = marshal.loads
            frames = [
                (frame_id, node, seq, kind, loads(blob))
                for frame_id, node, seq, kind, blob in self._reader.execute(
                    "SELECT frame_id, node, seq, kind, rows FROM measurements WHERE frame_id >= ? ORDER BY frame_id LIMIT ?",
                    (start, max_frames),
                )
            ]
        out = []
        for frame_id, node, seq, kind, rows in frames:
            first = frame_id * ID_SPACE
            if first <= after_id:  # the frame the read position falls in
                skip = after_id - first + 1
                if skip >= len(rows):
                    continue
                rows, first = rows[skip:], first + skip
            out.append((first, node, seq, KIND_NAMES[kind], rows))
        return out

    def load_cursor(self, route: str) -> int:
        with self._cursor_lock:
            row = self._cursor_db.execute("SELECT last_id FROM cursors WHERE route = ?", (route,)).fetchone()
        return row[0] if row else 0

    def save_cursor(self, route: str, last_id: int) -> None:
        with self._cursor_lock:
            self._cursor_db.execute(
                "INSERT INTO cursors VALUES (?, ?) ON CONFLICT (route) DO UPDATE SET last_id = excluded.last_id",
                (route, last_id),
            )
