"""The Sparkplug sink: the gateway as one Sparkplug B edge node on one broker,
fed by the delivery loop like every sink.

A session (``open``): connect with the NDEATH as will (QoS 1, not
retained), subscribe to this node's NCMD and, with a ``primary_host_id``,
to the host's STATE; wait until that host is online; publish NBIRTH.  Then
each delivery becomes DBIRTHs where needed and one DDATA per device, at QoS
0 as the spec requires -- followed by one QoS 1 message on
``confirm_topic`` outside the Sparkplug namespace.  Its PUBACK, on the same
connection, proves the broker read every packet before it (TCP keeps their
order; MQTT brokers handle a connection's packets in order), so only then
is the delivery confirmed and the durable cursor moves.  A connection that
breaks before that PUBACK confirms nothing: the loop reconnects and delivers
again from the cursor.

While the primary host is offline nothing is published: the session ends
(NDEATH, DISCONNECT), the data waits in the outbox, and the next session --
once STATE says online -- delivers it with ``is_historical`` set, oldest
first, original timestamps kept.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import suppress

from ...delivery import Selection, Sink, SinkError, wait_any
from ...spine import ProcessedFrame
from ..mqtt import wire
from ..mqtt.client import ConnectRefused, Connection, ConnectTimeout
from ..mqtt.config import tls_context
from ..mqtt.sink import explain
from .config import SparkplugConfig
from .session import EdgeSession, Outgoing

log = logging.getLogger("smemet.gateway.sinks.sparkplug")

CONNECT_TIMEOUT = 10.0
SUBSCRIBE_TIMEOUT = 10.0
DEATH_TIMEOUT = 5.0  # seconds a clean stop waits for the NDEATH's PUBACK
TICK = 1.0  # seconds between checks for silent devices and waiting rebirths
IDLE_BEFORE_DEATHS = 1.0  # no delivery for this long: the sink is caught up


class HostOffline(SinkError):
    """The primary host is offline: the session ended on purpose."""


class _Confirmation:
    """A delivery's QoS 1 confirming message: ``confirm`` at its PUBACK."""

    __slots__ = ("messages", "confirm")

    def __init__(self, messages: int, confirm: Callable[[], None]) -> None:
        self.messages = messages
        self.confirm = confirm


def _now_ms() -> int:
    return int(time.time() * 1000)


