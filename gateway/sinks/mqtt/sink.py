"""The MQTT sink: one partner's broker, QoS 1, fed by the delivery loop.

Each processed frame becomes one message (``senml``) or one per measurement
(``json``); up to ``max_in_flight`` messages (and no more than the broker's
MQTT 5 Receive Maximum) await their PUBACK at once, and a delivery is
confirmed to the loop once every message of it is acknowledged.  Any broken
session -- broker gone, publish refused, PUBACK or PINGRESP late -- raises
``SinkError``; the loop reconnects with backoff and delivers again from the
cursor: duplicates are possible, losses are not, and integrators
deduplicate by (node, seq).  A retained status message ("online", and
"offline" as the last will or at a clean stop) says whether the gateway is
delivering.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from contextlib import suppress

from ...delivery import Selection, Sink, SinkError
from ...spine import ProcessedFrame
from . import wire
from .client import BrokerRefused, ConnectRefused, Connection, ConnectTimeout
from .config import RouteConfig, tls_context
from .payload import CONTENT_TYPES, PayloadWriter, messages_of, senml_topic

log = logging.getLogger("smemet.gateway.sinks.mqtt")

CONNECT_TIMEOUT = 10.0  # seconds to wait for CONNACK (a 3.1.1-only broker may never answer a v5 CONNECT)
STATUS_TIMEOUT = 5.0
_TOPICS_CACHED = 100_000  # encoded topics kept (names come from nodes: bounded)


class _Countdown:
    """A delivery's messages: ``confirm`` once every one is acknowledged."""

    __slots__ = ("left", "confirm")

    def __init__(self, left: int, confirm: Callable[[], None]) -> None:
        self.left = left
        self.confirm = confirm


class MqttSink(Sink):
    kind = "route"

    def __init__(self, config: RouteConfig, status=None) -> None:
        super().__init__()
        self.config = config
        self._status = status  # GatewayStatus: its steps_for tells processed channels from untouched ones
        self.name = config.name
        self.description = config.url
        self.selection = Selection(config.include, config.exclude, config.kinds)
        self.protocol: int | None = None  # learnt in "auto" mode: wire.V5 or wire.V311
        self.version = wire.V311  # of the current session
        self._connection: Connection | None = None
        self._properties: bytes | None = None
        self._status_properties: bytes | None = None
        self._timeout = max(30.0, config.keepalive * 2.0)
        self._writer = PayloadWriter(self._untouched)  # unprocessed binary32 readings printed at binary32
        self._topics: dict[str, bytes] = {}
        self._node_topics: dict[str, bytes] = {}  # senml: node -> its encoded topic

    def _untouched(self, node: str, channel: str) -> bool:
        """Whether the channel passes unprocessed (no chain in gateway.toml)."""
        steps_for = getattr(self._status, "steps_for", None)
        return steps_for is not None and steps_for(node, channel) is None

    # -- the session ------------------------------------------------------

    async def open(self) -> None:
        connection = self._connection = await self._connect()
        self._properties = self._publish_properties()
        if self.version == wire.V5:
            self._status_properties = wire.publish_properties(content_type="application/json", payload_format=1)
        status = asyncio.get_running_loop().create_future()
        connection.publish(self._topic(self.config.status_topic), _status("online", self.config),
                           self._status_properties, status, retain=True)
        connection.flush()
        await asyncio.wait({status, connection.lost}, timeout=self._timeout, return_when=asyncio.FIRST_COMPLETED)
        if connection.lost.done():
            raise connection.lost.exception()
        if not status.done():
            raise SinkError(f"no PUBACK for the status message within {self._timeout:.0f} s")

    async def broken(self) -> None:
        assert self._connection is not None
        await asyncio.shield(self._connection.lost)  # raises its reason

    async def deliver(self, frames: Sequence[ProcessedFrame], confirm: Callable[[], None]) -> None:
        connection = self._connection
        assert connection is not None
        props = self._properties
        messages = self._senml_messages(frames) if self.config.format == "senml" else self._json_messages(frames)
        if not messages:
            confirm()
            return
        countdown = _Countdown(len(messages), confirm)
        publish = connection.publish
        for topic, payload in messages:
            if connection.full:
                connection.flush()
                while connection.full:
                    self._check_overdue()
                    await _wait_any(connection.room(), asyncio.shield(connection.lost), timeout=1.0)
                    if connection.lost.done():
                        raise connection.lost.exception()
            publish(topic, payload, props, countdown)
        connection.flush()
        self.stats.messages_sent += len(messages)
        self._check_overdue()
        if not connection._writable.is_set():  # noqa: SLF001 - the socket buffer is full: wait before more
            await _wait_any(connection.room(), asyncio.shield(connection.lost), timeout=self._timeout)

    def _senml_messages(self, frames: Sequence[ProcessedFrame]) -> list[tuple[bytes, bytes]]:
        """(encoded topic, payload): one message per frame, on <prefix>/<node>."""
        topics, write = self._node_topics, self._writer.senml_payload
        out = []
        for frame in frames:
            topic = topics.get(frame.node)
            if topic is None:
                topic = self._topic(senml_topic(self.config.topic_prefix, frame.node))
                if len(topics) < _TOPICS_CACHED:
                    topics[frame.node] = topic
            out.append((topic, write(frame)))
        return out

    def _json_messages(self, frames: Sequence[ProcessedFrame]) -> list[tuple[bytes, bytes]]:
        """(encoded topic, payload): one message per measurement."""
        prefix, writer, topic_of = self.config.topic_prefix, self._writer, self._topic
        return [(topic_of(message.topic), message.payload)
                for frame in frames for message in messages_of("json", prefix, frame, writer)]

    def _topic(self, topic: str) -> bytes:
        encoded = self._topics.get(topic)
        if encoded is None:
            encoded = wire.text(topic)
            if len(self._topics) < _TOPICS_CACHED:
                self._topics[topic] = encoded
        return encoded

    def _acked(self, token) -> None:
        """A PUBACK."""
        if type(token) is _Countdown:
            self.stats.messages_confirmed += 1
            token.left -= 1
            if not token.left:
                token.confirm()
        elif isinstance(token, asyncio.Future) and not token.done():
            token.set_result(None)

    def _check_overdue(self) -> None:
        assert self._connection is not None
        if self._connection.overdue(self._timeout):
            raise SinkError(f"no PUBACK within {self._timeout:.0f} s; reconnecting")

    async def drain(self, timeout: float) -> None:
        connection = self._connection
        if connection is not None and connection.in_flight:
            with suppress(TimeoutError):
                await asyncio.wait_for(connection.drained(), timeout)

    async def close(self, clean: bool) -> None:
        connection = self._connection
        if connection is None:
            return
        self._connection = None
        if clean and not connection.lost.done():
            # the will is not sent on a clean disconnect, so say "offline" ourselves
            with suppress(Exception):
                status = asyncio.get_running_loop().create_future()
                connection.publish(self._topic(self.config.status_topic), _status("offline", self.config, "stopped"),
                                   self._status_properties, status, retain=True)
                connection.flush()
                await asyncio.wait({status, connection.lost}, timeout=STATUS_TIMEOUT,
                                   return_when=asyncio.FIRST_COMPLETED)
        await connection.close(clean)

    async def _connect(self) -> Connection:
        cfg = self.config
        if cfg.mqtt_version == "5":
            versions = [wire.V5]
        elif cfg.mqtt_version == "3.1.1":
            versions = [wire.V311]
        elif self.protocol is not None:
            versions = [self.protocol]
        else:  # auto: MQTT 5 first, 3.1.1 if the broker does not speak it
            versions = [wire.V5, wire.V311]
        tls = tls_context(cfg.tls) if cfg.tls is not None else None
        for i, version in enumerate(versions):
            will = wire.Will(cfg.status_topic, _status("offline", cfg, "connection lost"), qos=1, retain=True)
            try:
                connection = await Connection.open(
                    cfg.host, cfg.port, version=version, client_id=cfg.client_id, keepalive=cfg.keepalive,
                    username=cfg.username, password=cfg.password, will=will, tls=tls, timeout=CONNECT_TIMEOUT,
                    max_in_flight=cfg.max_in_flight, on_ack=self._acked,
                )
            except (ConnectTimeout, ConnectRefused, SinkError) as exc:
                if i + 1 < len(versions) and not (isinstance(exc, ConnectRefused) and exc.login):
                    continue  # perhaps a 3.1.1-only broker: try that
                raise
            if cfg.mqtt_version == "auto":
                self.protocol = version
            self.version = version
            self.description = f"{cfg.url} ({'MQTT 5' if version == wire.V5 else 'MQTT 3.1.1'})"
            return connection
        raise AssertionError("unreachable")

    def _publish_properties(self) -> bytes | None:
        """MQTT 5 properties every data message carries, encoded once per session."""
        if self.version != wire.V5:
            return None
        cfg = self.config
        return wire.publish_properties(content_type=CONTENT_TYPES[cfg.format], payload_format=1,
                                       message_expiry=cfg.message_expiry or None)

    def explain(self, exc: BaseException) -> str:
        return explain(exc, self.config)


