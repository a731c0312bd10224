"""Opening node frames fast: cbor2 (C) and hmac (C) instead of the protocol's
portable pure-Python codec.

The contract is ``smemet.protocol.gateway_side.open_from_node``; this module only
makes the common case quick.  It handles a frame itself when everything about
it is ordinary (minimal tag head, definite lengths, no CBOR tags inside, plain
scalar values, known SenML labels) and hands anything else to the reference,
so a frame the two would judge differently never takes the fast path: every
rejection's reason code comes from the reference.  ``test_fastpath.py`` checks
the two agree on the protocol's vectors and on generated frames.

The result is columnar (one list per field) because the gateway processes and
stores measurements in batches.
"""

from __future__ import annotations

import hmac
import io
from dataclasses import dataclass

import cbor2

from smemet.protocol import cbor, cose, gateway_side, messages
from smemet.protocol.errors import ProtocolError
from smemet.protocol.error_classes import BadMac, Replayed, UnknownContentType, UnknownNode
from smemet.protocol.window import SEEN, TOO_OLD

from smemet.protocol import resolve

_TAG17 = 0xD1  # CBOR tag 17 (COSE_Mac0) in its one-byte head
_MAC0_CONTEXT = b"\x84\x64MAC0"

# cbor2 gives some tags a meaning (bignums become ints, tag 55799 vanishes);
# the reference keeps every tag as a Tag, which no SenML field accepts.  Any
# tag in a decoded item therefore sends the frame to the reference.
def _refuse_tag(decoder):  # noqa: ARG001 - cbor2 callback signature
    raise _Defer


_NO_TAGS = {tag: _refuse_tag for tag in range(65536)}
_DECODE = dict(
    allow_indefinite=False,
    allow_duplicate_keys=False,
    max_depth=8,
    semantic_decoders=_NO_TAGS,
    tag_hook=lambda decoder, tag: _refuse_tag(decoder),
)

_SCALARS = (int, float, str, bytes, bool, type(None))
_KNOWN_LABELS = frozenset(resolve._KNOWN_LABELS)  # noqa: SLF001 - the profile's label set
_BASE_LABELS = frozenset((resolve.BVER, resolve.BN, resolve.BT, resolve.BU, resolve.BV))
_VALUE_LABELS = (resolve.V, resolve.VS, resolve.VB, resolve.VD, resolve.S)
_NAME_FIRST = frozenset(resolve._NAME_CHARS[:62])  # noqa: SLF001
_NAME_CHARS = frozenset(resolve._NAME_CHARS)  # noqa: SLF001
_RELATIVE_LIMIT = resolve.RELATIVE_LIMIT
_INF = float("inf")
_GOOD, _UNCERTAIN, _BAD = resolve.QUALITY_GOOD, resolve.QUALITY_UNCERTAIN, resolve.QUALITY_BAD
_BVER, _BN, _BT, _BU, _BV = resolve.BVER, resolve.BN, resolve.BT, resolve.BU, resolve.BV
_N, _U, _V, _VS, _VB, _VD, _S, _T, _Q = (
    resolve.N, resolve.U, resolve.V, resolve.VS, resolve.VB, resolve.VD, resolve.S, resolve.T, resolve.Q,
)


class _Defer(Exception):
    """Not an ordinary frame: let the reference decide."""


@dataclass(slots=True)
class Opened:
    """A verified, decoded node frame, records as columns."""

    frame: bytes
    kid: bytes
    node: str
    seq: int
    content_type: int
    reference: float  # Unix s that relative SenML times resolved against
    names: list
    units: list
    values: list
    times: list
    qualities: list
    reasons: list
    frame_id: int = 0  # set once the frame is committed (frames.id)
    received: float = 0.0  # arrival, Unix s (``decode``'s ``now``)

    def records(self) -> list[tuple]:
        """(name, unit, value, time, quality, reason) per record."""
        return list(zip(self.names, self.units, self.values, self.times, self.qualities, self.reasons))


@dataclass(slots=True)
class Header:
    """The authenticated-but-unchecked outer layer of a frame: enough to find
    the node's key and its replay window before decoding the payload."""

    kid: bytes
    seq: int
    content_type: int
    protected: bytes
    payload: bytes
    tag: bytes
    age_ms: int | None
    age_floor: bool = False  # the node says age_ms is only a lower bound (SPEC §3.4)

    @classmethod
    def of(cls, mac0: cose.Mac0) -> Header:
        """The header of a frame the reference parser (cose.parse) read."""
        return cls(mac0.kid, mac0.seq, mac0.content_type, mac0.protected, mac0.payload, mac0.tag, mac0.age_ms,
                   mac0.age_floor)


def _loads_exact(data: bytes):
    stream = io.BytesIO(data)
    item = cbor2.CBORDecoder(stream, **_DECODE).decode()
    if stream.tell() != len(data):
        raise _Defer
    return item


