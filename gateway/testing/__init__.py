"""Helpers for testing the gateway against real components.

* ``broker``: a real Mosquitto on a free loopback port, fixtures and a
  collecting subscriber.
* ``processes``: stopping a child the way systemd does (SIGTERM, then SIGKILL).
* ``SqliteMeasurements``: a small ``MeasurementSource`` on a real SQLite
  file, for tests of the routes that do not need the whole outbox.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Iterable, Sequence

from ..model import Measurement

_SCHEMA = """
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node TEXT NOT NULL, seq INTEGER NOT NULL, channel TEXT NOT NULL,
    time REAL NOT NULL, value TEXT, unit TEXT,
    quality TEXT NOT NULL, reason TEXT, kind TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (route TEXT PRIMARY KEY, last_id INTEGER NOT NULL);
"""


class SqliteMeasurements:
    """``MeasurementSource`` on SQLite (WAL, synchronous=FULL): measurements
    in commit order and a durable cursor per route, as the outbox offers."""

    def __init__(self, path: Path | str) -> None:
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)
        self._changed: asyncio.Event | None = None

    def close(self) -> None:
        self.db.close()

    def add(self, measurements: Iterable[Measurement]) -> int:
        """Commit measurements (their ``id`` is ignored: SQLite gives the
        next one); returns the last id."""
        rows = [
            (m.node, m.seq, m.channel, m.time, json.dumps(m.value), m.unit, m.quality, m.reason, m.kind)
            for m in measurements
        ]
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT INTO measurements (node, seq, channel, time, value, unit, quality, reason, kind)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        if self._changed is not None:
            self._changed.set()
        return self.last_id()

    def last_id(self) -> int:
        return self.db.execute("SELECT COALESCE(MAX(id), 0) FROM measurements").fetchone()[0]

    async def wait_beyond(self, after_id: int, timeout: float | None = None) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        self._changed.clear()
        if self.last_id() > after_id:
            return
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def read(self, after_id: int, limit: int) -> Sequence[Measurement]:
        rows = self.db.execute(
            "SELECT id, node, seq, channel, time, value, unit, quality, reason, kind"
            " FROM measurements WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
        return [
            Measurement(id=r[0], node=r[1], seq=r[2], channel=r[3], time=r[4], value=json.loads(r[5]),
                        unit=r[6], quality=r[7], reason=r[8], kind=r[9])
            for r in rows
        ]

    def load_cursor(self, route: str) -> int:
        row = self.db.execute("SELECT last_id FROM cursors WHERE route = ?", (route,)).fetchone()
        return row[0] if row else 0

    def save_cursor(self, route: str, last_id: int) -> None:
        with self.db:
            self.db.execute(
                "INSERT INTO cursors (route, last_id) VALUES (?, ?)"
                " ON CONFLICT(route) DO UPDATE SET last_id = excluded.last_id",
                (route, last_id),
            )


def frames(nodes: Sequence[str], channels: Sequence[str], count: int, start_time: float = 1.7e9,
           unit: str = "Cel") -> list[Measurement]:
    """``count`` frames per node, round-robin, each with one reading per
    channel: seq 1..count, value = seq + channel index / 10."""
    out = []
    for seq in range(1, count + 1):
        for node in nodes:
            for i, channel in enumerate(channels):
                out.append(Measurement(id=0, node=node, seq=seq, channel=channel, time=start_time + seq,
                                       value=seq + i / 10, unit=unit))
    return out
