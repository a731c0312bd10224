"""The ledger's tables, in their own SQLite database beside the outbox (the
only code that knows them): the ledger must never take the room node frames
need in the outbox (a full outbox stops the ACKs), nor queue its writes
behind the outbox's fsync'd commits.

- ``ledger``: what each route delivered, a row per delivery the broker
  acknowledged (or per LINKS_PER_ROW links of it): its links ``first_seq ..
  first_seq + count - 1`` (their hashes, 32 bytes each, in ``hashes``), the agreement and version in force,
  when the last PUBACK of it arrived (``acked``), and the last measurement id
  it covered (``upto``).  The newest row of a route is its chain head: it is
  never pruned.
- ``ledger_checkpoints``: each signed checkpoint whose head moved, as
  published (the COSE_Sign1 bytes): the gateway's own signed record.
- ``agreement_versions``: every agreement version a route ever ran under,
  with a digest of its terms and when it came into force.
- ``agreement_windows``: per route and channel, the start of the newest
  aggregation period the broker acknowledged (so a restart neither repeats
  nor splits a period).

Durability: deliveries are recorded with ``synchronous=NORMAL`` (no fsync of
their own; the route's cursor moves only over recorded deliveries); a
checkpoint is recorded with ``synchronous=FULL`` *before* it is published,
which makes every earlier row durable too.  So after a power
cut the ledger's head is never behind a head the gateway signed.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..errors import GatewayError
from .chain import GENESIS, Head

LEDGER_SCHEMA = 1
HASH_BYTES = 32
ROW_BYTES = 60  # a row besides its links (measured: 87 bytes for a 1-link row)
# links per row: a row of a WITHOUT ROWID table longer than ~1,000 bytes spills to overflow pages
# (half empty), and the newest row of a route is never pruned: a big delivery is several rows
LINKS_PER_ROW = 24
CHECKPOINT_BYTES = 250

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger (
    route TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    count INTEGER NOT NULL,
    hashes BLOB NOT NULL,              -- 32 bytes per link, in order (at most LINKS_PER_ROW)
    agreement TEXT,
    version INTEGER,
    acked REAL NOT NULL,               -- Unix s: the broker had acknowledged every message of the delivery
    upto INTEGER NOT NULL,             -- last measurement id the delivery covered (raw routes; 0: aggregates)
    PRIMARY KEY (route, first_seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger_checkpoints (
    route TEXT NOT NULL,
    seq INTEGER NOT NULL,
    head BLOB NOT NULL,
    time REAL NOT NULL,
    message BLOB NOT NULL,             -- the COSE_Sign1 as published
    PRIMARY KEY (route, seq)
) WITHOUT ROWID;
"""
# made when a route first needs them
_AGREEMENTS = """
CREATE TABLE IF NOT EXISTS agreement_versions (
    route TEXT NOT NULL,
    agreement TEXT NOT NULL,
    version INTEGER NOT NULL,
    digest TEXT NOT NULL,              -- SHA-256 of the terms (agreements/config.py: Agreement.digest)
    terms TEXT NOT NULL,               -- the terms as JSON
    since REAL NOT NULL,               -- Unix s: first start under this version
    PRIMARY KEY (route, agreement, version)
) WITHOUT ROWID
"""
_WINDOWS = """
CREATE TABLE IF NOT EXISTS agreement_windows (
    route TEXT NOT NULL,
    node TEXT NOT NULL,
    channel TEXT NOT NULL,
    start REAL NOT NULL,               -- newest acknowledged aggregation period of the channel
    PRIMARY KEY (route, node, channel)
) WITHOUT ROWID
"""


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One delivered message, as ``smemet ledger`` exports it."""

    route: str
    seq: int
    hash: bytes
    agreement: str | None
    version: int | None
    acked: float


@dataclass(frozen=True, slots=True)
class Delivered:
    """One acknowledged delivery, to record: its links ``first_seq ..``."""

    route: str
    first_seq: int
    hashes: bytes  # 32 bytes per link, concatenated
    agreement: str | None
    version: int | None
    acked: float
    upto: int


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    route: str
    seq: int
    head: bytes
    time: float
    message: bytes


@dataclass(frozen=True, slots=True)
class AgreementVersion:
    agreement: str
    version: int
    digest: str
    terms: dict
    since: float


class AgreementConflict(GatewayError):
    """The configured terms contradict the agreement history (a change of terms without a new version)."""


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA busy_timeout=30000")
    db.execute("PRAGMA cache_size=-512")  # KiB: these connections append and read little (default: 2 MiB each)
    return db


class LedgerStore:
    """Read and write the ledger tables.  The agreement and window methods
    run on the event loop (rarely: at start, once per aggregation period);
    ``record``, ``record_checkpoint`` and ``prune`` in a worker thread, on
    their own connection."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._db = _connect(path, "NORMAL")
            self._db.executescript(_SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('ledger_schema', ?)", (LEDGER_SCHEMA,))
            self._durable = _connect(path, "NORMAL")  # worker threads: deliveries, checkpoints (FULL), pruning
        except sqlite3.Error as exc:
            raise GatewayError(f"{path}: cannot open the ledger database ({exc}); the gateway user must be able to "
                              "write to it and its directory") from None
        self._durable_lock = threading.Lock()
        self._made: set[str] = set()

    def close(self) -> None:
        for db in (self._db, self._durable):
            try:
                db.close()
            except sqlite3.Error:
                pass

    # ------------------------------------------------------------ the chain

    def head(self, route: str) -> tuple[Head, int]:
        """The route's newest recorded link and the last measurement id it
        covered ((empty head, 0) for a route that never delivered)."""
        row = self._db.execute(
            "SELECT first_seq, count, substr(hashes, -32), upto FROM ledger WHERE route = ?"
            " ORDER BY first_seq DESC LIMIT 1", (route,)).fetchone()
        if row is None:
            return Head(0, GENESIS), 0
        first, count, last_hash, upto = row
        return Head(first + count - 1, bytes(last_hash)), upto

    def record(self, deliveries: Iterable[Delivered]) -> None:
        """Acknowledged deliveries, in one transaction (no fsync of its own:
        the next checkpoint's makes them durable).  Worker thread: a write on
        the event loop would wait there for the writer thread's commits."""
        step = LINKS_PER_ROW * HASH_BYTES
        rows = [(d.route, d.first_seq + at // HASH_BYTES, len(chunk) // HASH_BYTES, chunk, d.agreement, d.version,
                 d.acked, d.upto)
                for d in deliveries for at in range(0, len(d.hashes), step) for chunk in [d.hashes[at:at + step]]]
        with self._durable_lock:
            db = self._durable
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def record_checkpoint(self, route: str, seq: int, head: bytes, at: float, message: bytes) -> None:
        """A signed checkpoint, durably (fsync'd, with every earlier row), before
        it is published.  Worker thread."""
        with self._durable_lock:
            db = self._durable
            db.execute("PRAGMA synchronous=FULL")
            try:
                db.execute("INSERT OR REPLACE INTO ledger_checkpoints VALUES (?, ?, ?, ?, ?)",
                           (route, seq, head, at, message))
            finally:
                db.execute("PRAGMA synchronous=NORMAL")

    def prune(self, before: float) -> int:
        """Delete deliveries acknowledged and checkpoints signed before
        ``before`` (Unix s), keeping each route's newest delivery and
        checkpoint (the chain head).  Worker thread; returns rows deleted.
        (No index on the time: a scan every few minutes in a worker thread
        costs less than an index entry per delivery.)"""
        with self._durable_lock:
            return self._delete_before(before)

    def size(self) -> int:
        """About how many bytes the ledger takes (32 per link, ROW_BYTES per
        delivery, CHECKPOINT_BYTES per checkpoint).  Worker thread."""
        with self._durable_lock:
            links, rows = self._durable.execute("SELECT coalesce(sum(count), 0), count(*) FROM ledger").fetchone()
            checkpoints = self._durable.execute("SELECT count(*) FROM ledger_checkpoints").fetchone()[0]
        return links * HASH_BYTES + rows * ROW_BYTES + checkpoints * CHECKPOINT_BYTES

    def shrink(self, max_bytes: int) -> float | None:
        """When the ledger is over ``max_bytes``, delete its oldest records
        down to nine tenths of it (each route's head stays); returns the
        acknowledgement time now the oldest kept, or None when nothing was
        deleted.  Worker thread."""
        excess = self.size() - max_bytes * 9 // 10
        if excess <= max_bytes // 10:
            return None
        with self._durable_lock:
            db = self._durable
            cutoff = None
            freed = 0
            for count, acked in db.execute("SELECT count, acked FROM ledger ORDER BY acked"):
                freed += count * HASH_BYTES + ROW_BYTES
                cutoff = acked
                if freed >= excess:
                    break
            if cutoff is None:
                return None
            self._delete_before(cutoff + 1e-6)
            oldest = db.execute("SELECT min(acked) FROM ledger").fetchone()[0]
        return oldest

    def _delete_before(self, before: float) -> int:
        db = self._durable
        db.execute("BEGIN IMMEDIATE")
        try:
            deleted = db.execute(
                "DELETE FROM ledger WHERE acked < ? AND first_seq <"
                " (SELECT max(first_seq) FROM ledger AS newest WHERE newest.route = ledger.route)",
                (before,)).rowcount
            deleted += db.execute(
                "DELETE FROM ledger_checkpoints WHERE time < ? AND seq <"
                " (SELECT max(seq) FROM ledger_checkpoints AS newest WHERE newest.route = ledger_checkpoints.route)",
                (before,)).rowcount
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return deleted

    # ------------------------------------------------------------ agreements

    def _ensure(self, schema: str) -> None:
        if schema not in self._made:
            self._db.execute(schema)
            self._made.add(schema)

    def history(self, route: str) -> list[AgreementVersion]:
        self._ensure(_AGREEMENTS)
        return _history(self._db, route)

    def record_agreement(self, route: str, agreement: str, version: int, digest: str, terms: dict,
                         now: float | None = None) -> tuple[AgreementVersion | None, bool]:
        """Put this agreement version in force on ``route``; returns (the
        version in force before, whether this one is new).  Raises
        AgreementConflict when the terms of a known version changed, or when
        the version is lower than one already in force."""
        now = time.time() if now is None else now
        known = self.history(route)
        before = known[-1] if known else None
        same = [e.version for e in known if e.agreement == agreement]
        if same and version < max(same):
            raise AgreementConflict(
                f"route {route}: agreement {agreement} version {version} is older than version {max(same)}, "
                "already in force; versions only go up (give the old terms a new version number)")
        for entry in known:
            if (entry.agreement, entry.version) == (agreement, version):
                if entry.digest != digest:
                    raise AgreementConflict(
                        f"route {route}: the terms of agreement {agreement} version {version} differ from those in "
                        f"force since {_utc(entry.since)}; a change of terms needs a new version (set version = "
                        f"{max(same) + 1})")
                return before, False
        self._db.execute("INSERT INTO agreement_versions VALUES (?, ?, ?, ?, ?, ?)",
                         (route, agreement, version, digest, json.dumps(terms, sort_keys=True), now))
        return before, True

    # ------------------------------------------------------------ aggregation windows

    def windows(self, route: str) -> dict[tuple[str, str], float]:
        self._ensure(_WINDOWS)
        return {(node, channel): start for node, channel, start in
                self._db.execute("SELECT node, channel, start FROM agreement_windows WHERE route = ?", (route,))}

    def save_windows(self, route: str, windows: Iterable[tuple[str, str, float]]) -> None:
        self._ensure(_WINDOWS)
        self._db.executemany(
            "INSERT INTO agreement_windows VALUES (?, ?, ?, ?) ON CONFLICT (route, node, channel)"
            " DO UPDATE SET start = max(start, excluded.start)",
            [(route, node, channel, start) for node, channel, start in windows])


class LedgerView:
    """Read-only, for the tools (``smemet ledger``, ``smemet agreements``):
    SQLite in WAL mode lets them read while the gateway writes."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    @classmethod
    def open(cls, path: str) -> LedgerView | None:
        """The view, or None when ``path`` holds no ledger (yet)."""
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
            db.execute("SELECT 1 FROM ledger LIMIT 1")
        except sqlite3.Error:
            return None
        return cls(db)

    def close(self) -> None:
        self._db.close()

    def routes(self) -> list[str]:
        try:
            rows = self._db.execute("SELECT route FROM ledger UNION SELECT route FROM agreement_versions ORDER BY 1")
        except sqlite3.Error:  # no route had an agreement yet
            rows = self._db.execute("SELECT DISTINCT route FROM ledger ORDER BY 1")
        return [r for (r,) in rows]

    def entries(self, route: str, since: float | None = None, until: float | None = None) -> Iterator[LedgerEntry]:
        """Every delivered message of ``route`` acknowledged in [since, until), by number."""
        rows = self._db.execute(
            "SELECT first_seq, hashes, agreement, version, acked FROM ledger WHERE route = ? AND acked >= ?"
            " AND acked < ? ORDER BY first_seq",
            (route, -1e300 if since is None else since, 1e300 if until is None else until))
        for first, hashes, agreement, version, acked in rows:
            for i in range(len(hashes) // HASH_BYTES):
                yield LedgerEntry(route, first + i, bytes(hashes[i * HASH_BYTES:(i + 1) * HASH_BYTES]), agreement,
                                  version, acked)

    def checkpoints(self, route: str, since: float | None = None, until: float | None = None) -> list[StoredCheckpoint]:
        return [StoredCheckpoint(route, seq, bytes(head), at, bytes(message)) for seq, head, at, message in
                self._db.execute(
                    "SELECT seq, head, time, message FROM ledger_checkpoints WHERE route = ? AND time >= ?"
                    " AND time < ? ORDER BY seq",
                    (route, -1e300 if since is None else since, 1e300 if until is None else until))]

    def history(self, route: str) -> list[AgreementVersion]:
        try:
            return _history(self._db, route)
        except sqlite3.Error:
            return []


def _history(db: sqlite3.Connection, route: str) -> list[AgreementVersion]:
    return [AgreementVersion(agreement, version, digest, json.loads(terms), since) for agreement, version, digest,
            terms, since in db.execute(
                "SELECT agreement, version, digest, terms, since FROM agreement_versions WHERE route = ?"
                " ORDER BY since, version", (route,))]


def _utc(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