def _header(frame: bytes) -> Header:
    if len(frame) > cose.MAX_FRAME or not frame or frame[0] != _TAG17:
        raise _Defer
    parts = _loads_exact(frame[1:])
    if type(parts) is not list or len(parts) != 4:
        raise _Defer
    protected, unprotected, payload, tag = parts
    if (
        type(protected) is not bytes
        or type(unprotected) is not dict
        or type(payload) is not bytes
        or type(tag) is not bytes
        or len(tag) != cose.MAC_LEN
        or not protected
    ):
        raise _Defer
    header = _loads_exact(protected)
    if type(header) is not dict or len(header) != 4:
        raise _Defer
    for label in unprotected:
        if type(label) is not int or label in header:
            raise _Defer
    for value in unprotected.values():
        if type(value) not in _SCALARS:
            raise _Defer
    if header.get(cose.H_ALG) != cose.ALG_HMAC_256_64 or type(header.get(cose.H_ALG)) is not int:
        raise _Defer
    kid = header.get(cose.H_KID)
    piv = header.get(cose.H_PARTIAL_IV)
    content_type = header.get(cose.H_CONTENT_TYPE)
    if type(kid) is not bytes or not 1 <= len(kid) <= cose.MAX_KID:
        raise _Defer
    if type(piv) is not bytes or not 1 <= len(piv) <= 5 or (len(piv) > 1 and piv[0] == 0):
        raise _Defer
    if type(content_type) is not int or content_type < 0:
        raise _Defer
    age = unprotected.get(cose.H_AGE_MS)
    age_ms = age if isinstance(age, int) and age >= 0 else None  # as cose.Mac0.age_ms and .age_floor
    age_floor = age_ms is not None and unprotected.get(cose.H_AGE_FLOOR) is True
    return Header(kid, int.from_bytes(piv, "big"), content_type, protected, payload, tag, age_ms, age_floor)


def _mac_ok(key: bytes, header: Header) -> bool:
    structure = bytearray(_MAC0_CONTEXT)
    cbor.write_bytes(structure, header.protected)
    structure.append(0x40)
    cbor.write_bytes(structure, header.payload)
    return hmac.compare_digest(hmac.digest(key, structure, "sha256")[: cose.MAC_LEN], header.tag)


def _finite(x) -> bool:
    return x == x and x != _INF and x != -_INF


def _is_number(x) -> bool:
    kind = type(x)
    return kind is int or kind is float


def _resolve(pack, reference: float, faults: bool, out: Opened, doubt: str | None = None) -> None:
    """resolve.resolve, columnar; raises _Defer wherever the reference would
    raise (or where following it exactly would cost more than it is worth).
    ``doubt``: as resolve's (good records with a relative time become
    uncertain for that reason).

    Hot loop: ``x - x`` is 0 for a finite number and NaN (truthy) for NaN or
    an infinity, a cheap finiteness test once the type is known."""
    if type(pack) is not list or not pack:
        raise _Defer
    add_name, add_unit, add_value = out.names.append, out.units.append, out.values.append
    add_time, add_quality, add_reason = out.times.append, out.qualities.append, out.reasons.append
    known = _KNOWN_LABELS
    base_labels = _BASE_LABELS
    good_names = set()
    bn = ""
    bt = 0
    bu = None
    bv = 0
    for entry in pack:
        if type(entry) is not dict:
            raise _Defer
        keys = entry.keys()
        if not keys <= known:
            raise _Defer
        if not keys.isdisjoint(base_labels):
            if _BVER in entry:
                version = entry[_BVER]
                if type(version) is not int or version > resolve.SENML_VERSION:
                    raise _Defer
            if _BN in entry:
                bn = entry[_BN]
                if type(bn) is not str:
                    raise _Defer
            if _BT in entry:
                bt = entry[_BT]
                if not _is_number(bt) or not _finite(bt):
                    raise _Defer
            if _BU in entry:
                bu = entry[_BU]
                if type(bu) is not str:
                    raise _Defer
            if _BV in entry:
                bv = entry[_BV]
                if not _is_number(bv):
                    raise _Defer
        name = entry.get(_N, "")
        if type(name) is not str:
            raise _Defer
        name = bn + name
        if name not in good_names:
            if not name or name[0] not in _NAME_FIRST or not _NAME_CHARS.issuperset(name):
                raise _Defer
            good_names.add(name)
        unit = entry.get(_U, bu)
        if unit is not None and type(unit) is not str:
            raise _Defer
        t = entry.get(_T, 0)
        kind = type(t)
        if kind is not int and (kind is not float or t - t):
            raise _Defer
        time = bt + t
        relative = time < _RELATIVE_LIMIT
        if relative:
            time = reference + time
        quality = _GOOD
        reason = None
        if _V in entry:
            if _VS in entry or _VB in entry or _VD in entry or _S in entry:
                raise _Defer
            value = entry[_V]
            kind = type(value)
            if kind is not int and kind is not float:
                raise _Defer
            value = bv + value
            if value - value:  # NaN or infinite
                value, quality, reason = None, _BAD, "non-finite"
            elif _Q in entry:
                reason = entry[_Q]
                if type(reason) is not str:
                    raise _Defer
                quality = _UNCERTAIN
        else:
            value, unit, quality, reason = _other_value(entry, unit, bv, faults)
        if relative and doubt and quality == _GOOD:
            quality, reason = _UNCERTAIN, doubt
        add_name(name)
        add_unit(unit)
        add_value(value)
        add_time(time)
        add_quality(quality)
        add_reason(reason)


