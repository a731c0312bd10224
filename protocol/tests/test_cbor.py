"""Our deterministic CBOR against cbor2's canonical encoder, and strict decoding."""

import math

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from smemet.protocol import cbor, cbor_encode
from smemet.protocol.error_classes import MalformedFrame

scalars = (
    st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.floats(width=16, allow_nan=False)
    | st.floats(width=32, allow_nan=False)
    | st.text(max_size=40)
    | st.binary(max_size=40)
    | st.booleans()
    | st.none()
)
# The protocol's map keys: one-byte integers and text shorter than 24 bytes.
# For these, RFC 8949's bytewise key order equals the length-first order of
# cbor2's canonical mode (RFC 7049), so the bytes must be identical.
keys = st.integers(min_value=-24, max_value=23) | st.text(max_size=5)
wide_keys = st.integers(min_value=-(2**32), max_value=2**32) | st.text(max_size=30)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(keys, children, max_size=6),
    max_leaves=30,
)


@given(values)
def test_encoding_is_byte_equal_to_cbor2_canonical(value):
    assert cbor_encode.encode(value) == cbor2.dumps(value, canonical=True)


any_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(wide_keys, children, max_size=6),
    max_leaves=30,
)


def test_map_order_is_rfc8949_bytewise_not_length_first():
    # 24 encodes as 0x18 0x18, "" as 0x60: bytewise, 24 sorts first.
    assert cbor_encode.encode({"": None, 24: None}) == b"\xa2\x18\x18\xf6\x60\xf6"


@given(any_values)
def test_round_trip_through_our_decoder_and_cbor2(value):
    encoded = cbor_encode.encode(value)
    assert cbor.decode(encoded) == value
    assert _thaw(cbor2.loads(encoded)) == value


def _thaw(x):
    """cbor2 6 may return tuples/frozendicts; compare as plain containers."""
    if isinstance(x, (list, tuple)):
        return [_thaw(i) for i in x]
    if hasattr(x, "items"):
        return {k: _thaw(v) for k, v in x.items()}
    return x


@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_floats_take_the_shortest_exact_form(x):
    encoded = cbor_encode.encode(x)
    assert cbor.decode(encoded) == x
    assert len(encoded) == len(cbor2.dumps(x, canonical=True))
    assert encoded[0] in (0xF9, 0xFA)


def test_nan_and_infinities_are_binary16():
    assert cbor_encode.encode(math.nan) == b"\xf9\x7e\x00"
    assert cbor_encode.encode(math.inf) == b"\xf9\x7c\x00"
    assert cbor_encode.encode(-math.inf) == b"\xf9\xfc\x00"
    assert math.isnan(cbor.decode(b"\xfb\x7f\xf8\x00\x00\x00\x00\x00\x00"))


@given(st.binary(max_size=64))
def test_decoder_never_crashes_on_garbage(data):
    try:
        cbor.decode(data)
    except MalformedFrame:
        pass


@pytest.mark.parametrize(
    "data, why",
    [
        (b"\x9f\x01\xff", "indefinite"),
        (b"\xa2\x01\x01\x01\x02", "duplicate"),
        (b"\x1c", "reserved"),
        (b"\x01\x02", "trailing"),
        (b"\x5a\xff\xff\xff\xff", "truncated"),
        (b"\x62\xc3\x28", "UTF-8"),
        (b"\xf7", "simple value"),
        (b"\x81" * 40 + b"\x01", "deep"),
    ],
)
def test_decoder_rejects_what_spec_forbids(data, why):
    with pytest.raises(MalformedFrame) as caught:
        cbor.decode(data)
    assert why.lower() in str(caught.value).lower()
