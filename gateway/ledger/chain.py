"""A route's hash chain: every message the route delivers is one link.

    link n = SHA-256( link n-1  ||  n as 8 bytes, big-endian  ||  SHA-256(payload n) )

with link 0 = 32 zero bytes and n = 1, 2, 3, ...  The payload is the whole
message body as published, which carries ``n`` and ``link n-1`` itself
(``link_seq``, ``link_prev``), so a capture of payloads alone is enough to
check the chain.  The gateway signs the chain's head in checkpoints
(checkpoint.py): a signed head vouches for every link before it.

Only links the broker acknowledged and the ledger recorded count:
``RouteChain`` hands out links as messages are published, hands back
deliveries in the order they were made once every PUBACK of each is in, and
keeps the *confirmed* head -- the newest one recorded in the ledger
(``recorded``), which is what checkpoints sign.  When a session breaks, the
chain rewinds to the confirmed head; the delivery loop sends again from its
cursor (which moves only over recorded deliveries), so the same messages
come out with the same numbers and the same links (a partner sees an
identical duplicate, never a fork or a gap).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import native

GENESIS = bytes(32)


def load(name: str | None = None):
    """The link hash backend by name ("cython" or "pure"), or the one in use
    (``_linkhash.pyx``, its pure twin ``linkhash.py``; ``native.py``)."""
    return native.load("smemet.gateway.ledger._linkhash", "smemet.gateway.ledger.linkhash", name)


# Link ``seq`` given the previous link and the message's payload: two
# SHA-256 per message on every route, the largest part of what the chain costs.
# ``linked`` stamps a payload with its link fields and links it in one call.
_backend = load()
link_hash = _backend.link_hash
linked = _backend.linked


@dataclass(frozen=True, slots=True)
class Head:
    """The newest link of a chain: its number and hash (0 and zeros: empty)."""

    seq: int = 0
    hash: bytes = GENESIS


@dataclass(slots=True)
class Batch:
    """The links of one delivery, in order.  ``upto`` is the last
    measurement id the delivery covered; ``confirm`` is called once the
    broker acknowledged every message of this and of every earlier batch."""

    first_seq: int
    prev: bytes
    upto: int
    confirm: Callable[[], None]
    hashes: list[bytes] = field(default_factory=list)
    acked: bool = False
    acked_at: float = 0.0

    @property
    def count(self) -> int:
        return len(self.hashes)

    @property
    def head(self) -> Head:
        if not self.hashes:
            return Head(self.first_seq - 1, self.prev)
        return Head(self.first_seq + len(self.hashes) - 1, self.hashes[-1])


class RouteChain:
    def __init__(self, confirmed: Head) -> None:
        self.confirmed = confirmed  # acknowledged and recorded: checkpoints sign it
        self.seq = confirmed.seq  # the newest link handed out...
        self.prev = confirmed.hash  # ...and its hash: the next message's ``link_prev``
        self._pending: deque[Batch] = deque()

    def rewind(self) -> None:
        """A session ended: what was not acknowledged is sent again, with the
        same numbers, from the confirmed head."""
        self._pending.clear()
        self.seq, self.prev = self.confirmed.seq, self.confirmed.hash

    def begin(self, upto: int, confirm: Callable[[], None]) -> Batch:
        batch = Batch(self.seq + 1, self.prev, upto, confirm)
        self._pending.append(batch)
        return batch

    def append(self, batch: Batch, link: bytes) -> None:
        """Link number ``seq + 1`` is ``link``: the next message's, already
        hashed with ``linked`` (its payload carries that number and ``prev``)."""
        self.seq += 1
        self.prev = link
        batch.hashes.append(link)

    def acked(self, batch: Batch, now: float) -> list[Batch]:
        """``batch`` is acknowledged: the batches now acknowledged in order
        (none while an earlier one still waits), to record."""
        batch.acked = True
        batch.acked_at = now
        done = []
        pending = self._pending
        while pending and pending[0].acked:
            done.append(pending.popleft())
        return done

    def recorded(self, batch: Batch) -> None:
        """``batch`` (handed back by ``acked``) is in the ledger."""
        if batch.head.seq > self.confirmed.seq:
            self.confirmed = batch.head
