"""The four messages of SPEC.md §4 and the checks both ends apply to a frame.

Node → gateway: data (SenML-CBOR, content type 112) and status (SenML-CBOR,
65001).  Gateway → node: ACK (65002) and config (65003).  All are COSE_Mac0
frames under the node's key.

This module holds what a node runs (``open_from_gateway``, ``decode_ack``,
``decode_config``); the gateway's and tools' side (``open_from_node``,
``open_any``, ``encode_ack``, ``encode_config``) is in gateway_side.py, which
imports this one (never the other way), so a node's heap never holds it.
"""

from . import cbor, cose
from .errors import error

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):
        return value


CT_SENML = const(112)  # application/senml+cbor (RFC 8428)
CT_STATUS = const(65001)  # node health, a SenML-CBOR pack
CT_ACK = const(65002)
CT_CONFIG = const(65003)

ACK_FULL = const(1)  # ACK status: gateway storage full, nothing in this ACK was stored; back off

# The ACK and config map keys, private here (a node's heap stores neither
# names nor values); public (ACK_SEQS, ACK_OK, CONFIG_VERSION, MAX_ACK_SEQS,
# NODE_TO_GATEWAY, ...) in gateway_side.py.
_ACK_SEQS = const(1)
_ACK_TIME_MS = const(2)
_ACK_STATUS = const(3)
_ACK_OK = const(0)
_CONFIG_VERSION = const(1)
_CONFIG_SETTINGS = const(2)
_MAX_ACK_SEQS = const(64)


def node_name(kid):
    """The printable node id for a kid (node ids are ASCII text)."""
    try:
        return str(kid, "utf-8")
    except UnicodeError:
        return kid.hex()


def _invalid(message):
    return error("invalid-message", message)


def decode_ack(payload):
    """(seqs, gateway time in Unix ms, status) of an ACK payload."""
    body = cbor.decode(payload)
    if not isinstance(body, dict):
        raise _invalid("ACK payload must be a map")
    seqs = body.get(_ACK_SEQS)
    time_ms = body.get(_ACK_TIME_MS)
    status = body.get(_ACK_STATUS, _ACK_OK)
    if not isinstance(seqs, list) or len(seqs) > _MAX_ACK_SEQS:
        raise _invalid("ACK must list at most %d sequence numbers" % _MAX_ACK_SEQS)
    for seq in seqs:
        if not isinstance(seq, int) or seq < 0:
            raise _invalid("ACK sequence numbers must be unsigned integers")
    if not isinstance(time_ms, int) or time_ms < 0:
        raise _invalid("ACK gateway time must be unsigned integer milliseconds")
    if not isinstance(status, int):
        raise _invalid("ACK status must be an integer")
    return seqs, time_ms, status


def decode_config(payload):
    """(version, settings) of a config payload."""
    body = cbor.decode(payload)
    if not isinstance(body, dict):
        raise _invalid("config payload must be a map")
    version = body.get(_CONFIG_VERSION)
    settings = body.get(_CONFIG_SETTINGS)
    if not isinstance(version, int) or version < 0:
        raise _invalid("config version must be an unsigned integer")
    if not isinstance(settings, dict):
        raise _invalid("config settings must be a map")
    for key in settings:
        if not isinstance(key, str):
            raise _invalid("config setting names must be text")
    return version, settings


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


def open_from_gateway(frame, kid, key):
    """Verify and decode an ACK or config frame as a node does."""
    mac0 = cose.parse(frame)
    if mac0.kid != kid:
        raise error("unknown-node", "frame is for node %r, not this node" % (node_name(mac0.kid),))
    mac0.verify(key)
    if mac0.content_type == CT_ACK:
        body = decode_ack(mac0.payload)
    elif mac0.content_type == CT_CONFIG:
        body = decode_config(mac0.payload)
    else:
        raise error("unknown-content-type", "content type %d is not a gateway message" % mac0.content_type)
    return Message(frame, node_name(mac0.kid), mac0.seq, mac0.content_type, body)
