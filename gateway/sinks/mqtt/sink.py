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
delivering, and whether the route's agreement is in force.

Every data message is a link of the route's hash chain (``links.py``,
``ledger/chain.py``), stamped with the agreement's id and version.  At each
connect the route publishes the gateway's public key (retained,
``<prefix>/gateway-key``) and a signed checkpoint of the acknowledged chain
head (retained, ``<prefix>/checkpoint``), then one at least every
``[ledger] checkpoint_interval`` and a last one at a clean stop; each
delivery the broker acknowledged is recorded in the ledger.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from contextlib import suppress

from ...agreements import Terms
from ...delivery import Selection, Sink, SinkError, wait_any
from ...ledger import Checkpoint, Delivered, Head, Ledger, RouteChain
from ...ledger.checkpoint import CONTENT_TYPE as CHECKPOINT_CONTENT_TYPE
from ...ledger.signing import cose_key
from ...ledger.store import ROW_BYTES
from ...spine import ProcessedFrame
from . import wire
from .client import BrokerRefused, ConnectRefused, Connection, ConnectTimeout
from .config import RouteConfig, tls_context
from .links import RouteLinks
from .payload import CONTENT_TYPES, PayloadWriter, messages_of, senml_topic

log = logging.getLogger("smemet.gateway.sinks.mqtt")

CONNECT_TIMEOUT = 10.0  # seconds to wait for CONNACK (a 3.1.1-only broker may never answer a v5 CONNECT)
STATUS_TIMEOUT = 5.0
RECORD_INTERVAL = 0.05  # seconds between ledger writes at most (a delivery's confirmation waits for its write)
_TOPICS_CACHED = 100_000  # encoded topics kept (names come from nodes: bounded)


class _Countdown:
    """A delivery's messages: ``confirm`` once every one is acknowledged."""

    __slots__ = ("left", "confirm")

    def __init__(self, left: int, confirm: Callable[[], None]) -> None:
        self.left = left
        self.confirm = confirm


class _Control:
    """The PUBACK token of a route's own messages (status, key, checkpoint)."""

    __slots__ = ()


_CONTROL = _Control()


