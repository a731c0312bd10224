"""Both opener backends (the compiled ``_opener`` and the pure ``reference``)
agree with the protocol's own entry point (``gateway_side.open_from_node``)
on every golden vector and on generated frames, valid and broken: the same
records with the same types, or the same reject reason and message.  Every
test runs once per backend (the ``opener_impl`` fixture)."""

import json
import math
import pathlib
import struct

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from smemet.gateway.spine import QUALITY_NAMES
from smemet.protocol import cbor, cbor_encode, cose, gateway_side, messages, resolve, senml
from smemet.protocol.errors import ProtocolError
from smemet.protocol.window import SEEN, TOO_OLD, ReplayWindow

VECTORS = sorted((pathlib.Path(messages.__file__).parent / "vectors").glob("*.json"))
KEY = bytes(range(32))
NOW = 1_796_000_030.0


def _record_tuple(name, unit, value, time, quality, reason):
    if isinstance(value, float) and math.isnan(value):
        value = "nan"
    return (name, unit, type(value).__name__, value, type(time).__name__, time, quality, reason)


def reference_outcome(frame, key_for, now, window=None):
    try:
        message = gateway_side.open_from_node(frame, key_for, now, window)
    except ProtocolError as exc:
        return ("reject", exc.reason, str(exc), type(exc).__name__)
    records = [_record_tuple(r.name, r.unit, r.value, r.time, r.quality, r.reason) for r in message.body]
    return ("ok", message.node, message.seq, message.content_type, records)


def _open(backend, frame, key_for, now, window=None):
    """The gateway's order: header, key + MAC + content type, replay window, payload."""
    header = backend.read_header(frame)
    backend.authenticate(header, key_for)
    if window is not None:
        state = window.check(header.seq)
        if state == SEEN:
            raise gateway_side.error("replayed", "sequence number %d was already accepted" % header.seq)
        if state == TOO_OLD:
            raise gateway_side.error("replayed", "sequence number %d is below the replay window" % header.seq)
    return backend.decode(frame, header, now)


def backend_outcome(backend, frame, key_for, now, window=None):
    try:
        opened = _open(backend, frame, key_for, now, window)
    except ProtocolError as exc:
        return ("reject", exc.reason, str(exc), type(exc).__name__)
    records = [
        _record_tuple(name, unit, value, time, QUALITY_NAMES[quality], reason)
        for name, unit, value, time, quality, reason in zip(
            opened.names, opened.units, opened.values, opened.times, opened.quality, opened.reasons, strict=True
        )
    ]
    return ("ok", opened.node, opened.seq, opened.content_type, records)


def _window(spec):
    if spec is None:
        return None
    window = ReplayWindow()
    for seq in sorted(spec["seen"]):
        window.accept(seq)
    assert window.highest == spec["highest"]
    return window


def test_vectors_present():
    assert len(VECTORS) >= 10, "protocol/vectors/*.json missing"


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
def test_vector(opener_impl, path):
    vector = json.loads(path.read_text())
    frame = bytes.fromhex(vector["frame_hex"])
    key = bytes.fromhex(vector["key_hex"]) if vector.get("key_hex") else None
    node_kid = vector.get("node", "").encode()

    def key_for(kid):
        return key if key is not None and (not node_kid or kid == node_kid) else None

    now = float(vector.get("received_at", NOW))
    window = _window(vector.get("window"))
    fast = backend_outcome(opener_impl, frame, key_for, now, window)
    assert fast == reference_outcome(frame, key_for, now, window)
    if vector.get("content_type") in gateway_side.GATEWAY_TO_NODE:
        return  # a gateway message: a node frame opener must refuse it, as the reference does
    if vector["valid"]:
        assert fast[0] == "ok"
        expected = [
            _record_tuple(r["name"], r["unit"], r["value"], r["time"], r.get("quality", "good"), r.get("reason"))
            for r in vector["records"]
        ]
        assert [row[:2] + row[3:4] + row[5:] for row in fast[4]] == [
            row[:2] + row[3:4] + row[5:] for row in expected
        ]
    else:
        assert fast[:2] == ("reject", vector["error"])


# ---------------------------------------------------------------- generated frames

_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=8).filter(
    lambda s: s[0].isalnum()
)
_units = st.sampled_from([None, "Cel", "K", "Pa", "A", "V", "%RH", "m/s2"])
_floats = st.floats(width=32, allow_nan=True, allow_infinity=True)


