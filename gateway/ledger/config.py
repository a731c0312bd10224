"""The ``[ledger]`` section of gateway.toml: where the signing key lives,
how long the ledger keeps what routes delivered, how often routes sign.

    [ledger]
    signing_key = "signing.key"      # default: beside the outbox database
    retention = "30d"                # delivery records older than this are pruned
    checkpoint_interval = "5s"       # a signed checkpoint at least this often per route
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..settings import Table

SECTION = "ledger"
DEFAULT_KEY_NAME = "signing.key"
_KEYS = ("signing_key", "retention", "checkpoint_interval")


@dataclass(frozen=True, slots=True)
class LedgerConfig:
    signing_key: str | None = None  # None: DEFAULT_KEY_NAME beside the outbox database
    retention: float = 30 * 86400.0
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
        checkpoint_interval=table.duration("checkpoint_interval", 5.0, 0.5, 300.0),
    )
