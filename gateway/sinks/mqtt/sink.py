"""The MQTT sink: one partner's broker, QoS 1, fed by the delivery loop.

Each processed frame becomes one message (``senml``) or one per measurement
(``json``); up to ``max_in_flight`` messages await their PUBACK at once, and a
delivery is confirmed to the loop once every message of it is acknowledged.
Any broken session -- broker gone, publish refused, PUBACK late -- raises
``SinkError``; the loop reconnects with backoff and delivers again from the
cursor: duplicates are possible, losses are not, and integrators
deduplicate by (node, seq).  A retained status message (online, and the
offline last will) says whether the gateway is delivering.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Awaitable

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ...delivery import Selection, Sink, SinkError
from ...spine import ProcessedFrame
from .config import RouteConfig, tls_context
from .payload import CONTENT_TYPES, SenmlWriter, messages_of
from .publisher import Publisher

log = logging.getLogger("smemet.gateway.sinks.mqtt")
# paho logs every lost socket at ERROR; the sink says it once, clearly.
# Lower this logger's level to see paho's own details.
_paho_log = logging.getLogger("smemet.gateway.sinks.mqtt.paho")
_paho_log.setLevel(logging.CRITICAL)

CONNECT_TIMEOUT = 10.0  # seconds to wait for CONNACK (a 3.1.1-only broker may never answer a v5 CONNECT)
STATUS_TIMEOUT = 5.0


class BrokerRefused(SinkError):
    """The broker answered a publish with a failure reason code (MQTT 5)."""


class _Countdown:
    """A delivery's messages: ``confirm`` once every one is acknowledged."""

    __slots__ = ("left", "confirm")

    def __init__(self, left: int, confirm: Callable[[], None]) -> None:
        self.left = left
        self.confirm = confirm


