"""SenML packs: what a node builds, the gateway resolves to the same readings."""

import json
import math

import cbor2
from hypothesis import given
from hypothesis import strategies as st

from smemet.protocol import cbor, cbor_encode, cose, messages, resolve, senml

T0_MS = 1_796_000_000_000
names = st.sampled_from(["t1", "t2", "tc_s", "loop", "vib_rms"])
units = st.sampled_from(["Cel", "A", "m/s2", "Pa"])
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32)
readings = st.lists(
    st.tuples(names, units, finite | st.none(), st.integers(min_value=0, max_value=600_000),
              st.none() | st.sampled_from(["open-circuit", "namur-low"])),
    min_size=1, max_size=40,
)


def build(rows, synced, now_offset=700_000):
    builder = senml.PackBuilder()
    base = T0_MS if synced else 50_000
    for name, unit, value, dt, quality in rows:
        builder.add(name, unit, value, base + dt, quality if value is not None or quality else "fault")
    return builder.encode(base + now_offset, synced), base


@given(readings, st.booleans())
def test_gateway_resolves_what_the_node_added(rows, synced):
    payload, base = build(rows, synced)
    now = 1_796_000_900.0
    records = resolve.resolve(cbor.decode(payload), now)
    assert len(records) == len(rows)
    for (name, unit, value, dt, quality), record in zip(rows, records):
        assert record.name == name
        expected_time = (base + dt) / 1000 if synced else now - 700 + dt / 1000
        assert abs(record.time - expected_time) <= 0.001  # offsets are whole 2**-10 s
        if value is None:
            assert (record.value, record.quality, record.reason) == (None, "bad", quality or "fault")
        else:
            assert senml.to_single(record.value) == senml.to_single(value)
            assert record.unit == unit
            assert record.quality == ("uncertain" if quality else "good")


@given(readings, st.booleans())
def test_packs_are_deterministic_cbor(rows, synced):
    payload, _ = build(rows, synced)
    assert cbor2.dumps(cbor2.loads(payload), canonical=True) == payload
    assert cbor_encode.encode(cbor.decode(payload)) == payload


def senml_json(records, base_time):
    """The same readings as a SenML-JSON pack with the same base fields."""
    pack = []
    for i, r in enumerate(records):
        entry = {"n": r.name, "v": r.value} if i else {"bn": "", "bt": base_time, "n": r.name, "u": r.unit, "v": r.value}
        if r.time != base_time:
            entry["t"] = r.time - base_time
        pack.append(entry)
    return json.dumps(pack, separators=(",", ":"))


def compactness(channels, samples):
    """(CBOR frame bytes, SenML-JSON bytes) per measurement."""
    builder = senml.PackBuilder()
    for s in range(samples):
        for c in range(channels):
            value = 1534.5 + 0.0078125 * ((s * 37 + c * 11) % 64) + 20 * c  # MAX31856 resolution
            builder.add("t%d" % c, "Cel", value, T0_MS + 1000 * s)
    payload = builder.encode(T0_MS + 1000 * samples, True)
    frame = cose.create(b"k" * 32, b"ladle-7", 1234, messages.CT_SENML, payload)
    records = resolve.resolve(cbor.decode(payload), 0)
    text = senml_json(records, T0_MS // 1000)
    n = channels * samples
    return len(frame) / n, len(payload) / n, len(text) / n


def test_compactness_targets():
    frame_a, payload_a, json_a = compactness(8, 1)
    frame_b, payload_b, json_b = compactness(1, 16)
    print(f"\n(a) 8 ch x 1: frame {frame_a:.1f} B, payload {payload_a:.1f} B, SenML-JSON {json_a:.1f} B per measurement")
    print(f"(b) 1 ch x 16: frame {frame_b:.1f} B, payload {payload_b:.1f} B, SenML-JSON {json_b:.1f} B per measurement")
    assert frame_b <= 0.40 * json_b  # SPEC.md §3.7 target, whole frame against bare JSON
    assert frame_a < json_a


def test_non_finite_reading_from_a_node_is_kept_as_bad():
    builder = senml.PackBuilder()
    builder.add("t", "Cel", math.inf, T0_MS)
    records = resolve.resolve(cbor.decode(builder.encode(T0_MS, True)), 0)
    assert (records[0].value, records[0].quality, records[0].reason) == (None, "bad", "non-finite")
