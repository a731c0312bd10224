"""MQTT 3.1.1 and 5.0 packets for a publishing client, sans-IO: bytes out
for CONNECT, PUBLISH (QoS 0 and 1), SUBSCRIBE, PUBACK (of a message the
broker sent), PINGREQ and DISCONNECT; ``Decoder`` turns the bytes a broker
sends into ``Connack``, ``Puback``, ``Suback``, ``Publish``, ``Pingresp``
and ``Disconnect`` values.  No sockets, no clocks (h11's discipline);
``client.py`` does the I/O.

Only what the gateway's outputs need: publishing, and subscribing to the few
topics a Sparkplug edge node listens on (NCMD, a primary host's STATE); no
QoS 2, no enhanced authentication.  References: MQTT 3.1.1 (OASIS, 2014)
§2-§3 and MQTT 5.0 (OASIS, 2019) §2-§3.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

V311 = 4  # protocol level in CONNECT
V5 = 5

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK = 8, 9
PINGREQ, PINGRESP, DISCONNECT, AUTH = 12, 13, 14, 15

# MQTT 5 property identifiers used here (§2.2.2.2)
P_PAYLOAD_FORMAT = 0x01
P_MESSAGE_EXPIRY = 0x02
P_CONTENT_TYPE = 0x03
P_SERVER_KEEP_ALIVE = 0x13
P_REASON_STRING = 0x1F
P_RECEIVE_MAXIMUM = 0x21
P_USER_PROPERTY = 0x26
P_MAXIMUM_PACKET_SIZE = 0x27

# property id -> its data type, for skipping the ones we do not use
_BYTE, _TWO, _FOUR, _VARINT, _TEXT, _BINARY, _PAIR = range(7)
_PROPERTY_TYPES = {
    0x01: _BYTE, 0x02: _FOUR, 0x03: _TEXT, 0x08: _TEXT, 0x09: _BINARY, 0x0B: _VARINT, 0x11: _FOUR, 0x12: _TEXT,
    0x13: _TWO, 0x15: _TEXT, 0x16: _BINARY, 0x17: _BYTE, 0x18: _FOUR, 0x19: _BYTE, 0x1A: _TEXT, 0x1C: _TEXT,
    0x1F: _TEXT, 0x21: _TWO, 0x22: _TWO, 0x23: _TWO, 0x24: _BYTE, 0x25: _BYTE, 0x26: _PAIR, 0x27: _FOUR,
    0x28: _BYTE, 0x29: _BYTE, 0x2A: _BYTE,
}

# CONNACK return codes of 3.1.1 (§3.2.2.3) and the reason codes of 5.0 (§3.2.2.2) worth naming
CONNACK_311 = {
    1: "unacceptable protocol version", 2: "identifier rejected", 3: "server unavailable",
    4: "bad user name or password", 5: "not authorized",
}
REASONS_5 = {
    0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error", 0x83: "implementation specific error",
    0x84: "unsupported protocol version", 0x85: "client identifier not valid", 0x86: "bad user name or password",
    0x87: "not authorized", 0x88: "server unavailable", 0x89: "server busy", 0x8A: "banned",
    0x8B: "server shutting down", 0x8C: "bad authentication method", 0x8D: "keep alive timeout",
    0x8E: "session taken over", 0x90: "topic name invalid", 0x91: "packet identifier in use",
    0x93: "receive maximum exceeded", 0x94: "topic alias invalid", 0x95: "packet too large",
    0x97: "quota exceeded", 0x99: "payload format invalid", 0x9A: "retain not supported",
    0x9B: "QoS not supported", 0x9C: "use another server", 0x9D: "server moved", 0x9F: "connection rate exceeded",
}
LOGIN_REFUSED = frozenset({(V311, 4), (V311, 5), (V5, 0x86), (V5, 0x87), (V5, 0x8C)})


class WireError(Exception):
    """The broker sent bytes that are not a valid MQTT packet."""


def reason_text(version: int, code: int) -> str:
    if version == V311:
        return CONNACK_311.get(code, f"return code {code}")
    return REASONS_5.get(code, f"reason code 0x{code:02X}")


# ---------------------------------------------------------------- encoding

def varint(n: int) -> bytes:
    """The Variable Byte Integer (§1.5.5 / §1.5.5)."""
    if not 0 <= n <= 268_435_455:
        raise ValueError("MQTT remaining length out of range")
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def text(value: str) -> bytes:
    data = value.encode("utf-8")
    if len(data) > 65535:
        raise ValueError("an MQTT string holds at most 65535 bytes")
    return struct.pack(">H", len(data)) + data


def binary(value: bytes) -> bytes:
    if len(value) > 65535:
        raise ValueError("MQTT binary data holds at most 65535 bytes")
    return struct.pack(">H", len(value)) + value


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([(kind << 4) | flags]) + varint(len(body)) + body


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


def connect(client_id: str, keepalive: int, version: int, *, username: str | None = None,
            password: str | None = None, will: Will | None = None, clean: bool = True) -> bytes:
    """CONNECT (§3.1).  MQTT 5: clean start, no session expiry (a new session
    every time: the durable cursor, not the broker, remembers what was sent)."""
    flags = 0x02 if clean else 0
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if password is not None:
        flags |= 0x40
    if username is not None:
        flags |= 0x80
    body = bytearray(text("MQTT"))
    body.append(version)
    body.append(flags)
    body += struct.pack(">H", keepalive)
    if version == V5:
        body += varint(0)  # no CONNECT properties
    body += text(client_id)
    if will is not None:
        if version == V5:
            body += varint(0)  # no will properties
        body += text(will.topic)
        body += binary(will.payload)
    if username is not None:
        body += text(username)
    if password is not None:
        body += binary(password.encode("utf-8"))
    return _packet(CONNECT, 0, bytes(body))


def publish_properties(content_type: str | None = None, payload_format: int | None = None,
                       message_expiry: int | None = None, user: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A PUBLISH property block (§3.3.2.3), length included."""
    return property_block(publish_property_body(content_type, payload_format, message_expiry, user))


