"""COSE_Mac0 frames: pycose, an independent implementation, must agree."""

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pycose.algorithms import HMAC25664
from pycose.headers import KID, Algorithm, ContentType, PartialIV
from pycose.keys import SymmetricKey
from pycose.messages import Mac0Message

from smemet.protocol import cose, gateway_side, messages, senml
from smemet.protocol.error_classes import BadMac, MalformedFrame, Oversize

node_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=32).map(str.encode)
keys = st.sampled_from([16, 24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n))
seqs = st.integers(min_value=0, max_value=cose.MAX_SEQ)


def pycose_verify(frame, key):
    item = cbor2.loads(frame)
    protected, unprotected, payload, tag = item.value
    message = Mac0Message.from_cose_obj([protected, dict(unprotected), payload, tag], True)
    message.key = SymmetricKey(k=key)
    return message


@given(keys, node_ids, seqs, st.binary(max_size=200))
def test_every_frame_we_build_verifies_with_pycose(key, kid, seq, payload):
    frame = cose.create(key, kid, seq, messages.CT_SENML, payload)
    message = pycose_verify(frame, key)
    assert message.verify_tag()
    assert message.phdr[Algorithm] is HMAC25664 or message.phdr[Algorithm] == HMAC25664
    assert message.phdr[KID] == kid
    assert int.from_bytes(message.phdr[PartialIV], "big") == seq
    assert message.payload == payload


@given(keys, node_ids, seqs, st.binary(max_size=200))
def test_we_verify_frames_pycose_builds(key, kid, seq, payload):
    message = Mac0Message(
        phdr={Algorithm: HMAC25664, KID: kid, PartialIV: cose.partial_iv(seq), ContentType: 112},
        uhdr={},
        payload=payload,
    )
    message.key = SymmetricKey(k=key)
    frame = message.encode(tag=True)
    parsed = cose.parse(frame)
    parsed.verify(key)
    assert (parsed.kid, parsed.seq, parsed.payload) == (kid, seq, payload)
    with pytest.raises(BadMac):
        parsed.verify(bytes(b ^ 1 for b in key))


@given(keys, st.binary(min_size=1, max_size=100), st.integers(min_value=0))
def test_any_flipped_bit_is_rejected(key, payload, where):
    frame = bytearray(cose.create(key, b"node", 7, messages.CT_SENML, payload))
    index = where % len(frame)
    frame[index] ^= 1 << (where % 8)
    with pytest.raises((BadMac, MalformedFrame, Oversize, Exception)) as caught:
        cose.parse(bytes(frame)).verify(key)
    assert caught.type.__module__.startswith("smemet.protocol")


def test_partial_iv_is_minimal():
    assert cose.partial_iv(0) == b"\x00"
    assert cose.partial_iv(255) == b"\xff"
    assert cose.partial_iv(256) == b"\x01\x00"
    with pytest.raises(ValueError):
        cose.partial_iv(cose.MAX_SEQ + 1)


def test_non_minimal_partial_iv_is_malformed():
    protected = cbor2.dumps({1: 4, 3: 112, 4: b"n", 6: b"\x00\x05"}, canonical=True)
    tag = cose.compute_tag(b"k" * 32, protected, b"")
    frame = cbor2.dumps(cbor2.CBORTag(17, [protected, {}, b"", tag]))
    with pytest.raises(MalformedFrame):
        cose.parse(frame)


def test_frames_built_by_node_resolve_as_senml():
    builder = senml.PackBuilder()
    builder.add("t", "Cel", 1500.0, 1796000000000)
    frame = cose.create(b"k" * 32, b"n1", 3, messages.CT_SENML, builder.encode(1796000000000, True))
    message = gateway_side.open_from_node(frame, lambda kid: b"k" * 32, 1796000001.0)
    assert [r.as_dict() for r in message.body] == [{"name": "t", "unit": "Cel", "value": 1500.0, "time": 1796000000}]