def _status(state: str, cfg: RouteConfig, reason: str | None = None) -> bytes:
    doc = {"state": state, "gateway": cfg.gateway_id, "route": cfg.name, "time": round(time.time(), 3)}
    if reason:
        doc["reason"] = reason
    return json.dumps(doc, separators=(",", ":")).encode()


async def _wait_any(*aws, timeout: float | None = None) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        for task in tasks:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: errors are handled elsewhere


def explain(exc: BaseException, cfg: RouteConfig) -> str:
    """One line saying what went wrong and what to do."""
    text = str(exc)
    if exc.__cause__ is not None and str(exc.__cause__):
        text = f"{text}: {exc.__cause__}"
    if isinstance(exc, ConnectRefused) and exc.login:
        return (f"the broker refused the login ({wire.reason_text(exc.version, exc.code)}); "
                "check username and password/password_file")
    if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text \
            or "certificate verify failed" in text:
        return f"TLS certificate verification failed ({text}); check tls.ca and the broker's certificate"
    if isinstance(exc, ssl.SSLError) or "SSL" in text or "TLS" in text:
        return f"TLS handshake failed ({text}); check tls.ca, tls.cert, tls.key and that the port speaks TLS"
    if isinstance(exc, ConnectionRefusedError) or "Connection refused" in text or "Errno 111" in text:
        return f"connection refused at {cfg.host}:{cfg.port}; is the broker running and listening there?"
    if isinstance(exc, (TimeoutError, ConnectTimeout)) or "timed out" in text:
        return f"no answer from the broker ({text or 'timed out'})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot reach the broker at {cfg.host}:{cfg.port} ({exc.strerror})"
    return text or type(exc).__name__


__all__ = ["BrokerRefused", "MqttSink", "explain"]
