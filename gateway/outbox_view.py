"""A read-only view of a running gateway's outbox, for the tools (``smemet
nodes``, ``commission``, ``demo``): SQLite in WAL mode lets them read while
the gateway writes.  The SQL lives here, beside outbox.py, so no other
package knows the tables."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from smemet.protocol.messages import CT_SENML, CT_STATUS

from .outbox import StoredFrame
from .processing_stage import reopen


class OutboxView:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    @classmethod
    def open(cls, path: str | None) -> OutboxView | None:
        """The view, or None when there is no readable outbox at ``path``."""
        if not path:
            return None
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
            db.execute("SELECT 1 FROM frames LIMIT 1")
        except sqlite3.Error:
            return None
        return cls(db)

    def close(self) -> None:
        self._db.close()

    def progress(self) -> tuple[int, int]:
        """(the last processed frame id, the last measurement id)."""
        found = dict(self._db.execute("SELECT name, frame_id FROM progress").fetchall())
        return found.get("processing", 0), found.get("measurements", 0)

    def last_frame(self, node: str) -> float | None:
        """Arrival time of the node's newest stored frame."""
        row = self._db.execute("SELECT received FROM frames WHERE node = ? ORDER BY seq DESC LIMIT 1", (node,)).fetchone()
        return row[0] if row else None

    def frames_since(self, node: str, since: float) -> int:
        """How many of the node's frames arrived at or after ``since``."""
        return self._db.execute("SELECT count(*) FROM frames WHERE node = ? AND received >= ?", (node, since)).fetchone()[0]

    def latest_status(self, node: str) -> dict:
        """The records of the node's newest status frame: fw, store_depth,
        uptime, reset_cause, heap_free, ... (empty when none is stored);
        ``_received`` is its arrival time."""
        row = self._db.execute(
            "SELECT id, node, seq, content_type, received, raw FROM frames WHERE node = ? AND content_type = ?"
            " ORDER BY seq DESC LIMIT 1",
            (node, CT_STATUS),
        ).fetchone()
        if row is None:
            return {}
        opened = reopen(_stored(row))
        if opened is None:
            return {}
        status = dict(zip(opened.names, opened.values))
        status["_received"] = opened.received
        return status

    def data_frames(self) -> Iterator[tuple[str, int, int]]:
        """(node, seq, records) of every stored data frame."""
        rows = self._db.execute(
            "SELECT id, node, seq, content_type, received, raw FROM frames WHERE content_type = ?", (CT_SENML,)
        ).fetchall()
        for row in rows:
            opened = reopen(_stored(row))
            if opened is not None:
                yield opened.node, opened.seq, len(opened)


def _stored(row) -> StoredFrame:
    id_, node, seq, content_type, received, raw = row
    return StoredFrame(node, seq, content_type, received, bytes(raw), id_)