@st.composite
def built_frames(draw):
    """Frames as a node builds them (PackBuilder + cose.create)."""
    builder = senml.PackBuilder(64)
    count = draw(st.integers(1, 32))
    base = draw(st.integers(0, 2_000_000_000_000))
    channel = draw(st.lists(_names, min_size=1, max_size=4))
    for i in range(count):
        value = draw(st.one_of(_floats, st.none()))
        quality = draw(st.sampled_from([None, "open-circuit", "namur-low"])) if value is None else draw(
            st.sampled_from([None, None, "suspect"])
        )
        builder.add(channel[i % len(channel)], draw(_units), value, base + draw(st.integers(0, 600_000)), quality)
    synced = draw(st.booleans())
    payload = builder.encode(base + 600_000, synced)
    content_type = draw(st.sampled_from([messages.CT_SENML, messages.CT_STATUS]))
    # ages around the 30-day limit too, and the "lower bound" flag (SPEC §3.4)
    age = draw(st.one_of(st.none(), st.integers(0, 10_000_000), st.integers(2_592_000_000 - 2, 2_592_000_000 + 2)))
    age_floor = age is not None and draw(st.booleans())
    seq = draw(st.integers(0, cose.MAX_SEQ))
    try:
        return cose.create(KEY, draw(_names).encode(), seq, content_type, payload, age, age_floor=age_floor)
    except ValueError:  # over the frame size limit: a node would split the pack
        assume(False)


def _key_for(kid):
    return KEY


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(built_frames())
def test_built_frames_agree(opener_impl, frame):
    fast = backend_outcome(opener_impl, frame, _key_for, NOW)
    assert fast == reference_outcome(frame, _key_for, NOW)
    assert fast[0] == "ok"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(built_frames(), st.data())
def test_damaged_frames_agree(opener_impl, frame, data):
    """Byte flips, truncation and extension: same verdict either way."""
    damaged = bytearray(frame)
    action = data.draw(st.sampled_from(["flip", "truncate", "extend"]))
    if action == "flip":
        position = data.draw(st.integers(0, len(damaged) - 1))
        damaged[position] ^= data.draw(st.integers(1, 255))
    elif action == "truncate":
        del damaged[data.draw(st.integers(0, len(damaged) - 1)):]
    else:
        damaged += data.draw(st.binary(min_size=1, max_size=4))
    assert backend_outcome(opener_impl, bytes(damaged), _key_for, NOW) == reference_outcome(bytes(damaged), _key_for, NOW)


# SenML-ish maps with odd labels, types and values, correctly MAC'd, so the
# decoder's every branch is exercised behind a valid tag.
_labels = st.sampled_from(
    [resolve.BVER, resolve.BN, resolve.BT, resolve.BU, resolve.BV, resolve.BS, resolve.N, resolve.U, resolve.V, resolve.VS,
     resolve.VB, resolve.S, resolve.T, resolve.UT, resolve.VD, resolve.Q, 99, "x", "must_", -7]
)
_scalars = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet="abcT1_-.:/ ", max_size=6),
    st.binary(max_size=4),
    st.booleans(),
    st.none(),
    st.integers(0, 300_000_000),
)
_records = st.dictionaries(_labels, _scalars, min_size=0, max_size=6)


@st.composite
def odd_frames(draw):
    pack = draw(st.one_of(st.lists(_records, min_size=0, max_size=6), _scalars, _records))
    payload = draw(st.one_of(st.just(cbor_encode.encode(pack)), st.binary(max_size=40)))
    content_type = draw(st.sampled_from([messages.CT_SENML, messages.CT_STATUS, messages.CT_ACK, 5]))
    age = draw(st.one_of(st.none(), st.integers(0, 5000)))
    return cose.create(KEY, b"n1", draw(st.integers(0, 1000)), content_type, payload, age)


@st.composite
def near_valid_packs(draw):
    """A valid pack with one label of one record set to an odd value: each
    rule of the resolver meets its own counter-example."""
    pack = [{resolve.BN: "t", resolve.BT: 1_796_000_000, resolve.BU: "Cel", resolve.V: 1.5},
            {resolve.N: "u", resolve.T: 1, resolve.V: 2}]
    record = pack[draw(st.integers(0, 1))]
    label = draw(_labels)
    if draw(st.booleans()):
        record.pop(label, None)
    record[label] = draw(st.one_of(_scalars, st.sampled_from([float("inf"), float("-inf"), float("nan"), 2**64 - 1, -1])))
    return pack


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_valid_packs(), st.sampled_from([messages.CT_SENML, messages.CT_STATUS]))
def test_near_valid_packs_agree(opener_impl, pack, content_type):
    frame = cose.create(KEY, b"n1", 3, content_type, cbor_encode.encode(pack), 500)
    assert backend_outcome(opener_impl, frame, _key_for, NOW) == reference_outcome(frame, _key_for, NOW)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(odd_frames())
def test_odd_payloads_agree(opener_impl, frame):
    assert backend_outcome(opener_impl, frame, _key_for, NOW) == reference_outcome(frame, _key_for, NOW)


