"""A lean MQTT client that publishes QoS 1 messages and nothing else: one
asyncio connection (TCP or TLS), the codec in ``wire.py``.

Why not a general client: publishing is the gateway's hottest output, and
paho (under aiomqtt) spent about a quarter of the gateway's CPU on it
(docs/benchmarks.md) -- three ``recv`` calls, two mutexes and a
``Condition`` per PUBACK, an ``MQTTMessageInfo`` per message.  Here a
PUBLISH is one bytes concatenation appended to an output buffer that is
written once per batch, and all PUBACKs in a read are parsed in one pass.

``Connection.open`` connects and waits for CONNACK; ``publish`` queues a
message (call ``flush`` to write); ``on_ack(token)`` runs at its PUBACK;
``lost`` completes (with the reason as its exception) when the session ends
for any reason: the broker closed it, refused a publish (MQTT 5 reason code),
missed its keepalive, or sent bytes that are not MQTT.

For a sink that also listens (Sparkplug: NCMD, a host's STATE):
``subscribe`` waits for the SUBACK, ``on_message(wire.Publish)`` runs for
each message the broker delivers (QoS 1 ones are PUBACKed first), and
``publish_qos0`` queues a message the broker does not acknowledge.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable

from ...delivery import SinkError
from . import wire

MAX_PACKET_ID = 65535


class ConnectRefused(SinkError):
    """CONNACK with a failure code."""

    def __init__(self, version: int, code: int, reason: str | None = None) -> None:
        self.version = version
        self.code = code
        text = wire.reason_text(version, code)
        super().__init__(f"the broker refused the connection: {text}" + (f" ({reason})" if reason else ""))

    @property
    def login(self) -> bool:
        return (self.version, self.code) in wire.LOGIN_REFUSED


class BrokerRefused(SinkError):
    """The broker answered a publish with a failure reason code (MQTT 5)."""


class ConnectTimeout(SinkError):
    """No CONNACK in time (a 3.1.1-only broker may never answer a v5 CONNECT)."""


class Connection(asyncio.Protocol):
    def __init__(self, version: int, on_ack: Callable[[object], None],
                 on_message: Callable[[wire.Publish], None] | None = None) -> None:
        self.version = version
        self._on_ack = on_ack
        self._on_message = on_message
        self._subacks: dict[int, asyncio.Future] = {}  # SUBSCRIBE packet id -> its SUBACK
        self._decoder = wire.Decoder(version)
        self._transport: asyncio.Transport | None = None
        self._connack: asyncio.Future = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending: dict[int, tuple[object, float]] = {}  # packet id -> (token, sent at), in send order
        self._next_id = 1
        self._out = bytearray()
        self._writable = asyncio.Event()
        self._writable.set()
        self._room = asyncio.Event()
        self._room.set()
        self._empty = asyncio.Event()
        self._empty.set()
        self.limit = MAX_PACKET_ID
        self._resume = MAX_PACKET_ID
        self.last_sent = time.monotonic()
        self.last_received = time.monotonic()
        self._ping_sent: float | None = None
        self._keepalive: asyncio.Task | None = None

    # ------------------------------------------------------------ opening

    @classmethod
    async def open(cls, host: str, port: int, *, version: int, client_id: str, keepalive: int,
                   username: str | None, password: str | None, will: wire.Will | None,
                   tls: ssl.SSLContext | None, timeout: float, max_in_flight: int,
                   on_ack: Callable[[object], None],
                   on_message: Callable[[wire.Publish], None] | None = None) -> Connection:
        """Connect, send CONNECT and wait for CONNACK; raises ConnectRefused,
        ConnectTimeout or OSError/ssl.SSLError (unreachable, TLS)."""
        loop = asyncio.get_running_loop()
        connection = cls(version, on_ack, on_message)
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: connection, host, port, ssl=tls,
                                       server_hostname=host if tls is not None else None),
                timeout,
            )
        except TimeoutError:
            raise ConnectTimeout(f"no TCP/TLS connection to {host}:{port} within {timeout:.0f} s") from None
        try:
            connection._write_now(wire.connect(client_id, keepalive, version, username=username, password=password,
                                              will=will))
            done, _ = await asyncio.wait({connection._connack, connection.lost}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
            if connection._connack.done():
                connack: wire.Connack = connection._connack.result()
            elif connection.lost.done():
                raise connection.lost.exception() or SinkError("the broker closed the connection before CONNACK")
            else:
                raise ConnectTimeout(f"no CONNACK within {timeout:.0f} s")
            if connack.code != 0:
                raise ConnectRefused(version, connack.code, connack.reason)
        except BaseException:
            connection.abort()
            raise
        connection.limit = max(1, min(max_in_flight, connack.receive_maximum, MAX_PACKET_ID - 1))
        # room again only when a quarter of the window is free: one wake-up
        # per many PUBACKs, not one per PUBACK, when the broker is the limit
        connection._resume = connection.limit - max(1, connection.limit // 4)
        period = connack.server_keep_alive if connack.server_keep_alive else keepalive
        if period:
            connection._keepalive = asyncio.create_task(connection._keep_alive(period), name="mqtt keepalive")
        return connection

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self.last_received = time.monotonic()
        try:
            acked, packets = self._decoder.feed_split(data)
        except wire.WireError as exc:
            self._fail(SinkError(f"the broker sent invalid MQTT ({exc})"))
            return
        pending, on_ack = self._pending, self._on_ack
        for packet_id in acked:
            entry = pending.pop(packet_id, None)
            if entry is not None:
                on_ack(entry[0])
        for packet in packets:
            if type(packet) is wire.Puback:
                if packet.code >= 0x80:
                    self._fail(BrokerRefused(
                        f"the broker refused a publish ({wire.reason_text(wire.V5, packet.code)}"
                        + (f": {packet.reason}" if packet.reason else "") + "); check its ACL for this user"))
                    return
                entry = pending.pop(packet.packet_id, None)
                if entry is not None:
                    on_ack(entry[0])
            elif type(packet) is wire.Connack:
                if not self._connack.done():
                    self._connack.set_result(packet)
            elif type(packet) is wire.Publish:
                if packet.packet_id is not None:
                    self._transport.write(wire.puback(packet.packet_id))
                if self._on_message is not None:
                    self._on_message(packet)
            elif type(packet) is wire.Suback:
                waiter = self._subacks.pop(packet.packet_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(packet.codes)
            elif type(packet) is wire.Pingresp:
                self._ping_sent = None
            elif type(packet) is wire.Disconnect:
                reason = wire.reason_text(self.version, packet.code)
                self._fail(SinkError(f"the broker disconnected: {reason}"
                                     + (f" ({packet.reason})" if packet.reason else "")))
                return
        count = len(pending)
        if count <= self._resume:
            self._room.set()
        if not count:
            self._empty.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(SinkError(f"connection lost ({exc})" if exc else "the broker closed the connection"))

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # ------------------------------------------------------------ publishing

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    @property
    def full(self) -> bool:
        return len(self._pending) >= self.limit

    def publish(self, topic: bytes, payload: bytes, properties: bytes | None, token: object,
                retain: bool = False) -> None:
        """Queue a QoS 1 PUBLISH (``topic`` as ``wire.text(...)``); ``token``
        comes back to ``on_ack`` at its PUBACK.  Call ``flush`` to send."""
        packet_id = self._next_id
        pending = self._pending
        while packet_id in pending:
            packet_id = packet_id % MAX_PACKET_ID + 1
        self._next_id = packet_id % MAX_PACKET_ID + 1
        wire.publish_into(self._out, topic, payload, packet_id, retain, properties)
        pending[packet_id] = (token, time.monotonic())
        self._empty.clear()
        if len(pending) >= self.limit:
            self._room.clear()

    def publish_qos0(self, topic: bytes, payload: bytes, properties: bytes | None = None,
                     retain: bool = False) -> None:
        """Queue a QoS 0 PUBLISH: no packet id, no PUBACK.  Only a later QoS 1
        PUBACK on this connection shows the broker has it (TCP keeps order)."""
        self._out += wire.publish(topic, payload, 0, 0, retain, False, properties)

    async def subscribe(self, topics: tuple[tuple[str, int], ...], timeout: float) -> tuple[int, ...]:
        """SUBSCRIBE and wait for the SUBACK; returns the granted QoS per
        filter.  Raises SinkError when the broker refuses one (an ACL) or
        does not answer within ``timeout``."""
        packet_id = self._next_id
        while packet_id in self._pending or packet_id in self._subacks:
            packet_id = packet_id % MAX_PACKET_ID + 1
        self._next_id = packet_id % MAX_PACKET_ID + 1
        waiter = self._subacks[packet_id] = asyncio.get_running_loop().create_future()
        self.flush()
        self._write_now(wire.subscribe(packet_id, topics, self.version))
        try:
            await asyncio.wait({waiter, self.lost}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._subacks.pop(packet_id, None)
        if self.lost.done():
            raise self.lost.exception() or SinkError("connection closed")
        if not waiter.done():
            raise SinkError(f"no SUBACK within {timeout:.0f} s")
        codes = waiter.result()
        refused = [topic for (topic, _qos), code in zip(topics, codes) if code >= 0x80]
        if refused or len(codes) != len(topics):
            raise SinkError(f"the broker refused the subscription to {', '.join(refused) or 'some topics'}; "
                            "check its ACL for this user (read access is needed)")
        return codes

    def flush(self) -> None:
        if self._out:
            self._write_now(bytes(self._out))
            self._out.clear()

    def _write_now(self, data: bytes) -> None:
        if self.lost.done():
            raise self.lost.exception() or SinkError("connection closed")
        assert self._transport is not None
        self._transport.write(data)
        self.last_sent = time.monotonic()

    async def room(self) -> None:
        """Until the in-flight window and the socket buffer have room."""
        await self._room.wait()
        await self._writable.wait()

    async def drained(self) -> None:
        await self._empty.wait()

    def overdue(self, timeout: float) -> float:
        """Seconds the oldest message has waited for its PUBACK beyond
        ``timeout`` (0 when none has)."""
        for _token, sent in self._pending.values():  # the first is the oldest
            return max(0.0, time.monotonic() - sent - timeout)
        return 0.0

    # ------------------------------------------------------------ keepalive and closing

    async def _keep_alive(self, period: int) -> None:
        """PINGREQ when nothing was sent for half the keepalive; the session
        is lost when a PINGRESP is a whole keepalive late."""
        while not self.lost.done():
            await asyncio.sleep(max(0.5, period / 4))
            now = time.monotonic()
            if self._ping_sent is not None and now - self._ping_sent > period:
                self._fail(SinkError(f"no PINGRESP within the {period} s keepalive"))
                return
            if now - self.last_sent >= period / 2 and self._ping_sent is None:
                try:
                    self._write_now(wire.PINGREQ_BYTES)
                except SinkError:
                    return
                self._ping_sent = now

    def _fail(self, exc: Exception) -> None:
        if not self.lost.done():
            self.lost.set_exception(exc)
            self.lost.exception()  # retrieved: whoever waits on it sees it
        self._room.set()  # nobody waits for room on a dead session
        self._writable.set()
        if self._transport is not None:
            self._transport.close()

    async def close(self, clean: bool) -> None:
        """DISCONNECT (the broker drops the will) when ``clean``, then close."""
        if self._keepalive is not None:
            self._keepalive.cancel()
        if clean and not self.lost.done() and self._transport is not None:
            try:
                self.flush()
                self._transport.write(wire.disconnect(self.version))
            except (SinkError, RuntimeError):
                pass
        self._fail(SinkError("closed"))
        await asyncio.sleep(0)

    def abort(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        self._fail(SinkError("aborted"))
        if self._transport is not None:
            self._transport.abort()
