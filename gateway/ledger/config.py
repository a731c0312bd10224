"""The ``[ledger]`` section of gateway.toml: where the signing key lives,
how long the ledger keeps what routes delivered, how often routes sign.

    [ledger]
    signing_key = "signing.key"      # default: beside the outbox database
    retention = "30d"                # delivery records older than this are pruned
    max_bytes = "512MB"              # and the oldest beyond this (default: a quarter of [outbox] max_bytes)
    checkpoint_interval = "5s"       # a signed checkpoint at least this often per route
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..settings import Table

SECTION = "ledger"
DEFAULT_KEY_NAME = "signing.key"
_KEYS = ("signing_key", "retention", "max_bytes", "checkpoint_interval")


@dataclass(frozen=True, slots=True)
class LedgerConfig:
    signing_key: str | None = None  # None: DEFAULT_KEY_NAME beside the outbox database
    retention: float = 30 * 86400.0
    max_bytes: int | None = None  # None: a quarter of the outbox's max_bytes (the ledger lives in the outbox)
    checkpoint_interval: float = 5.0

    def key_path(self, outbox_path: str) -> str:
        if self.signing_key is not None:
            return self.signing_key
        return os.path.join(os.path.dirname(os.path.abspath(outbox_path)), DEFAULT_KEY_NAME)


def parse_ledger(raw: object, source: str, base: str) -> LedgerConfig:
    table = Table(raw, f"{source}: {SECTION}", _KEYS)
    table.finish()
    return LedgerConfig(
        signing_key=table.path("signing_key", base, None),
        retention=table.duration("retention", 30 * 86400.0, 3600.0),
        max_bytes=table.size("max_bytes", None),
        checkpoint_interval=table.duration("checkpoint_interval", 5.0, 0.5, 300.0),
    )
