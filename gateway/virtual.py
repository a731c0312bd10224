"""Frames for virtual nodes: readings from in-process producers (Modbus
pollers) become ordinary SenML-CBOR COSE_Mac0 frames, so they take exactly
the path node frames take (outbox, replay window, processing, routes) and a
restart re-decodes them like any stored frame.

They never cross a wire, so their MAC key is a random per-process key: it
keeps the frame format, not authenticity (the producer is the gateway
itself).  A reading with quality "bad" travels without its value (SenML's
string value carries the reason), as a node reports a fault.
"""

from __future__ import annotations

import math
import secrets

import cbor2

from smemet.protocol import cbor, cose, messages, resolve

_KEY = secrets.token_bytes(32)
_SENML_NAME_CHARS = resolve._NAME_CHARS  # noqa: SLF001 - the profile's name rule
_NAME_FIRST = set(_SENML_NAME_CHARS[:62])  # the profile's name rule
_NAME_CHARS = set(_SENML_NAME_CHARS)


def _record(reading) -> dict:
    name = reading.channel
    if not name or name[0] not in _NAME_FIRST or not _NAME_CHARS.issuperset(name):
        raise ValueError(f"channel name {name!r} is not a SenML name (letters, digits and - : . / _)")
    if not isinstance(reading.time, (int, float)) or not math.isfinite(reading.time) or reading.time < resolve.RELATIVE_LIMIT:
        raise ValueError(f"reading time {reading.time!r} of {name!r} is not a Unix time in seconds")
    record: dict = {resolve.N: name, resolve.T: float(reading.time)}
    if reading.unit:
        record[resolve.U] = reading.unit
    if reading.value is None or reading.quality == resolve.QUALITY_BAD:
        record[resolve.VS] = reading.reason or "no-value"
    else:
        record[resolve.V] = float(reading.value)
        if reading.quality == resolve.QUALITY_UNCERTAIN:
            record[resolve.Q] = reading.reason or "uncertain"
    return record


def frames(node: str, readings, next_seq) -> list[bytes]:
    """Frames holding ``readings``, split to fit the frame size limit;
    ``next_seq(node)`` gives each frame its sequence number."""
    kid = node.encode()
    budget = cose.MAX_FRAME - 64 - len(kid)  # headers, tag and the payload's own head
    packs: list[list[bytes]] = [[]]
    size = 0
    for reading in readings:
        encoded = cbor2.dumps(_record(reading))
        if packs[-1] and size + len(encoded) > budget:
            packs.append([])
            size = 0
        packs[-1].append(encoded)
        size += len(encoded)
    out = []
    for pack in packs:
        head = bytearray()
        cbor.write_head(head, 4, len(pack))  # the pack's array head
        out.append(cose.create(_KEY, kid, next_seq(node), messages.CT_SENML, bytes(head) + b"".join(pack)))
    return out