class MqttSink(Sink):
    kind = "route"

    def __init__(self, config: RouteConfig) -> None:
        super().__init__()
        self.config = config
        self.name = config.name
        self.description = config.url
        self.selection = Selection(config.include, config.exclude, config.kinds)
        self.protocol: aiomqtt.ProtocolVersion | None = None  # learnt in "auto" mode
        self.version = aiomqtt.ProtocolVersion.V311  # of the current session
        self._client: aiomqtt.Client | None = None
        self._publisher: Publisher | None = None
        self._refused: _Refusals | None = None
        self._props = None
        self._timeout = max(30.0, config.keepalive * 2.0)
        self._writer = SenmlWriter()

    # -- the session ------------------------------------------------------

    async def open(self) -> None:
        cfg = self.config
        client = await self._connect()
        self._client = client
        self._publisher = Publisher(client, cfg.max_in_flight, self._acked)
        self._refused = _watch_refusals(client, self._publisher)
        self._props = self._properties()
        # The retained "online" status: a broker that refuses it (MQTT 5
        # reason code) never completes aiomqtt's publish, so race the refusal.
        publishing = asyncio.ensure_future(client.publish(cfg.status_topic, _status("online", cfg), qos=1, retain=True))
        refusal = asyncio.ensure_future(self._refused.wait())
        try:
            await asyncio.wait({publishing, refusal}, timeout=self._timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            refusal.cancel()
            if not publishing.done():
                publishing.cancel()
        if refusal.done() and not refusal.cancelled() and refusal.exception() is not None:
            raise refusal.exception()
        if not publishing.done() or publishing.cancelled():
            raise SinkError(f"no PUBACK for the status message within {self._timeout:.0f} s")
        if publishing.exception() is not None:
            raise SinkError(f"cannot publish the status message ({publishing.exception()})")

    async def broken(self) -> None:
        assert self._client is not None and self._refused is not None
        # A refusal first: it explains the disconnect that may follow it.
        refusal = asyncio.ensure_future(self._refused.wait())
        disconnect = asyncio.ensure_future(_watch_disconnect(self._client))
        try:
            await asyncio.wait({refusal, disconnect}, return_when=asyncio.FIRST_COMPLETED)
            await asyncio.sleep(0)
        finally:
            for task in (refusal, disconnect):
                task.cancel()
        for task in (refusal, disconnect):
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()
        raise SinkError("disconnected")

    async def deliver(self, frames: Sequence[ProcessedFrame], confirm: Callable[[], None]) -> None:
        publisher = self._publisher
        assert publisher is not None
        cfg, props, writer = self.config, self._props, self._writer
        messages = [message for frame in frames for message in messages_of(cfg.format, cfg.topic_prefix, frame, writer)]
        if not messages:
            confirm()
            return
        countdown = _Countdown(len(messages), confirm)
        for message in messages:
            while publisher.full:
                self._check_overdue()
                await _wait_any(publisher.room(), timeout=1.0)
            self._check_overdue()
            try:
                publisher.publish(message.topic, message.payload, props, countdown)
            except aiomqtt.MqttError as exc:
                raise SinkError(f"publish failed ({exc})") from None
            self.stats.messages_sent += 1

    def _acked(self, countdown: _Countdown) -> None:
        """A PUBACK (through ``Publisher``)."""
        self.stats.messages_confirmed += 1
        countdown.left -= 1
        if not countdown.left:
            countdown.confirm()

    def _check_overdue(self) -> None:
        assert self._publisher is not None
        if self._publisher.overdue(self._timeout):
            raise SinkError(f"no PUBACK within {self._timeout:.0f} s; reconnecting")

    async def drain(self, timeout: float) -> None:
        if self._publisher is not None and self._publisher.in_flight:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._publisher.drained(), timeout)

    async def close(self, clean: bool) -> None:
        client = self._client
        if client is None:
            return
        self._client = None
        cfg = self.config
        if clean:  # the will is not sent on a clean disconnect, so say "offline" ourselves
            with suppress(Exception):
                await asyncio.wait_for(
                    client.publish(cfg.status_topic, _status("offline", cfg, "stopped"), qos=1, retain=True),
                    STATUS_TIMEOUT,
                )
        if self._refused is not None:
            self._refused.forget()
        with suppress(Exception):
            await client.__aexit__(None, None, None)

    async def _connect(self) -> aiomqtt.Client:
        cfg = self.config
        if cfg.mqtt_version == "5":
            versions = [aiomqtt.ProtocolVersion.V5]
        elif cfg.mqtt_version == "3.1.1":
            versions = [aiomqtt.ProtocolVersion.V311]
        elif self.protocol is not None:
            versions = [self.protocol]
        else:  # auto: MQTT 5 first, 3.1.1 if the broker does not speak it
            versions = [aiomqtt.ProtocolVersion.V5, aiomqtt.ProtocolVersion.V311]
        for i, version in enumerate(versions):
            client = self._new_client(version)
            try:
                await client.__aenter__()
            except aiomqtt.MqttError as exc:
                if i + 1 < len(versions) and not _is_login_refusal(exc):
                    continue  # perhaps a 3.1.1-only broker: try that
                raise
            if cfg.mqtt_version == "auto":
                self.protocol = version
            self.version = version
            self.description = f"{cfg.url} ({'MQTT 5' if version == aiomqtt.ProtocolVersion.V5 else 'MQTT 3.1.1'})"
            return client
        raise AssertionError("unreachable")

    def _new_client(self, version: aiomqtt.ProtocolVersion) -> aiomqtt.Client:
        cfg = self.config
        tls = tls_context(cfg.tls) if cfg.tls is not None else None
        will = aiomqtt.Will(cfg.status_topic, _status("offline", cfg, "connection lost"), qos=1, retain=True)
        client = aiomqtt.Client(
            cfg.host,
            cfg.port,
            username=cfg.username,
            password=cfg.password,
            identifier=cfg.client_id,
            protocol=version,
            will=will,
            clean_session=True if version != aiomqtt.ProtocolVersion.V5 else None,
            keepalive=cfg.keepalive,
            tls_context=tls,
            max_inflight_messages=cfg.max_in_flight,
            timeout=CONNECT_TIMEOUT,  # CONNACK; publishes pass their own
            logger=_paho_log,
        )
        # We bound publishes ourselves; do not warn about each one pending.
        client.pending_calls_threshold = cfg.max_in_flight + 10
        return client

    def _properties(self) -> Properties | None:
        if self.version != aiomqtt.ProtocolVersion.V5:
            return None
        props = _PackedOnce(PacketTypes.PUBLISH)
        props.ContentType = CONTENT_TYPES[self.config.format]
        props.PayloadFormatIndicator = 1  # UTF-8 text
        if self.config.message_expiry:
            props.MessageExpiryInterval = self.config.message_expiry
        return props

    def explain(self, exc: BaseException) -> str:
        return explain(exc, self.config)


