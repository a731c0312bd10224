"""The opener's pure-Python twin: the protocol's reference codec itself
(``cose.parse``, ``Mac0.verify``, ``cbor.decode``, ``resolve.resolve``,
``cose.create``), its results turned into columns.  ``_opener.pyx`` must
agree with this module on every input (test_opener.py)."""

from __future__ import annotations

from smemet.protocol import cbor, cose, gateway_side, messages, resolve
from smemet.protocol.errors import error

from ..quality import QUALITY_NAMES
from ..spine import OpenedFrame
from .header import Header

IMPLEMENTATION = "pure"

_QUALITY_CODE = {name: code for code, name in enumerate(QUALITY_NAMES)}


def read_header(frame: bytes) -> Header:
    """``cose.parse``: size and structure; raises oversize, malformed,
    unsupported-algorithm."""
    mac0 = cose.parse(frame)
    return Header(mac0.kid, mac0.seq, mac0.content_type, mac0.protected, mac0.payload, mac0.tag, mac0.age_ms,
                  mac0.age_floor)


def authenticate(header: Header, key_for) -> None:
    """The node's key, the MAC over the bytes received, the content type:
    raises unknown-node, bad-mac or unknown-content-type.  A bad-mac or
    unknown-content-type error names the (registered) node it claims to be
    from in ``exc.node``."""
    key = key_for(header.kid)
    if key is None:
        raise error("unknown-node", "node %r is not registered" % (messages.node_name(header.kid),))
    if not cose.digest_equal(cose.compute_tag(key, header.protected, header.payload), header.tag):
        raise _of_node(error("bad-mac", "MAC does not verify with this node's key"), header.kid)
    if header.content_type not in gateway_side.NODE_TO_GATEWAY:
        raise _of_node(
            error("unknown-content-type", "content type %d is not a node message" % header.content_type), header.kid
        )


def _of_node(exc, kid: bytes):
    exc.node = messages.node_name(kid)
    return exc


def decode(frame: bytes, header: Header, received: float) -> OpenedFrame:
    """The frame's SenML pack, resolved against the arrival time ``received``
    (Unix s) minus the frame's age; raises malformed, invalid-senml,
    must-understand."""
    age_ms = header.age_ms
    reference = received - (age_ms / 1000 if age_ms is not None else 0)
    records = resolve.resolve(
        cbor.decode(header.payload), reference, faults=header.content_type == messages.CT_SENML,
        doubt=resolve.time_doubt(age_ms, header.age_floor),
    )
    return OpenedFrame(
        frame, header.kid, messages.node_name(header.kid), header.seq, header.content_type, received, reference,
        [r.name for r in records], [r.unit for r in records], [r.value for r in records], [r.time for r in records],
        bytearray(_QUALITY_CODE[r.quality] for r in records), [r.reason for r in records],
    )


def seal_ack(key: bytes, kid: bytes, ack_seq: int, seqs, time_ms: int, status: int) -> bytes:
    """The ACK frame (SPEC.md §4.3) naming ``seqs``, MAC'd with the node's key."""
    return cose.create(key, kid, ack_seq, messages.CT_ACK, gateway_side.encode_ack(seqs, time_ms, status))
