"""The gateway's and tools' side of messages.py (SPEC.md §4, §6): opening a
node's frame, opening a frame in either direction, and encoding ACK and
config payloads.  Reachable as ``messages.open_from_node`` etc.; a module of
its own so a node, which never runs it, never loads it."""

from . import cbor, cbor_encode, cose
from .errors import error
from .messages import CT_ACK, CT_CONFIG, CT_SENML, CT_STATUS, Message, node_name, open_from_gateway

__all__ = ["NODE_TO_GATEWAY", "GATEWAY_TO_NODE", "ACK_SEQS", "ACK_TIME_MS", "ACK_STATUS", "ACK_OK",
           "CONFIG_VERSION", "CONFIG_SETTINGS", "MAX_ACK_SEQS", "encode_ack", "encode_config", "open_from_node",
           "open_any"]

NODE_TO_GATEWAY = (CT_SENML, CT_STATUS)
GATEWAY_TO_NODE = (CT_ACK, CT_CONFIG)

# ACK map keys and status (messages.py decodes with the same values)
ACK_SEQS = 1
ACK_TIME_MS = 2
ACK_STATUS = 3
ACK_OK = 0

# Config map keys
CONFIG_VERSION = 1
CONFIG_SETTINGS = 2

MAX_ACK_SEQS = 64


def encode_ack(seqs, time_ms, status=ACK_OK):
    if len(seqs) > MAX_ACK_SEQS:
        raise ValueError("an ACK names at most %d frames" % MAX_ACK_SEQS)
    return cbor_encode.encode({ACK_SEQS: list(seqs), ACK_TIME_MS: time_ms, ACK_STATUS: status})


def encode_config(version, settings):
    return cbor_encode.encode({CONFIG_VERSION: version, CONFIG_SETTINGS: settings})


def open_from_node(frame, key_for, now, window=None):
    """Verify and decode a node's frame as a gateway does (SPEC.md §6).

    ``key_for(kid)`` returns the node's key or None; ``now`` is the arrival
    time in Unix seconds; ``window`` (a ReplayWindow) is consulted but not
    updated.  Raises the ProtocolError a gateway counts.
    """
    from .resolve import resolve, time_doubt
    from .window import SEEN, TOO_OLD

    mac0 = cose.parse(frame)
    key = key_for(mac0.kid)
    if key is None:
        raise error("unknown-node", "node %r is not registered" % (node_name(mac0.kid),))
    mac0.verify(key)
    if mac0.content_type not in NODE_TO_GATEWAY:
        raise error("unknown-content-type", "content type %d is not a node message" % mac0.content_type)
    if window is not None:
        state = window.check(mac0.seq)
        if state == SEEN:
            raise error("replayed", "sequence number %d was already accepted" % mac0.seq)
        if state == TOO_OLD:
            raise error("replayed", "sequence number %d is below the replay window" % mac0.seq)
    age_ms = mac0.age_ms
    reference = now - (age_ms / 1000 if age_ms is not None else 0)
    records = resolve(cbor.decode(mac0.payload), reference, faults=mac0.content_type == CT_SENML,
                      doubt=time_doubt(age_ms, mac0.age_floor))
    return Message(frame, node_name(mac0.kid), mac0.seq, mac0.content_type, records)


def open_any(frame, key_for, now):
    """Verify and decode a frame in either direction (for tools)."""
    mac0 = cose.parse(frame)
    if mac0.content_type in GATEWAY_TO_NODE:
        key = key_for(mac0.kid)
        if key is None:
            raise error("unknown-node", "node %r is not registered" % (node_name(mac0.kid),))
        return open_from_gateway(frame, mac0.kid, key)
    return open_from_node(frame, key_for, now)