class _PackedOnce(Properties):
    """Publish properties packed once per session instead of once per
    message: every data message carries the same ones, and paho packs them
    for each publish (2 % of the gateway's py-spy samples end to end).  Not changed
    after the first publish."""

    _packed: bytes | None = None

    def pack(self) -> bytes:
        if self._packed is None:
            object.__setattr__(self, "_packed", super().pack())  # Properties refuses unknown attributes
        return self._packed


def _status(state: str, cfg: RouteConfig, reason: str | None = None) -> bytes:
    doc = {"state": state, "gateway": cfg.gateway_id, "route": cfg.name, "time": round(time.time(), 3)}
    if reason:
        doc["reason"] = reason
    return json.dumps(doc, separators=(",", ":")).encode()


class _Refusals:
    def __init__(self) -> None:
        self.error: asyncio.Future = asyncio.get_running_loop().create_future()

    async def wait(self) -> None:
        await asyncio.shield(self.error)

    def forget(self) -> None:
        if self.error.done():
            self.error.exception()  # reported already, if it mattered
        else:
            self.error.cancel()


def _watch_refusals(client: aiomqtt.Client, publisher: Publisher) -> _Refusals:
    """Route PUBACKs: data messages to ``publisher``, the rest to aiomqtt;
    and fail the session when an MQTT 5 broker refuses a publish.

    aiomqtt reports a PUBACK as success whatever its reason code, so a
    publish an ACL denies would count as delivered and be lost.  We look at
    the reason code first (through paho's callback) and, on a refusal, never
    let anyone see the PUBACK: the session ends and the cursor stays put.
    """
    refusals = _Refusals()
    paho = client._client  # noqa: SLF001 - the only place aiomqtt exposes reason codes
    inner = paho.on_publish

    def on_publish(c, userdata, mid, reason_code, properties):  # noqa: ANN001
        if getattr(reason_code, "is_failure", False):
            if not refusals.error.done():
                refusals.error.set_exception(
                    BrokerRefused(f"the broker refused a publish ({reason_code}); check its ACL for this user")
                )
            return
        if not publisher.acked(mid):
            inner(c, userdata, mid, reason_code, properties)

    paho.on_publish = on_publish
    return refusals


async def _watch_disconnect(client: aiomqtt.Client) -> None:
    # aiomqtt's message iterator is its public signal of a lost connection.
    async for _ in client.messages:
        pass
    raise aiomqtt.MqttError("disconnected")


async def _wait_any(*aws: Awaitable, timeout: float | None = None) -> None:
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


def _is_login_refusal(exc: BaseException) -> bool:
    rc = getattr(exc, "rc", None)
    value = getattr(rc, "value", rc)
    return value in (4, 5, 0x86, 0x87, 0x8C)


def explain(exc: BaseException, cfg: RouteConfig) -> str:
    """One line saying what went wrong and what to do."""
    text = str(exc)
    if exc.__cause__ is not None and str(exc.__cause__):
        text = f"{text}: {exc.__cause__}"
    rc = getattr(exc, "rc", None)
    value = getattr(rc, "value", rc)
    if isinstance(exc, MqttConnectError) and value in (4, 5, 0x86, 0x87, 0x8C):
        return f"the broker refused the login ({text}); check username and password/password_file"
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return f"TLS certificate verification failed ({text}); check tls.ca and the broker's certificate"
    if "SSL" in text or "TLS" in text:
        return f"TLS handshake failed ({text}); check tls.ca, tls.cert, tls.key and that the port speaks TLS"
    if "Connection refused" in text or "Errno 111" in text:
        return f"connection refused at {cfg.host}:{cfg.port}; is the broker running and listening there?"
    if "timed out" in text:
        return f"no answer from the broker ({text})"
    return text or type(exc).__name__


__all__ = ["BrokerRefused", "MqttSink", "explain"]
