"""The sink interface: what every output of the gateway implements.

A sink turns processed frames into deliveries to one destination (a
partner's MQTT broker, a Modbus server's registers, the latest-values table
the web console and OPC UA read).  Everything around that -- the durable
cursor, lag, backoff, outage logging, metrics -- is the delivery loop's
(``loop.py``), the same for every sink; a sink only says how to open its
session, how to deliver, and when the far end has confirmed.

Writing a sink (docs/architecture.md walks through one):

* subclass ``Sink``; set ``name`` (unique: it keys the cursor and the
  metrics), ``kind`` (a short word: "mqtt", "modbus-server", ...),
  ``description`` (where it delivers, for logs) and ``selection``;
* ``open()`` connects (raise ``SinkError`` with a line an operator can act
  on when it cannot: the loop logs it and retries with backoff);
* ``deliver(frames, confirm)`` sends; call ``confirm()`` once the
  destination has all of ``frames`` -- at once, or later for a pipelined
  protocol (an MQTT PUBACK).  Wait inside ``deliver`` while the sink's own
  window is full; raise ``SinkError`` when the session broke (the loop
  reopens and delivers again from the cursor: duplicates, never losses);
* ``broken()`` returns (or raises ``SinkError``) when the session breaks on
  its own (a disconnect seen by a background reader); ``close(clean)`` ends it;
* ``start()``/``stop()`` (optional) hold what lives as long as the gateway,
  such as a listening server; a ``GatewayError`` from ``start`` stops the
  gateway from starting, with its message.

``terms`` (optional) are an agreement's terms (``agreements/terms.py``):
the loop applies them between the selection and ``deliver`` -- validity,
embargo, pseudonyms, aggregation, fields -- whatever the destination.

``durable = False`` marks an in-memory view: it starts from the recent past
(``replay`` measurements) instead of a saved cursor, and it never holds back
the outbox's pruning.  ``history`` (seconds, default 0) asks the outbox to
keep that much processed data even once delivered, for a sink that answers
history queries from it (``Outbox.history``); storage comes first: the hold
is dropped while the outbox is nearly full.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..errors import GatewayError
from ..spine import ProcessedFrame
from .selection import Selection


class SinkError(GatewayError):
    """A sink's session could not start or broke; ``str()`` says why and,
    where it can, what to do."""


@dataclass(slots=True)
class SinkStats:
    """What a sink reports about itself (the loop turns it into metrics, the
    console and health output show it)."""

    messages_sent: int = 0
    messages_confirmed: int = 0
    last_error: str = ""
    extra: dict = field(default_factory=dict)  # sink-specific figures for the console


class Sink(ABC):
    name: str
    kind: str = "sink"
    description: str = ""
    durable: bool = True
    replay: int = 100_000  # non-durable sinks: measurements to show again at start
    history: float = 0.0  # seconds of processed measurements the outbox keeps for this sink's history reads
    selection: Selection = Selection()
    terms = None  # agreements.Terms, or None: every selected frame as it is

    def __init__(self) -> None:
        self.stats = SinkStats()

    async def start(self) -> None:
        """Acquire what lives as long as the gateway (a listening server);
        raise GatewayError for what the operator must fix -- the gateway
        then refuses to start, with that line."""

    async def stop(self) -> None:
        """Release what ``start`` acquired."""

    @abstractmethod
    async def open(self) -> None:
        """Connect or start serving; raise SinkError when it cannot."""

    @abstractmethod
    async def deliver(self, frames: Sequence[ProcessedFrame], confirm: Callable[[], None]) -> None:
        """Send ``frames`` (ascending ids, this sink's selection); call
        ``confirm()`` once the destination has all of them."""

    async def broken(self) -> None:
        """Return or raise SinkError when the session breaks by itself."""
        await asyncio.Event().wait()

    async def drain(self, timeout: float) -> None:
        """Give outstanding confirmations up to ``timeout`` seconds (stopping)."""

    async def close(self, clean: bool) -> None:
        """End the session; ``clean`` when the gateway is stopping (not after
        a failure: then the far end may be gone, so do not wait on it)."""

    def explain(self, exc: BaseException) -> str:
        """One line saying what went wrong and what to do (override to
        translate a library's errors)."""
        return str(exc) or type(exc).__name__