class MqttSink(Sink):
    kind = "route"

    def __init__(self, config: RouteConfig, ledger: Ledger, status=None) -> None:
        super().__init__()
        self.config = config
        self._gateway_status = status  # GatewayStatus: its steps_for tells processed channels from untouched ones
        self.name = config.name
        self.description = config.url
        self.selection = Selection(config.include, config.exclude, config.kinds)
        agreement = config.agreement
        if agreement is not None:
            self.terms = Terms(agreement, config.name, ledger.store)
        self.ledger = ledger
        self._stamp = (agreement.id, agreement.version) if agreement is not None else None
        self._chain = RouteChain(Head())
        self._links: RouteLinks | None = None
        self._raw = agreement is None or agreement.resolution.raw
        self._skip_upto = 0  # measurements up to this id were delivered before a restart (raw routes)
        self._due_checkpoint: bytes | None = None  # signed, recorded, waiting for room in the window
        self._checkpointed = Head()  # the newest head stored with a checkpoint
        self._checkpoints: asyncio.Task | None = None
        self._to_record: list = []  # acknowledged batches, in order, not yet in the ledger
        self._recording: asyncio.Future | None = None  # a ledger write in a worker thread
        self._record_timer: asyncio.TimerHandle | None = None
        self._last_record = 0.0  # monotonic s of the last ledger write
        self._last_checkpoint = 0.0
        self._agreement_state: tuple[bool, str] | None = None
        self.protocol: int | None = None  # learnt in "auto" mode: wire.V5 or wire.V311
        self.version = wire.V311  # of the current session
        self._connection: Connection | None = None
        self._properties: bytes | None = None
        self._status_properties: bytes | None = None
        self._timeout = max(30.0, config.keepalive * 2.0)
        self._writer = PayloadWriter(self._untouched)  # unprocessed binary32 readings printed at binary32
        self._topics: dict[str, bytes] = {}
        self._node_topics: dict[str, bytes] = {}  # senml: node -> its encoded topic

    # -- the gateway's lifetime -------------------------------------------

    async def start(self) -> None:
        """Put the agreement version in force (refusing changed terms under
        an old version) and find the chain's head in the ledger."""
        cfg, store = self.config, self.ledger.store
        await self.ledger.start()
        agreement = cfg.agreement
        if agreement is not None:
            before, new = store.record_agreement(cfg.name, agreement.id, agreement.version, agreement.digest(),
                                                 agreement.terms())
            if new and before is not None:
                log.warning("route %s: agreement %s version %d in force from now (was %s version %d); every delivery "
                            "is stamped with it", cfg.name, agreement.id, agreement.version, before.agreement,
                            before.version)
            elif new:
                log.info("route %s: agreement %s version %d in force from now", cfg.name, agreement.id,
                         agreement.version)
        else:
            log.info("route %s has no agreement: it delivers its include/exclude selection, unversioned", cfg.name)
        head, upto = store.head(cfg.name)
        self._chain = RouteChain(head)
        self._checkpointed = head
        if self._raw:
            self._skip_upto = upto

    async def stop(self) -> None:
        await self._settle_recording()  # a write in a worker thread finishes before the tables close
        await self.ledger.stop()

    def _untouched(self, node: str, channel: str) -> bool:
        """Whether the channel passes unprocessed (no chain in gateway.toml)."""
        steps_for = getattr(self._gateway_status, "steps_for", None)
        return steps_for is not None and steps_for(node, channel) is None

    # -- the session ------------------------------------------------------

    async def open(self) -> None:
        connection = self._connection = await self._connect()
        await self._settle_recording()
        if self._record_timer is not None:
            self._record_timer.cancel()
            self._record_timer = None
        self._to_record.clear()  # acknowledged but never recorded: sent again, with the same links
        self._chain.rewind()
        self._properties = self._publish_properties()
        body = None
        if self.version == wire.V5:
            self._status_properties = wire.publish_properties(content_type="application/json", payload_format=1)
            cfg = self.config
            body = wire.publish_property_body(content_type=CONTENT_TYPES[cfg.format], payload_format=1,
                                              message_expiry=cfg.message_expiry or None)
        self._links = RouteLinks(self._chain, self.config.format, self._stamp, body)
        sent = []
        for topic, payload, properties in (
                (self.config.key_topic, cose_key(self.ledger.key.public), self._binary_properties("application/cose-key")),
                (self.config.checkpoint_topic, await self._signed_checkpoint(),
                 self._binary_properties(CHECKPOINT_CONTENT_TYPE)),
                (self.config.status_topic, self._status("online"), self._status_properties)):
            done = asyncio.get_running_loop().create_future()
            connection.publish(self._topic(topic), payload, properties, done, retain=True)
            sent.append(done)
        connection.flush()
        self._last_checkpoint = time.monotonic()
        pending = set(sent) | {connection.lost}
        deadline = time.monotonic() + self._timeout
        while not all(f.done() for f in sent) and not connection.lost.done() and time.monotonic() < deadline:
            await asyncio.wait(pending, timeout=deadline - time.monotonic(), return_when=asyncio.FIRST_COMPLETED)
        if connection.lost.done():
            raise connection.lost.exception()
        if not all(f.done() for f in sent):
            raise SinkError(f"no PUBACK for the status message within {self._timeout:.0f} s")
        self._checkpoints = asyncio.create_task(self._checkpoint_now_and_then(connection),
                                                name=f"route {self.name} checkpoints")

    async def broken(self) -> None:
        assert self._connection is not None
        await asyncio.shield(self._connection.lost)  # raises its reason

    async def deliver(self, frames: Sequence[ProcessedFrame], confirm: Callable[[], None]) -> None:
        connection, links = self._connection, self._links
        assert connection is not None and links is not None
        if frames and frames[0].last_id <= self._skip_upto:  # delivered before a restart: the ledger has it
            frames = [frame for frame in frames if frame.last_id > self._skip_upto]
        messages = self._senml_messages(frames) if self.config.format == "senml" else self._json_messages(frames)
        if not messages:
            confirm()
            return
        # the ledger's "covered up to": measurement ids of raw frames (an aggregate's ids are its own)
        batch = self._chain.begin(frames[-1].last_id if self._raw else 0, confirm)
        countdown = _Countdown(len(messages), lambda: self._acknowledged(batch))
        publish, link = connection.publish, links.link
        for topic, payload in messages:
            while connection.full or self._due_checkpoint is not None:
                if not connection.full:  # a checkpoint goes first when one is due
                    self._publish_checkpoint(connection)
                    continue
                connection.flush()
                self._check_overdue()
                await wait_any(connection.room(), asyncio.shield(connection.lost), timeout=1.0)
                if connection.lost.done():
                    raise connection.lost.exception()
            linked, properties = link(batch, payload)
            publish(topic, linked, properties, countdown)
        connection.flush()
        self.stats.messages_sent += len(messages)
        self._check_overdue()
        if not connection._writable.is_set():  # noqa: SLF001 - the socket buffer is full: wait before more
            await wait_any(connection.room(), asyncio.shield(connection.lost), timeout=self._timeout)

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

    def _acknowledged(self, batch) -> None:
        """Every message of ``batch`` has its PUBACK: the deliveries now
        acknowledged in order are recorded in the ledger, and only then does
        the loop hear of them (its cursor never passes what the ledger lacks)."""
        self._to_record += self._chain.acked(batch, time.time())
        self._record_soon()

    def _record_soon(self) -> None:
        """A ledger write now, or once RECORD_INTERVAL has passed since the last:
        one transaction per many deliveries (a write per delivery cost more
        than the links themselves), what is acknowledged meanwhile goes along."""
        if self._recording is not None or self._record_timer is not None or not self._to_record:
            return
        wait = self._last_record + RECORD_INTERVAL - time.monotonic()
        if wait > 0:
            self._record_timer = asyncio.get_running_loop().call_later(wait, self._record_timed)
        else:
            self._start_recording()

    def _record_timed(self) -> None:
        self._record_timer = None
        if self._recording is None and self._to_record:
            self._start_recording()

    def _start_recording(self) -> None:
        """Write what waits to the ledger in a worker thread (SQLite waits
        there for the writer thread's commits, not on the event loop)."""
        if self._record_timer is not None:
            self._record_timer.cancel()
            self._record_timer = None
        self._last_record = time.monotonic()
        batches, self._to_record = self._to_record, []
        agreement, version = self._stamp if self._stamp is not None else (None, None)
        rows = [Delivered(self.name, b.first_seq, b"".join(b.hashes), agreement, version, b.acked_at, b.upto)
                for b in batches]
        recording = self._recording = asyncio.ensure_future(asyncio.to_thread(self.ledger.store.record, rows))
        # a callback, not code after an await: it runs even when a waiting task is cancelled
        recording.add_done_callback(lambda done: self._after_recording(batches, done))

    def _after_recording(self, batches: list, done: asyncio.Future) -> None:
        if self._recording is done:
            self._recording = None
        if done.cancelled() or done.exception() is not None:
            self._to_record[:0] = batches  # tried again with the next acknowledgement or checkpoint, in order
            if not done.cancelled():
                log.error("route %s: deliveries not recorded in the ledger (%s); retrying", self.name,
                          done.exception())
            return
        for batch in batches:
            self._chain.recorded(batch)
            if batch.upto > self._skip_upto:
                self._skip_upto = batch.upto  # after a reconnect, what the ledger has is not sent again
            batch.confirm()
        self.ledger.grew(sum(32 * b.count + ROW_BYTES for b in batches))
        self._record_soon()

    async def _record(self) -> None:
        """Until everything acknowledged so far is in the ledger (or a write failed)."""
        await self._settle_recording()
        if self._to_record:
            self._start_recording()
            await self._settle_recording()

    async def _settle_recording(self) -> None:
        """Let the ledger writes in progress finish (their deliveries count)."""
        while self._recording is not None:
            recording = self._recording
            with suppress(Exception):
                await asyncio.shield(recording)
            await asyncio.sleep(0)  # its done callback runs first
            if self._recording is recording:
                self._recording = None

    # -- checkpoints --------------------------------------------------------

    async def _signed_checkpoint(self) -> bytes:
        """A checkpoint of the acknowledged and recorded head, signed, and
        stored durably (with every delivery before it) before anyone can see it."""
        head = self._chain.confirmed
        agreement, version = self._stamp if self._stamp is not None else (None, None)
        statement = Checkpoint(self.name, self.config.gateway_id, head.seq, head.hash, round(time.time(), 3),
                               agreement, version)
        message = self.ledger.sign(statement)
        if head != self._checkpointed:
            await asyncio.to_thread(self.ledger.store.record_checkpoint, self.name, head.seq, head.hash,
                                    statement.time, message)
            self._checkpointed = head
        self.stats.extra.update(chain_seq=head.seq, checkpoint_time=statement.time)
        if self.terms is not None:
            self.stats.extra.update(self.terms.stats.as_dict())
        return message

    def _publish_checkpoint(self, connection: Connection) -> None:
        message, self._due_checkpoint = self._due_checkpoint, None
        connection.publish(self._topic(self.config.checkpoint_topic), message,
                           self._binary_properties(CHECKPOINT_CONTENT_TYPE), _CONTROL, retain=True)
        connection.flush()

    async def _checkpoint_now_and_then(self, connection: Connection) -> None:
        """A checkpoint at least every ``checkpoint_interval`` (it goes out at
        once when the window has room, else before the next data message),
        and the status again when the agreement comes into or out of force."""
        interval = self.ledger.config.checkpoint_interval
        while not connection.lost.done():
            await asyncio.sleep(max(0.05, self._last_checkpoint + interval - time.monotonic()))
            if connection.lost.done() or self._connection is not connection:
                return
            self._last_checkpoint = time.monotonic()
            try:
                await self._record()
                message = await self._signed_checkpoint()
            except Exception:  # noqa: BLE001 - the next tick tries again; deliveries go on
                log.exception("route %s: checkpoint not signed or recorded", self.name)
                continue
            if connection.lost.done():
                return
            self._due_checkpoint = message
            if not connection.full:
                self._publish_checkpoint(connection)
            self._publish_agreement_state(connection)

    def _publish_agreement_state(self, connection: Connection) -> None:
        """The status again when the agreement came into or went out of force."""
        if self.terms is None or self.terms.state(time.time()) == self._agreement_state:
            return
        if not connection.full:
            connection.publish(self._topic(self.config.status_topic), self._status("online"), self._status_properties,
                               _CONTROL, retain=True)
            connection.flush()

    def _log_agreement_state(self, state: tuple[bool, str]) -> None:
        agreement = self.config.agreement
        assert agreement is not None
        in_force, why = state
        if in_force:
            log.info("route %s: agreement %s version %d %s", self.name, agreement.id, agreement.version, why)
        else:
            log.warning("route %s: agreement %s version %d is %s: nothing is delivered", self.name, agreement.id,
                        agreement.version, why)

    def _binary_properties(self, content_type: str) -> bytes | None:
        return wire.publish_properties(content_type=content_type) if self.version == wire.V5 else None

    def _status(self, state: str, reason: str | None = None) -> bytes:
        """The status message; with an agreement, whether it is in force and
        why not (logged when that changes)."""
        agreement = None
        if self.terms is not None:
            current = self.terms.state(time.time())
            if current != self._agreement_state:
                self._log_agreement_state(current)
                self._agreement_state = current
            in_force, why = current
            agreement = {"id": self.config.agreement.id, "version": self.config.agreement.version,
                         "in_force": in_force, "state": why}
        return _status(state, self.config, reason, agreement)

    def _check_overdue(self) -> None:
        assert self._connection is not None
        if self._connection.overdue(self._timeout):
            raise SinkError(f"no PUBACK within {self._timeout:.0f} s; reconnecting")

    async def drain(self, timeout: float) -> None:
        connection = self._connection
        if connection is not None and connection.in_flight:
            with suppress(TimeoutError):
                await asyncio.wait_for(connection.drained(), timeout)
        with suppress(Exception):  # what was acknowledged: recorded and confirmed before the session ends
            await asyncio.wait_for(self._record(), timeout)

    async def close(self, clean: bool) -> None:
        connection = self._connection
        if connection is None:
            return
        self._connection = None
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            with suppress(BaseException):
                await self._checkpoints
            self._checkpoints = None
        self._due_checkpoint = None
        if clean and not connection.lost.done():
            # a last checkpoint covers what the broker acknowledged; the will
            # is not sent on a clean disconnect, so say "offline" ourselves
            with suppress(Exception):
                loop = asyncio.get_running_loop()
                checkpoint, status = loop.create_future(), loop.create_future()
                connection.publish(self._topic(self.config.checkpoint_topic), await self._signed_checkpoint(),
                                   self._binary_properties(CHECKPOINT_CONTENT_TYPE), checkpoint, retain=True)
                connection.publish(self._topic(self.config.status_topic), self._status("offline", "stopped"),
                                   self._status_properties, status, retain=True)
                connection.flush()
                deadline = time.monotonic() + STATUS_TIMEOUT
                while not (checkpoint.done() and status.done()) and not connection.lost.done() \
                        and time.monotonic() < deadline:
                    await asyncio.wait({checkpoint, status, connection.lost}, timeout=deadline - time.monotonic(),
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


def _status(state: str, cfg: RouteConfig, reason: str | None = None, agreement: dict | None = None) -> bytes:
    doc = {"state": state, "gateway": cfg.gateway_id, "route": cfg.name, "time": round(time.time(), 3)}
    if reason:
        doc["reason"] = reason
    if agreement is not None:
        doc["agreement"] = agreement
    return json.dumps(doc, separators=(",", ":")).encode()


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