def _raw_frame(protected_items, unprotected_bytes, payload):
    """A frame assembled by hand, to reach header cases cose.create never makes."""
    protected = cbor_encode.encode(protected_items)
    tag = cose.compute_tag(KEY, protected, payload)
    out = bytearray(b"\xd1\x84")
    cbor.write_bytes(out, protected)
    out += unprotected_bytes
    cbor.write_bytes(out, payload)
    cbor.write_bytes(out, tag)
    return bytes(out)


_PAYLOAD = cbor_encode.encode([{resolve.BN: "t", resolve.BT: 1_796_000_000, resolve.V: 1.5}])


@pytest.mark.parametrize(
    "protected, unprotected",
    [
        ({1: 4, 3: 112, 4: b"n1", 6: b"\x01"}, b"\xa0"),
        ({1: 4, 3: 112, 4: b"n1", 6: b"\x01"}, b"\xa1\x3a\x00\x01\x00\x00\x19\x03\xe8"),  # age 1000
        ({1: 4, 3: 112, 4: b"n1", 6: b"\x01"}, b"\xa1\x3a\x00\x01\x00\x00\xf5"),  # age true
        ({1: 4, 3: 112, 4: b"n1", 6: b"\x01"}, b"\xa1\x3a\x00\x01\x00\x00\xc2\x41\x05"),  # age bignum tag
        ({1: 4, 3: 112, 4: b"n1", 6: b"\x01"}, b"\xa1\x04\x41\x00"),  # kid also unprotected
        ({1: 4, 3: 112, 4: b"n1", 6: b"\x00\x01"}, b"\xa0"),  # non-minimal Partial IV
        ({1: 4, 3: 112, 4: b"n1", 6: b"\x01", 2: [1]}, b"\xa0"),  # crit
        ({1: 4.0, 3: 112, 4: b"n1", 6: b"\x01"}, b"\xa0"),  # float alg
        ({1: 5, 3: 112, 4: b"n1", 6: b"\x01"}, b"\xa0"),
        ({1: 4, 3: 112, 4: b"", 6: b"\x01"}, b"\xa0"),
        ({1: 4, 3: 112, 4: b"n1", 6: b"\x01", 99: 0}, b"\xa0"),
        ({1: 4, 3: 112, 4: b"n1", 6: b"\x01"}, b"\xbf\xff"),  # indefinite map
    ],
)
def test_unusual_headers_agree(opener_impl, protected, unprotected):
    frame = _raw_frame(protected, unprotected, _PAYLOAD)
    assert backend_outcome(opener_impl, frame, _key_for, NOW) == reference_outcome(frame, _key_for, NOW)


_RELATIVE_PAYLOAD = cbor_encode.encode([{resolve.BN: "t", resolve.BT: -3, resolve.V: 1.5}, {resolve.VS: "open-circuit"}])
_HEADER = {1: 4, 3: 112, 4: b"n1", 6: b"\x01"}


@pytest.mark.parametrize(
    "unprotected, doubt",
    [
        (b"\xa2\x3a\x00\x01\x00\x00\x19\x03\xe8\x3a\x00\x01\x00\x01\xf5", "age-lower-bound"),  # age 1000, floor
        (b"\xa1\x3a\x00\x01\x00\x01\xf5", None),  # a floor without an age means nothing
        (b"\xa2\x3a\x00\x01\x00\x00\x19\x03\xe8\x3a\x00\x01\x00\x01\x01", None),  # 1 is not true
        (b"\xa2\x3a\x00\x01\x00\x00\x19\x03\xe8\x3a\x00\x01\x00\x01\xf4", None),  # false
        (b"\xa1\x3a\x00\x01\x00\x00\x1a\x9a\x7e\xc8\x01", "age-over-30-days"),  # 2,592,000,001 ms
        (b"\xa1\x3a\x00\x01\x00\x00\x1a\x9a\x7e\xc8\x00", None),  # exactly 30 days
    ],
)
def test_time_doubt_on_relative_records_agrees(opener_impl, unprotected, doubt):
    frame = _raw_frame(_HEADER, unprotected, _RELATIVE_PAYLOAD)
    outcome = backend_outcome(opener_impl, frame, _key_for, NOW)
    assert outcome == reference_outcome(frame, _key_for, NOW)
    records = outcome[4]
    assert records[0][6:] == (("uncertain", doubt) if doubt else ("good", None)), records
    assert records[1][6:] == ("bad", "open-circuit")  # a fault keeps its own reason


