"""The link fields of a route's messages: each payload (json, senml) gets
the agreement stamp and its place in the route's hash chain
(``ledger/chain.py``), written into the payload itself so that a capture of
payloads alone can be checked, and -- under MQTT 5 -- repeated as user
properties for readers that look at properties only.

    json:   {"node":...,"kind":"data","agreement":"IMT-7","agreement_version":2,"link_seq":17,"link_prev":"<hex>"}
    senml:  [{...},...,{"n":...,"quality":"good","agreement":"IMT-7","agreement_version":2,"link_seq":17,"link_prev":"<hex>"}]

(the fields go at the end of the json object, and of the last record of a
senml pack, where a plain reader ignores them).  The hot payload writers
(``writer.py``/``_writer.pyx``) stay untouched: the fields are appended to
their bytes here.
"""

from __future__ import annotations

from binascii import hexlify as _hex
from json.encoder import encode_basestring_ascii as _json_str

from ...ledger import Batch, RouteChain
from ...ledger.chain import linked as _linked  # compiled: the stamping and both SHA-256 in one call
from . import wire

_USER = bytes([wire.P_USER_PROPERTY])
_SEQ_PROPERTY = _USER + wire.text("link_seq")  # then the number as an MQTT string
_PREV_PROPERTY = _USER + wire.text("link_prev") + (64).to_bytes(2, "big")  # then the 64 hex digits
_STRING_LENGTH = [n.to_bytes(2, "big") for n in range(21)]  # of a decimal number up to 20 digits
_VARINT = [wire.varint(n) for n in range(1024)]  # property block lengths (a few hundred bytes), precomputed


class RouteLinks:
    """Stamps and links one route's messages, in publishing order."""

    def __init__(self, chain: RouteChain, fmt: str, agreement: tuple[str, int] | None,
                 properties: bytes | None) -> None:
        """``properties``: the MQTT 5 property body every data message
        carries (``wire.publish_property_body``), None under MQTT 3.1.1."""
        self.chain = chain
        self._cut = 1 if fmt == "json" else 2  # "}" or "}]"
        self._tail = b'"}' if fmt == "json" else b'"}]'
        stamp = b""
        user = b""
        if agreement is not None:
            agreement_id, version = agreement
            stamp = (',"agreement":' + _json_str(agreement_id) + f',"agreement_version":{version}').encode()
            user = wire.user_property("agreement", agreement_id) + wire.user_property("agreement_version", str(version))
        self._stamp = stamp + b',"link_seq":'
        self._properties = None
        if properties is not None:
            self._properties = properties + user + _SEQ_PROPERTY
            self._size = len(self._properties) + 2 + len(_PREV_PROPERTY) + 64  # + the number's digits

    def link(self, batch: Batch, payload: bytes) -> tuple[bytes, bytes | None]:
        """The payload with its link fields, and its MQTT 5 properties (None
        under 3.1.1); the link joins ``batch``.  Per message on the route's
        hot path: one compiled call (``ledger/_linkhash.pyx``: the payload
        written once, two SHA-256) and, under MQTT 5, one bytes format."""
        chain = self.chain
        seq, prev = chain.seq + 1, chain.prev
        stamped, link = _linked(payload, self._cut, self._stamp, seq, prev, self._tail)
        chain.append(batch, link)
        if self._properties is None:
            return stamped, None
        number = b"%d" % seq
        prev = _hex(prev)
        size = self._size + len(number)
        length = _VARINT[size] if size < 1024 else wire.varint(size)
        return stamped, b"%b%b%b%b%b%b" % (length, self._properties, _STRING_LENGTH[len(number)], number,
                                           _PREV_PROPERTY, prev)