def publish_property_body(content_type: str | None = None, payload_format: int | None = None,
                          message_expiry: int | None = None, user: tuple[tuple[str, str], ...] = ()) -> bytes:
    """The properties of ``publish_properties`` without their length: a
    sink adds per-message ones (``user_property``) and then ``property_block``."""
    props = bytearray()
    if payload_format is not None:
        props += bytes([P_PAYLOAD_FORMAT, payload_format])
    if message_expiry:
        props += bytes([P_MESSAGE_EXPIRY]) + struct.pack(">I", message_expiry)
    if content_type is not None:
        props += bytes([P_CONTENT_TYPE]) + text(content_type)
    for key, value in user:
        props += user_property(key, value)
    return bytes(props)


def user_property(key: str, value: str) -> bytes:
    """One User Property (§3.3.2.3.7): a UTF-8 string pair."""
    return bytes([P_USER_PROPERTY]) + text(key) + text(value)


def property_block(body: bytes) -> bytes:
    """Encoded properties with their length in front."""
    return varint(len(body)) + body


def publish(topic: bytes, payload: bytes, packet_id: int, qos: int = 1, retain: bool = False, dup: bool = False,
            properties: bytes | None = None) -> bytes:
    """PUBLISH (§3.3).  ``topic``: the topic already as an MQTT string
    (``text(topic)``, so a sink encodes each topic once); ``properties``:
    MQTT 5's block (``publish_properties``), None for 3.1.1."""
    flags = (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    head = topic + (struct.pack(">H", packet_id) if qos else b"")
    if properties is not None:
        head += properties
    length = len(head) + len(payload)
    return bytes([(PUBLISH << 4) | flags]) + varint(length) + head + payload


def publish_into(out: bytearray, topic: bytes, payload: bytes, packet_id: int, retain: bool = False,
                 properties: bytes | None = None) -> None:
    """Append a QoS 1 PUBLISH to ``out``: the bytes ``publish`` makes,
    without the intermediate objects (one per message is the hot path)."""
    length = len(topic) + 2 + len(payload) + (len(properties) if properties is not None else 0)
    out.append(0x33 if retain else 0x32)  # PUBLISH, QoS 1
    while length > 0x7F:  # Variable Byte Integer (§1.5.5)
        out.append((length & 0x7F) | 0x80)
        length >>= 7
    out.append(length)
    out += topic
    out.append(packet_id >> 8)
    out.append(packet_id & 0xFF)
    if properties is not None:
        out += properties
    out += payload


PINGREQ_BYTES = bytes([PINGREQ << 4, 0])


def subscribe(packet_id: int, topics: tuple[tuple[str, int], ...], version: int) -> bytes:
    """SUBSCRIBE (§3.8): (topic filter, maximum QoS) pairs.  MQTT 5: no
    properties, and the subscription options are the QoS alone (no local,
    retain-as-published and retain handling at their defaults)."""
    body = bytearray(struct.pack(">H", packet_id))
    if version == V5:
        body += varint(0)
    for topic, qos in topics:
        body += text(topic)
        body.append(qos)
    return _packet(SUBSCRIBE, 0x02, bytes(body))


def puback(packet_id: int) -> bytes:
    """PUBACK of a QoS 1 message the broker sent us (§3.4); reason "success"
    is the short form in MQTT 5 too."""
    return bytes([PUBACK << 4, 2]) + struct.pack(">H", packet_id)


def disconnect(version: int) -> bytes:
    """DISCONNECT, normal: the broker discards the will (§3.14)."""
    if version == V5:
        return bytes([DISCONNECT << 4, 1, 0x00])
    return bytes([DISCONNECT << 4, 0])


# ---------------------------------------------------------------- decoding

@dataclass(frozen=True, slots=True)
class Connack:
    code: int  # 0: accepted
    session_present: bool = False
    receive_maximum: int = 65535
    server_keep_alive: int | None = None
    reason: str | None = None  # MQTT 5 reason string


@dataclass(frozen=True, slots=True)
class Puback:
    packet_id: int
    code: int = 0  # MQTT 5: >= 0x80 is a refusal
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Suback:
    packet_id: int
    codes: tuple[int, ...]  # granted QoS per filter, >= 0x80: refused


@dataclass(frozen=True, slots=True)
class Publish:
    """A message the broker delivers on one of our subscriptions."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    packet_id: int | None = None  # QoS 1: to be PUBACKed


@dataclass(frozen=True, slots=True)
class Pingresp:
    pass


@dataclass(frozen=True, slots=True)
class Disconnect:
    code: int = 0
    reason: str | None = None


@dataclass(slots=True)
class Decoder:
    """Feed bytes, get packets; keeps a partial packet between feeds."""

    version: int
    _buffer: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list:
        """Every complete packet, in order."""
        return self._parse(data, None)

    def feed_split(self, data: bytes) -> tuple[list[int], list]:
        """(packet ids of plain successful PUBACKs, every other packet): the
        stream a publisher reads is almost all PUBACKs, and an object per
        PUBACK showed in profiles.  Order is kept within each list, not
        between them."""
        acked: list[int] = []
        return acked, self._parse(data, acked)

    def _parse(self, data: bytes, acked: list[int] | None) -> list:
        buffer = self._buffer
        buffer += data
        packets = []
        at = 0
        end = len(buffer)
        while at < end:
            if acked is not None and buffer[at] == 0x40 and end - at >= 4 and buffer[at + 1] == 2:
                # PUBACK, success, short form: just its packet id
                acked.append((buffer[at + 2] << 8) | buffer[at + 3])
                at += 4
                continue
            # fixed header: type/flags, then a 1-4 byte remaining length
            if end - at < 2:
                break
            length = 0
            shift = 0
            i = at + 1
            while True:
                if i >= end:
                    length = -1
                    break
                byte = buffer[i]
                length |= (byte & 0x7F) << shift
                i += 1
                if not byte & 0x80:
                    break
                shift += 7
                if shift > 21:
                    raise WireError("remaining length longer than 4 bytes")
            if length < 0 or end - i < length:
                break
            kind = buffer[at] >> 4
            flags = buffer[at] & 0x0F
            body = bytes(buffer[i:i + length])
            at = i + length
            packets.append(self._publish(flags, body) if kind == PUBLISH else self._packet(kind, body))
        del buffer[:at]
        return packets

    def _packet(self, kind: int, body: bytes):
        if kind == PUBACK:
            if len(body) < 2:
                raise WireError("PUBACK shorter than its packet identifier")
            packet_id = (body[0] << 8) | body[1]
            if len(body) == 2:
                return Puback(packet_id)
            code = body[2]
            reason = _properties(body, 3).get(P_REASON_STRING) if len(body) > 3 else None
            return Puback(packet_id, code, reason)
        if kind == CONNACK:
            if len(body) < 2:
                raise WireError("CONNACK shorter than 2 bytes")
            props = _properties(body, 2) if self.version == V5 and len(body) > 2 else {}
            return Connack(body[1], bool(body[0] & 1), props.get(P_RECEIVE_MAXIMUM, 65535),
                           props.get(P_SERVER_KEEP_ALIVE), props.get(P_REASON_STRING))
        if kind == SUBACK:
            if len(body) < 3:
                raise WireError("SUBACK shorter than its packet identifier and one code")
            at = 2
            if self.version == V5:
                length, at = _read_varint(body, 2)
                at += length
            return Suback((body[0] << 8) | body[1], tuple(body[at:]))
        if kind == PINGRESP:
            return Pingresp()
        if kind == DISCONNECT:
            if not body:
                return Disconnect()
            props = _properties(body, 1) if len(body) > 1 else {}
            return Disconnect(body[0], props.get(P_REASON_STRING))
        if kind == AUTH:
            raise WireError("the broker asked for enhanced authentication, which this gateway does not do")
        raise WireError(f"unexpected packet type {kind} from the broker")

    def _publish(self, flags: int, body: bytes) -> Publish:
        qos = (flags >> 1) & 0x03
        if qos > 1:
            raise WireError(f"PUBLISH with QoS {qos}; this client subscribes with QoS 1 at most")
        if len(body) < 2:
            raise WireError("PUBLISH shorter than its topic length")
        n = (body[0] << 8) | body[1]
        at = 2 + n
        if at > len(body):
            raise WireError("PUBLISH topic runs past the packet")
        topic = body[2:at].decode("utf-8", "replace")
        packet_id = None
        if qos:
            if at + 2 > len(body):
                raise WireError("PUBLISH shorter than its packet identifier")
            packet_id = (body[at] << 8) | body[at + 1]
            at += 2
        if self.version == V5:
            length, at = _read_varint(body, at)
            at += length  # properties: none we use (no topic aliases: we never grant a maximum)
        return Publish(topic, body[at:], qos, bool(flags & 0x01), packet_id)


def _properties(body: bytes, at: int) -> dict:
    """The MQTT 5 property block at ``at``: id -> value (the last one wins;
    user properties are skipped)."""
    length, at = _read_varint(body, at)
    end = at + length
    if end > len(body):
        raise WireError("property block runs past the packet")
    found = {}
    while at < end:
        pid = body[at]
        at += 1
        kind = _PROPERTY_TYPES.get(pid)
        if kind is None:
            raise WireError(f"unknown MQTT 5 property 0x{pid:02X}")
        if kind == _BYTE:
            value, at = body[at], at + 1
        elif kind == _TWO:
            value, at = (body[at] << 8) | body[at + 1], at + 2
        elif kind == _FOUR:
            value, at = int.from_bytes(body[at:at + 4], "big"), at + 4
        elif kind == _VARINT:
            value, at = _read_varint(body, at)
        elif kind in (_TEXT, _BINARY):
            n = (body[at] << 8) | body[at + 1]
            raw = body[at + 2:at + 2 + n]
            value, at = (raw.decode("utf-8", "replace") if kind == _TEXT else raw), at + 2 + n
        else:  # a string pair
            for _ in range(2):
                n = (body[at] << 8) | body[at + 1]
                at += 2 + n
            continue
        found[pid] = value
    if at != end:
        raise WireError("property block does not end where its length says")
    return found


def _read_varint(body: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(body):
            raise WireError("truncated variable byte integer")
        byte = body[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
        if shift > 21:
            raise WireError("variable byte integer longer than 4 bytes")
