"""The ``[ledger]`` section of gateway.toml: where the signing key lives,
how long the ledger keeps what routes delivered, how often routes sign.

    [ledger]
    path = "ledger.sqlite"           # default: beside the outbox database
    signing_key = "signing.key"      # default: beside the outbox database
    retention = "30d"                # delivery records older than this are pruned
    max_bytes = "1GiB"               # and the oldest beyond this
    checkpoint_interval = "5s"       # a signed checkpoint at least this often per route

The ledger is its own SQLite database, not a part of the outbox: it must
never take the room node frames need (a full outbox stops the ACKs), and its
writes do not queue behind the outbox's fsync'd commits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..settings import Table

SECTION = "ledger"
DEFAULT_KEY_NAME = "signing.key"
DEFAULT_DB_NAME = "ledger.sqlite"
_KEYS = ("path", "signing_key", "retention", "max_bytes", "checkpoint_interval")


@dataclass(frozen=True, slots=True)
class LedgerConfig:
    path: str | None = None  # None: DEFAULT_DB_NAME beside the outbox database
    signing_key: str | None = None  # None: DEFAULT_KEY_NAME beside the outbox database
    retention: float = 30 * 86400.0
    max_bytes: int = 2**30
    checkpoint_interval: float = 5.0

    def key_path(self, outbox_path: str) -> str:
        if self.signing_key is not None:
            return self.signing_key
        return os.path.join(os.path.dirname(os.path.abspath(outbox_path)), DEFAULT_KEY_NAME)

    def db_path(self, outbox_path: str) -> str:
        if self.path is not None:
            return self.path
        return os.path.join(os.path.dirname(os.path.abspath(outbox_path)), DEFAULT_DB_NAME)


def parse_ledger(raw: object, source: str, base: str) -> LedgerConfig:
    table = Table(raw, f"{source}: {SECTION}", _KEYS)
    table.finish()
    max_bytes = table.size("max_bytes", 2**30)
    if max_bytes < 1 << 20:
        raise table.error("max_bytes", f"must be at least 1MiB, not {max_bytes} bytes")
    return LedgerConfig(
        path=table.path("path", base, None),
        signing_key=table.path("signing_key", base, None),
        retention=table.duration("retention", 30 * 86400.0, 3600.0),
        max_bytes=max_bytes,
        checkpoint_interval=table.duration("checkpoint_interval", 5.0, 0.5, 300.0),
    )