class SparkplugSink(Sink):
    kind = "sparkplug"

    def __init__(self, config: SparkplugConfig, outbox=None, state_file: str | None = None,
                 software: str = "") -> None:
        super().__init__()
        self.config = config
        self.name = config.name
        self.description = f"{config.url} as {config.group_id}/{config.edge_node_id}"
        self.selection = Selection(config.include, config.exclude, config.kinds)
        self.state_file = state_file
        self.session = EdgeSession(config.group_id, config.edge_node_id, _load_bd_seq(state_file), software)
        self.protocol: int | None = None  # learnt in "auto" mode
        self._outbox = outbox
        self._connection: Connection | None = None
        self._lock = asyncio.Lock()  # one sequence of Sparkplug messages at a time (seq order)
        self._host_online = asyncio.Event()
        self._end_reason: SinkError | None = None  # set when the sink itself ends the session
        self._born = False
        self._rebirth_wanted = False
        self._live_after = 0
        self._delivered_upto = 0
        self._last_delivery = 0.0
        self._ticker: asyncio.Task | None = None
        self._topics: dict[str, bytes] = {}
        self._properties: bytes | None = None
        self._confirm_topic = wire.text(config.confirm_topic)
        self._state_topic = f"spBv1.0/STATE/{config.primary_host_id}" if config.primary_host_id else None

    # -- the session ------------------------------------------------------

    async def open(self) -> None:
        session = self.session
        self._born = False
        self._rebirth_wanted = False
        self._end_reason = None
        self._host_online.clear()
        will = session.connect(_now_ms())
        _save_bd_seq(self.state_file, session.bd_seq)  # before CONNECT: a crash never reuses a bdSeq
        connection = self._connection = await self._connect(will)
        # MQTT 5 PUBLISH always carries a property block: an empty one here
        self._properties = wire.publish_properties() if connection.version == wire.V5 else None
        try:
            await self._start(connection)
        except asyncio.CancelledError:
            await connection.close(True)  # stopping before NBIRTH: DISCONNECT, nothing to declare dead
            raise
        except BaseException:
            connection.abort()
            raise

    async def _start(self, connection: Connection) -> None:
        cfg, session = self.config, self.session
        topics = [(session.ncmd_topic, 1)]
        if self._state_topic is not None:
            topics.append((self._state_topic, 1))
        await connection.subscribe(tuple(topics), SUBSCRIBE_TIMEOUT)
        if self._state_topic is not None and not self._host_online.is_set():
            log.info("sparkplug %s: waiting for primary host %s to be online (%s) before NBIRTH",
                     self.name, cfg.primary_host_id, self._state_topic)
            await wait_any(self._host_online.wait(), asyncio.shield(connection.lost))
            if connection.lost.done():
                raise connection.lost.exception()
        async with self._lock:
            # what is stored by now was held back (an outage, the host away): history
            self._live_after = self._outbox.last_measurement_id if self._outbox is not None else 0
            self._publish(session.birth(_now_ms()))
            connection.flush()
            self._born = True
        self._ticker = asyncio.create_task(self._tick(), name=f"sparkplug {self.name} timers")

    async def broken(self) -> None:
        assert self._connection is not None
        with suppress(Exception):
            await asyncio.shield(self._connection.lost)
        raise self._end_reason or self._connection.lost.exception()

    async def deliver(self, frames: Sequence[ProcessedFrame], confirm: Callable[[], None]) -> None:
        connection = self._connection
        assert connection is not None
        async with self._lock:
            if self._rebirth_wanted:
                self._rebirth()
            messages = self.session.data(frames, _now_ms(), self._live_after)
            self._publish(messages)
            self.stats.messages_sent += len(messages)
            while connection.full:
                connection.flush()
                self._check_overdue()
                await wait_any(connection.room(), asyncio.shield(connection.lost), timeout=1.0)
                if connection.lost.done():
                    raise connection.lost.exception()
            last_id = frames[-1].last_id
            connection.publish(self._confirm_topic, b"%d" % last_id, self._properties, _Confirmation(len(messages), confirm))
            connection.flush()
            self._delivered_upto = last_id
            self._last_delivery = time.monotonic()
        self._check_overdue()
        if not connection._writable.is_set():  # noqa: SLF001 - the socket buffer is full: wait before more
            await wait_any(connection.room(), asyncio.shield(connection.lost), timeout=self._timeout)

    def _publish(self, messages: list[Outgoing]) -> None:
        """Queue Sparkplug messages: all QoS 0, never retained (§4.2, §4.3)."""
        connection = self._connection
        assert connection is not None
        topic_of, properties, publish = self._topic, self._properties, connection.publish_qos0
        for message in messages:
            publish(topic_of(message.topic), message.payload, properties)

    def _topic(self, topic: str) -> bytes:
        encoded = self._topics.get(topic)
        if encoded is None:
            encoded = self._topics[topic] = wire.text(topic)
        return encoded

    def _rebirth(self) -> None:
        """'Node Control/Rebirth': stop data, the whole birth sequence again
        (same bdSeq: same connection), then data goes on."""
        self._rebirth_wanted = False
        births = self.session.birth(_now_ms())
        self._publish(births)
        assert self._connection is not None
        self._connection.flush()
        log.info("sparkplug %s: rebirth on request (NBIRTH and %d DBIRTH)", self.name, len(births) - 1)

    async def _tick(self) -> None:
        """Rebirths asked for while no delivery runs, and DDEATH for nodes
        silent past ``device_timeout`` (only when caught up: a backlog may
        still hold their frames)."""
        timeout = self.config.device_timeout
        while True:
            await asyncio.sleep(TICK)
            if self._connection is None or self._connection.lost.done() or not self._born:
                return
            if self._rebirth_wanted and not self._lock.locked():
                async with self._lock:
                    self._rebirth()
            if timeout > 0 and self._caught_up() and not self._lock.locked():
                async with self._lock:
                    deaths = self.session.deaths(time.time(), timeout)
                    if deaths:
                        self._publish(deaths)
                        self._connection.flush()
                        log.info("sparkplug %s: DDEATH for %s (silent for more than %.0f s)", self.name,
                                 ", ".join(d.device or "" for d in deaths), timeout)

    def _caught_up(self) -> bool:
        if self._outbox is not None and self._outbox.last_measurement_id <= self._delivered_upto:
            return True
        return time.monotonic() - self._last_delivery >= IDLE_BEFORE_DEATHS

    # -- what the broker sends ------------------------------------------

    def _incoming(self, message: wire.Publish) -> None:
        if message.topic == self.session.ncmd_topic:
            if self.session.command(message.payload):
                self._rebirth_wanted = True
                if self._born and not self._lock.locked():
                    asyncio.get_running_loop().call_soon(self._rebirth_now)
        elif message.topic == self._state_topic:
            online = self.session.host_state(message.payload)
            if online is True:
                self._host_online.set()
            elif online is False:
                self._host_online.clear()
                if self._born:
                    self._born = False
                    asyncio.get_running_loop().create_task(self._host_went_offline())

    def _rebirth_now(self) -> None:
        if self._rebirth_wanted and self._born and not self._lock.locked() and self._connection is not None \
                and not self._connection.lost.done():
            self._rebirth()

    async def _host_went_offline(self) -> None:
        """§5.7: with its primary host offline an edge node ends its session --
        NDEATH, DISCONNECT -- and waits for the host before the next NBIRTH."""
        self._end_reason = HostOffline(
            f"the primary host {self.config.primary_host_id!r} went offline (its STATE); data waits in the "
            "outbox and is delivered as history once the host is back")
        async with self._lock:
            await self._die(f"primary host {self.config.primary_host_id} offline")

    async def _die(self, why: str) -> None:
        """Publish the NDEATH of this connection and DISCONNECT (§5.5: an
        intentional disconnect says so; the broker then drops the will)."""
        connection = self._connection
        if connection is None or connection.lost.done():
            return
        with suppress(Exception):
            acked = asyncio.get_running_loop().create_future()
            death = self.session.node_death(_now_ms())
            connection.publish(self._topic(death.topic), death.payload, self._properties, acked)
            connection.flush()
            await asyncio.wait({acked, connection.lost}, timeout=DEATH_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        log.info("sparkplug %s: NDEATH published (%s), disconnecting", self.name, why)
        await connection.close(True)

    def _acked(self, token) -> None:
        if type(token) is _Confirmation:
            self.stats.messages_confirmed += token.messages
            token.confirm()
        elif isinstance(token, asyncio.Future) and not token.done():
            token.set_result(None)

    def _check_overdue(self) -> None:
        assert self._connection is not None
        if self._connection.overdue(self._timeout):
            raise SinkError(f"no PUBACK within {self._timeout:.0f} s; reconnecting")

    @property
    def _timeout(self) -> float:
        return max(30.0, self.config.keepalive * 2.0)

    async def drain(self, timeout: float) -> None:
        connection = self._connection
        if connection is not None and connection.in_flight:
            with suppress(TimeoutError):
                await asyncio.wait_for(connection.drained(), timeout)

    async def close(self, clean: bool) -> None:
        connection = self._connection
        if self._ticker is not None:
            self._ticker.cancel()
            with suppress(BaseException):
                await self._ticker
            self._ticker = None
        self._born = False
        if connection is None:
            return
        if clean:
            async with self._lock:
                await self._die("gateway stopping")
        self._connection = None
        await connection.close(clean)  # not clean: no DISCONNECT, so the broker publishes the will

    async def _connect(self, will: Outgoing) -> Connection:
        cfg = self.config
        if cfg.mqtt_version == "5":
            versions = [wire.V5]
        elif cfg.mqtt_version == "3.1.1":
            versions = [wire.V311]
        elif self.protocol is not None:
            versions = [self.protocol]
        else:
            versions = [wire.V5, wire.V311]
        tls = tls_context(cfg.tls) if cfg.tls is not None else None
        for i, version in enumerate(versions):
            try:
                connection = await Connection.open(
                    cfg.host, cfg.port, version=version, client_id=cfg.client_id, keepalive=cfg.keepalive,
                    username=cfg.username, password=cfg.password,
                    will=wire.Will(will.topic, will.payload, qos=1, retain=False), tls=tls,
                    timeout=CONNECT_TIMEOUT, max_in_flight=cfg.max_in_flight, on_ack=self._acked,
                    on_message=self._incoming,
                )
            except (ConnectTimeout, ConnectRefused, SinkError) as exc:
                if i + 1 < len(versions) and not (isinstance(exc, ConnectRefused) and exc.login):
                    continue
                raise
            if cfg.mqtt_version == "auto":
                self.protocol = version
            self.description = (f"{cfg.url} as {cfg.group_id}/{cfg.edge_node_id} "
                                f"({'MQTT 5' if version == wire.V5 else 'MQTT 3.1.1'})")
            return connection
        raise AssertionError("unreachable")

    def explain(self, exc: BaseException) -> str:
        return explain(exc, self.config)


# -- bdSeq across restarts --------------------------------------------------
# The spec starts bdSeq at 0 and adds one per CONNECT; keeping the last one
# in a file means a restarted gateway never repeats the bdSeq of a will
# that may still be on its way to a host (which would then take the new
# session for dead).

def _load_bd_seq(path: str | None) -> int | None:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)["bdSeq"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("sparkplug: cannot read bdSeq from %s (%s); starting at 0", path, exc)
        return None
    return value if isinstance(value, int) and 0 <= value <= 255 else None


def _save_bd_seq(path: str | None, value: int) -> None:
    if path is None:
        return
    directory = os.path.dirname(path) or "."
    try:
        with tempfile.NamedTemporaryFile("w", dir=directory, delete=False, encoding="utf-8") as f:
            json.dump({"bdSeq": value}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(f.name, path)
    except OSError as exc:
        raise SinkError(f"cannot save the Sparkplug bdSeq to {path} ({exc.strerror}); check the directory "
                        "is writable by the gateway") from None
