"""Upgrading an outbox written by an earlier gateway version, in place and in
one transaction, so an upgrade never loses what partners have not received.

Schema 2 stored processed measurements as marshal'd row tuples under ids
``frame_id * 4096 + index`` and sink cursors in that id space.  Schema 3
gives measurements consecutive ids (``outbox.py``); the migration renumbers
the stored frames in frame order and moves each cursor to the same
measurement in the new numbering."""

from __future__ import annotations

import marshal
import sqlite3

from . import frame_codec

_OLD_ID_SPACE = 4096


def migrate_2_to_3(db: sqlite3.Connection) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        rows = db.execute("SELECT frame_id, node, seq, kind, received, count, rows FROM measurements ORDER BY frame_id").fetchall()
        next_id = 1
        new_rows = []
        starts = []  # (old first id, new first id, count) per frame, ascending
        for position, (frame_id, node, seq, kind, received, count, blob) in enumerate(rows, start=1):
            measurements = marshal.loads(blob)
            columns = tuple(zip(*measurements)) if measurements else ((), (), (), (), (), ())
            channels, times, values, units, quality, reasons = columns
            packed = frame_codec.pack(channels, times, values, units, bytes(quality), reasons)
            new_rows.append((next_id, position, frame_id, node, seq, kind, received, len(measurements), packed))
            starts.append((frame_id * _OLD_ID_SPACE, next_id, len(measurements)))
            next_id += len(measurements)
        db.executemany("INSERT INTO processed VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", new_rows)
        for route, old in db.execute("SELECT route, last_id FROM cursors").fetchall():
            db.execute("UPDATE cursors SET last_id = ? WHERE route = ?", (_renumber(old, starts), route))
        db.execute("INSERT OR REPLACE INTO progress VALUES ('measurements', ?)", (next_id - 1,))
        db.execute("DROP TABLE measurements")
        db.execute("UPDATE meta SET value = 3 WHERE key = 'schema'")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _renumber(old_cursor: int, starts: list[tuple[int, int, int]]) -> int:
    """The new id of the last measurement a cursor had delivered: within the
    stored frame it points into, or everything before the first stored one."""
    new = 0
    for old_first, new_first, count in starts:
        if old_first > old_cursor:
            break
        new = new_first + min(old_cursor - old_first, count - 1) if count else new_first - 1
    return new
