"""QoS 1 publishes of one session, straight through the session's paho client.

aiomqtt's ``publish`` costs a coroutine, an ``asyncio.Event``, a
``wait_for`` and a scan of every pending call per message; at thousands of
messages a second that was a large share of the gateway's CPU
(docs/benchmarks.md).  ``Publisher`` hands each message to paho at once and
keeps ``message id -> tracker token``; the route's PUBACK hook calls
``acked(mid)``, which marks the token done (the ``AckTracker`` then moves
the cursor only past what is acknowledged, in order).  What aiomqtt gave
besides stays: an error code from paho fails the session, and a message left
without PUBACK longer than the timeout fails it too (``overdue``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

import aiomqtt
import paho.mqtt.client as mqtt

MID_LIMIT = 65_000  # paho's message ids wrap at 65535: never more pending than that


class Publisher:
    def __init__(self, client: aiomqtt.Client, limit: int, on_acked: Callable[[object], None]) -> None:
        self._paho = client._client  # noqa: SLF001 - aiomqtt's own paho client, driven by its socket callbacks
        self._limit = max(1, min(limit, MID_LIMIT))
        # Room again only when a quarter of the window is free: one wake-up
        # per many PUBACKs, not one per PUBACK, when the broker is the limit.
        self._resume = self._limit - max(1, self._limit // 4)
        self._on_acked = on_acked
        self._pending: dict[int, tuple[object, float]] = {}  # mid -> (token, sent at), in send order
        self._room = asyncio.Event()
        self._room.set()
        self._empty = asyncio.Event()
        self._empty.set()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    @property
    def full(self) -> bool:
        return len(self._pending) >= self._limit

    def publish(self, topic: str, payload: bytes, properties, token: object) -> None:
        """Send one QoS 1 message; ``token`` comes back to ``on_acked`` on its
        PUBACK.  Raises aiomqtt.MqttCodeError when paho cannot send it."""
        info = self._paho.publish(topic, payload, 1, False, properties)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        self._pending[info.mid] = (token, time.monotonic())
        self._empty.clear()
        if len(self._pending) >= self._limit:
            self._room.clear()

    def acked(self, mid: int) -> bool:
        """A successful PUBACK for ``mid``; False when the message is not one
        of ours (the status message, published through aiomqtt)."""
        entry = self._pending.pop(mid, None)
        if entry is None:
            return False
        self._on_acked(entry[0])
        count = len(self._pending)
        if count <= self._resume:
            self._room.set()
        if not count:
            self._empty.set()
        return True

    async def room(self) -> None:
        await self._room.wait()

    async def drained(self) -> None:
        await self._empty.wait()

    def overdue(self, timeout: float) -> float:
        """Seconds the oldest message has waited for its PUBACK beyond
        ``timeout`` (0 when none has)."""
        for _token, sent in self._pending.values():  # the first is the oldest
            return max(0.0, time.monotonic() - sent - timeout)
        return 0.0


__all__ = ["Publisher"]