@pytest.mark.parametrize(
    "payload",
    [
        b"\x81\xa3\x21\x61t\x22\x1a\x6b\x0c\xc9\x00\x02\xc2\x41\x05",  # bignum value
        b"\xd9\xd9\xf7" + _PAYLOAD,  # self-described CBOR
        _PAYLOAD + b"\x00",  # trailing byte
        b"\x81\xa3\x21\x61t\x22\x1a\x6b\x0c\xc9\x00\x02\xf7",  # undefined
        b"\x81\xa3\x21\x61t\x22\x1a\x6b\x0c\xc9\x00\xf9\x40\x00\x02",  # float label 2.0
        b"\x81\xa3\x21\x61t\x22\x1a\x6b\x0c\xc9\x00\xf5\x02",  # label true (== 1, the unit)
        b"\x81\xa3\x21\x61t\x22\x1a\x6b\x0c\xc9\x00\x02\x02",  # key 2 twice
        b"\x81\xa3\x21\x62t\xff\x22\x1a\x6b\x0c\xc9\x00\x02\x02",  # invalid UTF-8 name
        b"\x9f\xa2\x21\x61t\x02\x01\xff",  # indefinite array
    ],
)
def test_unusual_payloads_agree(opener_impl, payload):
    frame = cose.create(KEY, b"n1", 1, messages.CT_SENML, payload)
    assert backend_outcome(opener_impl, frame, _key_for, NOW) == reference_outcome(frame, _key_for, NOW)


def test_half_precision_values_match_reference(opener_impl):
    payload = b"\x81\xa3\x21\x61t\x22\x1a\x6b\x0c\xc9\x00\x02" + b"\xf9" + struct.pack(">H", 0x0001)
    frame = cose.create(KEY, b"n1", 1, messages.CT_SENML, payload)
    fast = backend_outcome(opener_impl, frame, _key_for, NOW)
    assert fast == reference_outcome(frame, _key_for, NOW)
    assert fast[4][0][3] == 2.0**-24


# ---------------------------------------------------------------- CBOR, unknown keys, random bytes, ACKs

_cbor_items = st.recursive(
    st.one_of(st.integers(-(2**64), 2**64 - 1), st.floats(), st.text(max_size=5), st.binary(max_size=5),
              st.booleans(), st.none()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.integers(-30, 30), st.text(max_size=3)), inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_cbor_items.map(cbor_encode.encode), st.binary(max_size=64)), st.data())
def test_cbor_decoder_twin_agrees_with_cbor_decode(data, draw):
    """Any bytes, well formed or not: the compiled decoder gives the same
    value (or the same error message) as ``cbor.decode``."""
    cut = draw.draw(st.integers(0, len(data)))
    for sample in (data, data[:cut]):
        try:
            expected = ("ok", repr(cbor.decode(sample)))
        except ProtocolError as exc:
            expected = ("error", exc.reason, str(exc))
        from smemet.gateway.opener import load

        try:
            compiled = load("cython")
        except ImportError:
            pytest.skip("Cython modules not compiled")
        try:
            got = ("ok", repr(compiled.decode_cbor(sample)))
        except ProtocolError as exc:
            got = ("error", exc.reason, str(exc))
        assert got == expected


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80))
def test_random_bytes_agree(opener_impl, data):
    for sample in (data, b"\xd1\x84" + data):
        assert backend_outcome(opener_impl, sample, _key_for, NOW) == reference_outcome(sample, _key_for, NOW)


def test_unknown_node_and_wrong_key_agree(opener_impl):
    frame = cose.create(KEY, b"n1", 7, messages.CT_SENML, _PAYLOAD)
    assert backend_outcome(opener_impl, frame, lambda kid: None, NOW)[:2] == ("reject", "unknown-node")
    wrong = backend_outcome(opener_impl, frame, lambda kid: bytes(32), NOW)
    assert wrong == reference_outcome(frame, lambda kid: bytes(32), NOW) and wrong[1] == "bad-mac"
    try:
        opener_impl.authenticate(opener_impl.read_header(frame), lambda kid: bytes(32))
    except ProtocolError as exc:
        assert exc.node == "n1"  # counted against the node it claims to be
    else:
        raise AssertionError("a wrong key must not verify")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, cose.MAX_SEQ), max_size=64), st.integers(0, 2**40 - 1), st.integers(0, 2**63),
       st.sampled_from([gateway_side.ACK_OK, messages.ACK_FULL]), st.binary(min_size=1, max_size=32))
def test_sealed_acks_are_the_references_bytes(opener_impl, seqs, ack_seq, time_ms, status, kid):
    expected = cose.create(KEY, kid, ack_seq, messages.CT_ACK, gateway_side.encode_ack(seqs, time_ms, status))
    sealed = opener_impl.seal_ack(KEY, kid, ack_seq, seqs, time_ms, status)
    assert sealed == expected
    assert messages.open_from_gateway(sealed, kid, KEY).body == (seqs, time_ms, status)
