"""The four messages of SPEC.md §4 and the checks both ends apply to a frame.

Node → gateway: data (SenML-CBOR, content type 112) and status (SenML-CBOR,
65001).  Gateway → node: ACK (65002) and config (65003).  All are COSE_Mac0
frames under the node's key.
"""

from . import cbor, cose
from .errors import InvalidMessage, Replayed, UnknownContentType, UnknownNode

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):
        return value


CT_SENML = const(112)  # application/senml+cbor (RFC 8428)
CT_STATUS = const(65001)  # node health, a SenML-CBOR pack
CT_ACK = const(65002)
CT_CONFIG = const(65003)

NODE_TO_GATEWAY = (CT_SENML, CT_STATUS)
GATEWAY_TO_NODE = (CT_ACK, CT_CONFIG)

# ACK map keys
ACK_SEQS = const(1)
ACK_TIME_MS = const(2)
ACK_STATUS = const(3)
ACK_OK = const(0)
ACK_FULL = const(1)  # gateway storage full: nothing in this ACK was stored; back off

# Config map keys
CONFIG_VERSION = const(1)
CONFIG_SETTINGS = const(2)

MAX_ACK_SEQS = const(64)


def node_name(kid):
    """The printable node id for a kid (node ids are ASCII text)."""
    try:
        return str(kid, "utf-8")
    except UnicodeError:
        return kid.hex()


# ------------------------------------------------------------ ACK / config


def encode_ack(seqs, time_ms, status=ACK_OK):
    if len(seqs) > MAX_ACK_SEQS:
        raise ValueError("an ACK names at most %d frames" % MAX_ACK_SEQS)
    return cbor.encode({ACK_SEQS: list(seqs), ACK_TIME_MS: time_ms, ACK_STATUS: status})


def decode_ack(payload):
    """(seqs, gateway time in Unix ms, status) of an ACK payload."""
    body = cbor.decode(payload)
    if not isinstance(body, dict):
        raise InvalidMessage("ACK payload must be a map")
    seqs = body.get(ACK_SEQS)
    time_ms = body.get(ACK_TIME_MS)
    status = body.get(ACK_STATUS, ACK_OK)
    if not isinstance(seqs, list) or len(seqs) > MAX_ACK_SEQS:
        raise InvalidMessage("ACK must list at most %d sequence numbers" % MAX_ACK_SEQS)
    for seq in seqs:
        if not isinstance(seq, int) or seq < 0:
            raise InvalidMessage("ACK sequence numbers must be unsigned integers")
    if not isinstance(time_ms, int) or time_ms < 0:
        raise InvalidMessage("ACK gateway time must be unsigned integer milliseconds")
    if not isinstance(status, int):
        raise InvalidMessage("ACK status must be an integer")
    return seqs, time_ms, status


def encode_config(version, settings):
    return cbor.encode({CONFIG_VERSION: version, CONFIG_SETTINGS: settings})


def decode_config(payload):
    """(version, settings) of a config payload."""
    body = cbor.decode(payload)
    if not isinstance(body, dict):
        raise InvalidMessage("config payload must be a map")
    version = body.get(CONFIG_VERSION)
    settings = body.get(CONFIG_SETTINGS)
    if not isinstance(version, int) or version < 0:
        raise InvalidMessage("config version must be an unsigned integer")
    if not isinstance(settings, dict):
        raise InvalidMessage("config settings must be a map")
    for key in settings:
        if not isinstance(key, str):
            raise InvalidMessage("config setting names must be text")
    return version, settings


# ------------------------------------------------------------ opening frames


class Message:
    """A verified frame.  ``body`` is the decoded payload: resolved records
    for data and status, (seqs, time_ms, status) for an ACK, (version,
    settings) for config."""

    def __init__(self, frame, node, seq, content_type, body):
        self.frame = frame
        self.node = node
        self.seq = seq
        self.content_type = content_type
        self.body = body


def open_from_node(frame, key_for, now, window=None):
    """Verify and decode a node's frame as a gateway does (SPEC.md §6).

    ``key_for(kid)`` returns the node's key or None; ``now`` is the arrival
    time in Unix seconds; ``window`` (a ReplayWindow) is consulted but not
    updated.  Raises the ProtocolError a gateway counts.
    """
    # Imported here: a node never opens its own kind of frame, and its heap
    # is too small to hold code it does not run.
    from .resolve import resolve
    from .window import SEEN, TOO_OLD

    mac0 = cose.parse(frame)
    key = key_for(mac0.kid)
    if key is None:
        raise UnknownNode("node %r is not registered" % (node_name(mac0.kid),))
    mac0.verify(key)
    if mac0.content_type not in NODE_TO_GATEWAY:
        raise UnknownContentType("content type %d is not a node message" % mac0.content_type)
    if window is not None:
        state = window.check(mac0.seq)
        if state == SEEN:
            raise Replayed("sequence number %d was already accepted" % mac0.seq)
        if state == TOO_OLD:
            raise Replayed("sequence number %d is below the replay window" % mac0.seq)
    age_ms = mac0.age_ms
    reference = now - (age_ms / 1000 if age_ms is not None else 0)
    records = resolve(cbor.decode(mac0.payload), reference, faults=mac0.content_type == CT_SENML)
    return Message(frame, node_name(mac0.kid), mac0.seq, mac0.content_type, records)


def open_from_gateway(frame, kid, key):
    """Verify and decode an ACK or config frame as a node does."""
    mac0 = cose.parse(frame)
    if mac0.kid != kid:
        raise UnknownNode("frame is for node %r, not this node" % (node_name(mac0.kid),))
    mac0.verify(key)
    if mac0.content_type == CT_ACK:
        body = decode_ack(mac0.payload)
    elif mac0.content_type == CT_CONFIG:
        body = decode_config(mac0.payload)
    else:
        raise UnknownContentType("content type %d is not a gateway message" % mac0.content_type)
    return Message(frame, node_name(mac0.kid), mac0.seq, mac0.content_type, body)


def open_any(frame, key_for, now):
    """Verify and decode a frame in either direction (for tools)."""
    mac0 = cose.parse(frame)
    if mac0.content_type in GATEWAY_TO_NODE:
        key = key_for(mac0.kid)
        if key is None:
            raise UnknownNode("node %r is not registered" % (node_name(mac0.kid),))
        return open_from_gateway(frame, mac0.kid, key)
    return open_from_node(frame, key_for, now)

