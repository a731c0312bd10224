"""Signed deliveries and the delivery ledger.

Every message a route delivers is a link of the route's hash chain
(``chain.py``); the gateway signs the chain's head in checkpoints
(``checkpoint.py``, COSE_Sign1 with its Ed25519 key, ``signing.py``) and
records what the broker acknowledged in the ledger (``store.py``, its own
SQLite database beside the outbox).  ``Ledger`` is what the routes of one gateway share:
the key, the tables and the ``[ledger]`` settings (``config.py``).  How a
partner checks a capture: ``verify.py`` and docs/integrator.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from contextlib import suppress

from .chain import GENESIS, Batch, Head, RouteChain, link_hash
from .checkpoint import Checkpoint, sign
from .config import LedgerConfig, parse_ledger
from .signing import SigningKey, SigningKeyError, load_or_create
from .store import AgreementConflict, Delivered, LedgerStore, LedgerView

__all__ = ["GENESIS", "AgreementConflict", "Batch", "Checkpoint", "Delivered", "Head", "Ledger", "LedgerConfig",
           "LedgerStore",
           "LedgerView", "RouteChain", "SigningKey", "SigningKeyError", "link_hash", "parse_ledger"]

log = logging.getLogger("smemet.gateway.ledger")
PRUNE_INTERVAL = 600.0  # seconds between retention passes


class Ledger:
    """The signing key, the ledger tables and the settings of one gateway,
    shared by its routes.  ``start``/``stop`` are counted: the first start
    begins the retention pruning, the last stop ends it and closes the
    tables."""

    def __init__(self, store: LedgerStore, key: SigningKey, config: LedgerConfig, gateway_id: str,
                 max_bytes: int) -> None:
        self.store = store
        self.key = key
        self.config = config
        self.gateway_id = gateway_id
        self.max_bytes = max_bytes
        self._shortened = False  # logged once that the size cap, not the retention, prunes
        self._grown = 0  # bytes recorded since the last pruning
        self._pruning_now: asyncio.Task | None = None
        self._users = 0
        self._pruning: asyncio.Task | None = None

    @classmethod
    def open(cls, outbox_path: str, config: LedgerConfig | None, gateway_id: str) -> Ledger:
        """The key (made at the first start) and the ledger database, by default
        beside ``outbox_path``; raises GatewayError with what to do."""
        config = config if config is not None else LedgerConfig()
        key_path = config.key_path(outbox_path)
        existed = os.path.lexists(key_path)
        key = load_or_create(key_path)
        if not existed:
            log.warning("made the gateway's signing key %s (fingerprint %s): give partners this fingerprint to pin "
                        "(smemet gateway signing-key show)", key_path, key.fingerprint)
        return cls(LedgerStore(config.db_path(outbox_path)), key, config, gateway_id, config.max_bytes)

    def sign(self, checkpoint: Checkpoint) -> bytes:
        return sign(self.key, checkpoint)

    async def start(self) -> None:
        self._users += 1
        if self._pruning is None:
            self._pruning = asyncio.create_task(self._prune_now_and_then(), name="ledger retention")

    async def stop(self) -> None:
        self._users -= 1
        if self._users > 0:
            return
        for task in (self._pruning, self._pruning_now):
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
        self._pruning = self._pruning_now = None
        self.store.close()

    async def _prune_now_and_then(self) -> None:
        while True:
            try:
                await self.prune()
            except Exception:  # noqa: BLE001 - retried at the next pass; pruning must not stop deliveries
                log.exception("ledger: pruning failed")
            await asyncio.sleep(PRUNE_INTERVAL)

    def grew(self, nbytes: int) -> None:
        """A route recorded about ``nbytes``: prune at once, not at the next
        pass, when the ledger may be near its cap."""
        self._grown += nbytes
        if self._grown > self.max_bytes // 10 and self._pruning_now is None and self._users > 0:
            self._pruning_now = asyncio.get_running_loop().create_task(self._prune_once(), name="ledger pruning")

    async def _prune_once(self) -> None:
        try:
            await self.prune()
        except Exception:  # noqa: BLE001 - the regular pass tries again
            log.exception("ledger: pruning failed")
        finally:
            self._pruning_now = None

    async def prune(self) -> None:
        """Records past the retention go; so do the oldest when the ledger
        outgrows its max_bytes."""
        self._grown = 0
        deleted = await asyncio.to_thread(self.store.prune, time.time() - self.config.retention)
        if deleted:
            log.info("ledger: pruned %d records older than the retention", deleted)
        oldest = await asyncio.to_thread(self.store.shrink, self.max_bytes)
        if oldest is not None and not self._shortened:
            self._shortened = True
            log.warning("ledger: reached its max_bytes (%d bytes): records acknowledged before %s were pruned "
                        "before their retention; raise [ledger] max_bytes to keep %.0f days",
                        self.max_bytes, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(oldest)),
                        self.config.retention / 86400)