def _other_value(entry, unit, bv, faults):
    """(value, unit, quality, reason) of a record without ``v``."""
    present = [label for label in _VALUE_LABELS if label in entry]
    if len(present) != 1:
        raise _Defer
    label = present[0]
    value = entry[label]
    quality = _GOOD
    reason = None
    if label == _S:
        if not _is_number(value):
            raise _Defer
        value = bv + value
        if not _finite(value):
            value, quality, reason = None, _BAD, "non-finite"
        elif _Q in entry:
            reason = entry[_Q]
            if type(reason) is not str:
                raise _Defer
            quality = _UNCERTAIN
    elif label == _VS:
        if type(value) is not str:
            raise _Defer
        if faults:
            value, quality, reason = None, _BAD, value
            unit = None
    elif label == _VB:
        if type(value) is not bool:
            raise _Defer
    elif type(value) is not bytes:
        raise _Defer
    return value, unit, quality, reason


def read_header(frame: bytes) -> Header | None:
    """The outer layer of an ordinary frame, or None when only the reference
    can judge it."""
    try:
        return _header(frame)
    except (_Defer, cbor2.CBORError, ValueError, TypeError, RecursionError):
        return None


def verify(frame: bytes, key_for) -> Header:
    """Parse and authenticate a node frame: what ``open_from_node`` checks
    before the replay window.  Raises the ProtocolError the reference raises
    (malformed, oversize, unsupported-algorithm, unknown-node, bad-mac,
    unknown-content-type)."""
    header = read_header(frame)
    if header is None:  # unusual bytes: the reference parser decides
        header = Header.of(cose.parse(frame))
    key = key_for(header.kid)
    if key is None:
        raise UnknownNode("node %r is not registered" % (messages.node_name(header.kid),))
    if not _mac_ok(key, header):
        raise _of_node(BadMac("MAC does not verify with this node's key"), header.kid)
    if header.content_type not in gateway_side.NODE_TO_GATEWAY:
        raise _of_node(UnknownContentType("content type %d is not a node message" % header.content_type), header.kid)
    return header


def _of_node(exc: ProtocolError, kid: bytes) -> ProtocolError:
    """Name the registered node a rejected frame claims to be from (for its
    per-node reject count; the claim is only as good as the kid)."""
    exc.node = messages.node_name(kid)
    return exc


def decode(frame: bytes, header: Header, now: float) -> Opened:
    """Decode the verified frame's SenML pack, resolving relative times
    against ``now`` (arrival, Unix s) minus the frame's age.  Raises the
    reference's malformed / invalid-senml / must-understand errors."""
    reference = now - (header.age_ms / 1000 if header.age_ms is not None else 0)
    faults = header.content_type == messages.CT_SENML
    doubt = resolve.time_doubt(header.age_ms, header.age_floor)
    out = Opened(
        frame, header.kid, messages.node_name(header.kid), header.seq, header.content_type, reference,
        [], [], [], [], [], [], 0, now,
    )
    try:
        _resolve(_loads_exact(header.payload), reference, faults, out, doubt)
    except (_Defer, cbor2.CBORError, ValueError, TypeError, RecursionError, OverflowError):
        out.names, out.units, out.values, out.times, out.qualities, out.reasons = [], [], [], [], [], []
        for record in resolve.resolve(cbor.decode(header.payload), reference, faults, doubt):
            out.names.append(record.name)
            out.units.append(record.unit)
            out.values.append(record.value)
            out.times.append(record.time)
            out.qualities.append(record.quality)
            out.reasons.append(record.reason)
    return out


def open_frame(frame: bytes, key_for, now: float, window=None) -> Opened:
    """``gateway_side.open_from_node``, faster: same checks in the same order,
    same exceptions, records as columns."""
    header = verify(frame, key_for)
    if window is not None:
        state = window.check(header.seq)
        if state == SEEN:
            raise Replayed("sequence number %d was already accepted" % header.seq)
        if state == TOO_OLD:
            raise Replayed("sequence number %d is below the replay window" % header.seq)
    return decode(frame, header, now)


__all__ = ["Header", "Opened", "ProtocolError", "decode", "open_frame", "read_header", "verify"]
