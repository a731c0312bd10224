"""One route: a connection to one partner's broker fed from the outbox.

The route reads measurements after its durable cursor, publishes them with
QoS 1 and up to ``max_in_flight`` awaiting PUBACK at once, and moves the
cursor only past what the broker acknowledged (``AckTracker``).  Any broken
session — broker gone, publish refused, PUBACK late — ends in a reconnect
with backoff that resends from the cursor; duplicates are possible, losses
are not, and integrators deduplicate by (node, seq).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from contextlib import suppress
from typing import Awaitable

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..model import MeasurementSource
from .config import RouteConfig, tls_context
from .metrics import RouteMetrics
from .payload import CONTENT_TYPES, FrameBlock, Selector, SenmlWriter, encode_batch, encode_frames
from .publisher import Publisher
from .tracker import AckTracker

log = logging.getLogger("smemet.gateway.routes")
# paho logs every lost socket at ERROR; the route says it once, clearly.
# Lower this logger's level to see paho's own details.
_paho_log = logging.getLogger("smemet.gateway.routes.mqtt")
_paho_log.setLevel(logging.CRITICAL)

BATCH = 500  # measurements read at once from a source without read_frames
FRAME_BATCH = 64  # frames read at once from the outbox (read_frames)
CURSOR_SAVE_INTERVAL = 0.5  # seconds; a crash only re-sends (dedup removes it)
BACKOFF_MIN, BACKOFF_MAX = 0.5, 30.0
OUTAGE_LOG_INTERVAL = 60.0  # at most one "still down" line per minute per route
DRAIN_TIMEOUT = 5.0  # on stop, wait this long for outstanding PUBACKs
CONNECT_TIMEOUT = 10.0  # seconds to wait for CONNACK (a 3.1.1-only broker may never answer a v5 CONNECT)


class BrokerRefused(aiomqtt.MqttError):
    """The broker answered a publish with a failure reason code (MQTT 5)."""


class Route:
    def __init__(self, config: RouteConfig, source: MeasurementSource, metrics: RouteMetrics) -> None:
        self.config = config
        self.source = source
        self.metrics = metrics
        self.select = Selector(config)
        self.cursor = 0
        self.saved = 0
        self.last_save = 0.0
        self.highest_seen = 0
        self.protocol: aiomqtt.ProtocolVersion | None = None  # learnt in "auto" mode
        self.version = aiomqtt.ProtocolVersion.V311  # of the current session
        self.outage = _OutageLog(config)
        self._tracker = AckTracker(0)  # the current session's
        self._unreported = 0  # PUBACKs not yet added to the published metric

    async def run(self, stop: asyncio.Event) -> None:
        name = self.config.name
        self.cursor = self.saved = self.highest_seen = self.source.load_cursor(name)
        backoff = BACKOFF_MIN
        while not stop.is_set():
            started = time.monotonic()
            try:
                await self._session(stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a route never crashes the gateway
                self.metrics.connected(name, False)
                self.metrics.failure(name)
                self._save_cursor(force=True)
                self._update_lag_offline()
                try:
                    self.outage.down(exc)
                except Exception:  # noqa: BLE001 - never let a log line end the route
                    log.exception("route %s: failed", name)
                if time.monotonic() - started > 10 * BACKOFF_MAX:
                    backoff = BACKOFF_MIN  # it was a long healthy session: retry soon
                await _wait_any(stop.wait(), timeout=backoff * random.uniform(0.8, 1.2))
                backoff = min(BACKOFF_MAX, backoff * 2)
            else:
                backoff = BACKOFF_MIN
        self.metrics.connected(name, False)

    # -- one connection ---------------------------------------------------

    async def _session(self, stop: asyncio.Event) -> None:
        client = await self._connect(stop)
        if client is None:
            return
        cfg = self.config
        tracker = self._tracker = AckTracker(self.cursor)
        publisher = Publisher(client, cfg.max_in_flight, self._acked)
        refused = _watch_refusals(client, publisher)

        async def deliver() -> None:
            await client.publish(cfg.status_topic, _status("online", cfg), qos=1, retain=True)
            await self._pump(client, tracker, publisher, stop)

        try:
            self.metrics.connected(cfg.name, True)
            self.outage.up(self._protocol_name(), self.cursor)
            try:
                # A refusal first: it explains the disconnect that may follow it.
                await _first_error(deliver(), refused.wait(), _watch_disconnect(client))
            finally:
                self._report_published()
                self.cursor = tracker.acked
                self._save_cursor(force=True)
            # A clean stop: the will is not sent, so say "offline" ourselves.
            with suppress(Exception):
                await asyncio.wait_for(
                    client.publish(cfg.status_topic, _status("offline", cfg, "stopped"), qos=1, retain=True),
                    DRAIN_TIMEOUT,
                )
        finally:
            refused.forget()
            with suppress(Exception):
                await client.__aexit__(None, None, None)

    async def _connect(self, stop: asyncio.Event) -> aiomqtt.Client | None:
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
            client = self._client(version)
            connecting = asyncio.ensure_future(client.__aenter__())
            stopping = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
            if not connecting.done():
                connecting.cancel()
                with suppress(BaseException):
                    await connecting
                return None
            try:
                connecting.result()
            except aiomqtt.MqttError as exc:
                if i + 1 < len(versions) and not _is_login_refusal(exc):
                    continue  # perhaps a 3.1.1-only broker: try that
                raise
            if cfg.mqtt_version == "auto":
                self.protocol = version
            self.version = version
            return client
        raise AssertionError("unreachable")

    def _client(self, version: aiomqtt.ProtocolVersion) -> aiomqtt.Client:
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

    def _protocol_name(self) -> str:
        return "MQTT 5" if self.version == aiomqtt.ProtocolVersion.V5 else "MQTT 3.1.1"

    def _properties(self) -> Properties | None:
        if self.version != aiomqtt.ProtocolVersion.V5:
            return None
        props = _PackedOnce(PacketTypes.PUBLISH)
        props.ContentType = CONTENT_TYPES[self.config.format]
        props.PayloadFormatIndicator = 1  # UTF-8 text
        if self.config.message_expiry:
            props.MessageExpiryInterval = self.config.message_expiry
        return props

    # -- publishing -------------------------------------------------------

    async def _pump(self, client: aiomqtt.Client, tracker: AckTracker, publisher: Publisher,
                    stop: asyncio.Event) -> None:
        cfg = self.config
        props = self._properties()
        timeout = max(30.0, cfg.keepalive * 2.0)
        read_frames = getattr(self.source, "read_frames", None)  # the outbox's row-level read
        writer = SenmlWriter()
        read_pos = tracker.acked
        while not stop.is_set():
            self._check_overdue(publisher, timeout)
            if read_frames is not None:
                blocks = [FrameBlock(*block) for block in read_frames(read_pos, FRAME_BATCH)]
                if blocks:
                    messages = encode_frames(cfg, self.select, blocks, writer)
                    consumed = blocks[-1].last_id
            else:
                batch = self.source.read(read_pos, BATCH)
                blocks = batch
                if batch:
                    messages, consumed = encode_batch(cfg, self.select, batch, more=len(batch) == BATCH)
            if not blocks:
                self._after_progress(tracker, read_pos, idle=True)
                await _wait_any(self.source.wait_beyond(read_pos, timeout=1.0), stop.wait())
                continue
            self.highest_seen = max(self.highest_seen, consumed)
            publish = publisher.publish
            for msg in messages:
                while publisher.full:
                    await _wait_any(publisher.room(), stop.wait(), timeout=1.0)
                    if stop.is_set():
                        break
                    self._check_overdue(publisher, timeout)
                if stop.is_set():
                    break
                publish(msg.topic, msg.payload, props, tracker.add(msg.last_id, msg.oldest_time))
            else:
                tracker.skip(consumed)
                read_pos = consumed
                self._after_progress(tracker, read_pos, idle=False)
        if publisher.in_flight:
            # Stopping: give outstanding PUBACKs a moment so we resend less.
            with suppress(TimeoutError):
                await asyncio.wait_for(publisher.drained(), DRAIN_TIMEOUT)

    def _acked(self, token: list) -> None:
        """A PUBACK (through ``Publisher``)."""
        self._tracker.done(token)
        self._unreported += 1  # counted into the metric by _after_progress: no labels()/lock per PUBACK

    @staticmethod
    def _check_overdue(publisher: Publisher, timeout: float) -> None:
        if publisher.overdue(timeout):
            raise aiomqtt.MqttError(f"no PUBACK within {timeout:.0f} s; reconnecting")

    def _report_published(self) -> None:
        if self._unreported:
            self.metrics.published(self.config.name, self._unreported)
            self._unreported = 0

    def _after_progress(self, tracker: AckTracker, read_pos: int, idle: bool) -> None:
        self._report_published()
        self.cursor = tracker.acked
        self._save_cursor(force=idle)
        last = self._last_id()
        oldest = tracker.oldest_time()
        self.metrics.lag(
            self.config.name, last - tracker.acked, time.time() - oldest if oldest is not None else 0.0
        )

    def _last_id(self) -> int:
        # The outbox may tell us its newest id; otherwise we know what we read.
        last_id = getattr(self.source, "last_id", None)
        return last_id() if callable(last_id) else self.highest_seen

    def _update_lag_offline(self) -> None:
        with suppress(Exception):
            first = self.source.read(self.cursor, 1)
            if first:
                self.highest_seen = max(self.highest_seen, first[-1].id)
                self.metrics.lag(self.config.name, self._last_id() - self.cursor, time.time() - first[0].time)

    def _save_cursor(self, force: bool) -> None:
        now = time.monotonic()
        if self.cursor > self.saved and (force or now - self.last_save >= CURSOR_SAVE_INTERVAL):
            self.source.save_cursor(self.config.name, self.cursor)
            self.saved = self.cursor
            self.last_save = now


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


async def _first_error(main: Awaitable, *watchers: Awaitable) -> None:
    """Run ``main``; if a watcher finishes first (with an error), cancel
    ``main`` and raise that error (the earliest watcher's, if several)."""
    main_task = asyncio.ensure_future(main)
    watch_tasks = [asyncio.ensure_future(w) for w in watchers]
    try:
        await asyncio.wait([main_task, *watch_tasks], return_when=asyncio.FIRST_COMPLETED)
        await asyncio.sleep(0)  # let a refusal and the disconnect it causes both land
    finally:
        for task in watch_tasks:
            task.cancel()
        for task in watch_tasks:
            with suppress(BaseException):
                await task
    if not main_task.done():
        main_task.cancel()
        with suppress(asyncio.CancelledError):
            await main_task
        for task in watch_tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()
        raise aiomqtt.MqttError("connection lost")
    main_task.result()


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


class _OutageLog:
    """One clear line when a route goes down, a reminder at most once a
    minute while it stays down, one line when it is back."""

    def __init__(self, cfg: RouteConfig) -> None:
        self.cfg = cfg
        self.down_since: float | None = None
        self.attempts = 0
        self.last_line = 0.0
        self.last_reason = ""

    def down(self, exc: BaseException) -> None:
        now = time.monotonic()
        reason = explain(exc, self.cfg)
        self.attempts += 1
        if self.down_since is None:
            self.down_since = now
            self.attempts = 1
            log.warning(
                "route %s: cannot deliver to %s: %s; retrying with backoff, the backlog stays in the outbox",
                self.cfg.name, self.cfg.url, reason,
            )
        elif reason != self.last_reason or now - self.last_line >= OUTAGE_LOG_INTERVAL:
            log.warning(
                "route %s: still cannot deliver to %s after %.0f s and %d attempts: %s",
                self.cfg.name, self.cfg.url, now - self.down_since, self.attempts, reason,
            )
        else:
            return
        self.last_line = now
        self.last_reason = reason

    def up(self, protocol: str, cursor: int) -> None:
        if self.down_since is None:
            log.info("route %s: connected to %s (%s), delivering after outbox id %d",
                     self.cfg.name, self.cfg.url, protocol, cursor)
        else:
            log.warning("route %s: connected to %s (%s) again after %.0f s down, delivering after outbox id %d",
                        self.cfg.name, self.cfg.url, protocol, time.monotonic() - self.down_since, cursor)
        self.down_since = None
        self.last_reason = ""


__all__ = ["Route", "BrokerRefused", "explain"]
