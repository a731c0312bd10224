"""Both payload writers (compiled ``_writer`` and pure ``writer``) against
the reference (``senml_payload`` and ``json_payload`` over
``Measurement``s): byte for byte, for any processed frame."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

import pytest

from smemet.gateway.sinks.mqtt.payload import json_payload, load_writer, messages_of, senml_payload
from smemet.gateway.spine import KIND_NAMES, ProcessedFrame

QUALITIES = ("good", "uncertain", "bad")

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**63, 2**63), st.booleans(), st.none(),
    st.text(max_size=8), st.binary(max_size=4),
)
rows = st.tuples(
    st.sampled_from(["tc1", "tc2", "p\u00e9", 'q"x']), st.one_of(st.floats(0, 2e9), st.integers(0, 2**40)), values,
    st.sampled_from([None, "", "Cel", "m/s2", "\u00b0C"]), st.sampled_from([0, 1, 2]),
    st.one_of(st.none(), st.text(max_size=6)),
)


def processed(node, seq, kind, frame_rows) -> ProcessedFrame:
    channels, times, values, units, quality, reasons = zip(*frame_rows)
    return ProcessedFrame(1, 1, node, seq, KIND_NAMES.index(kind), 0.0, channels, times, values, units,
                          bytes(quality), reasons)


def reference(frame: ProcessedFrame, untouched=None) -> bytes:
    return senml_payload(list(frame.measurements()), untouched)


def json_reference(frame: ProcessedFrame, untouched=None) -> list[bytes]:
    return [json_payload(m, untouched is not None and untouched(m.node, m.channel)) for m in frame.measurements()]


def _tc1_only(node, channel):
    return channel == "tc1"  # tc1 passes unprocessed, every other channel has a chain


@pytest.fixture(params=["cython", "pure"], scope="module")
def writer_module(request):
    try:
        return load_writer(request.param)
    except ImportError:
        pytest.skip("Cython modules not compiled")


_BOUNDARIES = [b for x in (1e-4, 1e16, 5e-324, 1.7976931348623157e308, 1.0)
               for b in (x, math.nextafter(x, 0.0), math.nextafter(x, math.inf), -x)]  # where repr changes notation
_SINGLE_MAX = 3.4028234663852886e38
_SINGLE_BOUNDARIES = [_SINGLE_MAX, -_SINGLE_MAX, 1.401298464324817e-45, 1.1754943508222875e-38, 1e-4, 9.99999974737875e-05,
                      1e16, 1.0000000272564224e16, 0.49703532457351685, 16777217.0, 16777216.0]
_floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-2000, 2000), st.floats(1e-9, 1e-4),
                    st.floats(1e15, 1e17), st.sampled_from(_BOUNDARIES), st.floats(width=32),
                    st.floats(-2000, 2000, width=32), st.sampled_from(_SINGLE_BOUNDARIES))
all_float_rows = st.tuples(st.sampled_from(["tc1", "tc2"]), _floats, _floats, st.sampled_from([None, "Cel"]),
                           st.sampled_from([0, 1, 2]), st.sampled_from([None, "spike-replaced"]))


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["n1", "furnace-2", 'q"x']), st.integers(0, 2**32), st.sampled_from(["data", "status"]),
       st.one_of(st.lists(rows, min_size=1, max_size=6), st.lists(all_float_rows, min_size=1, max_size=6)))
def test_writers_give_the_reference_bytes(writer_module, node, seq, kind, frame_rows):
    frame = processed(node, seq, kind, frame_rows)
    for untouched in (None, _tc1_only):
        writer = writer_module.PayloadWriter(untouched)
        for _ in range(2):  # the second time from cached parts
            assert writer.senml_payload(frame) == reference(frame, untouched)
            assert writer.json_payloads(frame) == json_reference(frame, untouched)


def test_an_untouched_binary32_reading_is_printed_at_binary32_a_processed_one_at_binary64(writer_module):
    """0.49703533 travelled as binary32 (0.49703532457351685 in binary64):
    printed as the shortest decimal that round-trips in binary32, the
    closest of them (0.49703532, as a binary64 repr picks its closest).  The same
    number on a processed channel is a binary64 result and keeps its digits."""
    import struct

    reading = struct.unpack("<f", struct.pack("<f", 0.49703533))[0]
    frame = processed("n1", 1, "data", [("tc1", 1.5e9, reading, "Cel", 0, None), ("tc2", 1.5e9, reading, "Cel", 0, None),
                                        ("tc1", 1.5e9, 1e-07 + 0.0, None, 0, None)])
    writer = writer_module.PayloadWriter(_tc1_only)
    senml = writer.senml_payload(frame).decode()
    assert '"n":"n1/tc1","t":1500000000.0,"u":"Cel","v":0.49703532,' in senml
    assert '"n":"n1/tc2","t":1500000000.0,"u":"Cel","v":0.49703532457351685,' in senml
    docs = writer.json_payloads(frame)
    assert b'"value":0.49703532,' in docs[0] and b'"value":0.49703532457351685,' in docs[1]
    assert b'"value":1e-07,' in docs[2]  # not a binary32: as it was
    assert struct.unpack("<f", struct.pack("<f", 0.49703532))[0] == reading  # it round-trips in binary32
    assert writer_module.PayloadWriter().senml_payload(frame) == reference(frame), "no chain information: binary64"


@settings(max_examples=2000, deadline=None)
@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_every_binary32_is_printed_shortest_and_round_trips(writer_module, x):
    import struct

    doc = json.loads(writer_module.PayloadWriter(lambda n, c: True).json_payloads(
        processed("n", 1, "data", [("c", 1.0, x, None, 0, None)]))[0])
    printed = doc["value"]
    assert struct.unpack("<f", struct.pack("<f", printed))[0] == x
    digits = len(repr(printed).split("e")[0].replace("-", "").replace(".", "").strip("0")) if x else 1
    shorter = f"{x:.{max(digits - 1, 1)}g}"
    assert digits == 1 or struct.unpack("<f", struct.pack("<f", float(shorter)))[0] != x, (x, printed, shorter)


def test_a_non_finite_time_is_written_as_null_not_refused(writer_module):
    """An overflowed time (a node's base time plus offset beyond binary64)
    becomes null, in both formats: refusing it would stop the route for good."""
    frame = processed("n", 1, "data", [("c", math.inf, 1.0, None, 0, None)])
    writer = writer_module.PayloadWriter()
    assert json.loads(writer.senml_payload(frame))[0]["t"] is None
    assert json.loads(writer.json_payloads(frame)[0])["time"] is None
    assert writer.senml_payload(frame) == reference(frame)


def test_json_messages_carry_each_measurement_as_a_partner_reads_it():
    frame = processed("n1", 9, "data", [("tc1", 1.5e9, 20.5, "Cel", 0, None), ("raw", 1.5e9 + 2, b"\x01\x02", None, 1, "late")])
    docs = [json.loads(m.payload) for m in messages_of("json", "p", frame, load_writer().PayloadWriter())]
    assert [(d["channel"], d["value"], d["quality"], d["reason"], d["seq"]) for d in docs] == [
        ("tc1", 20.5, "good", None, 9), ("raw", "0102", "uncertain", "late", 9)]


calibration_ids = st.one_of(st.none(), st.sampled_from(["K-2025-117", 'q"cal', "\u00e9t/7"]))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["n1", "furnace-2"]), st.integers(0, 2**32), st.sampled_from(["data", "status"]),
       st.one_of(st.lists(rows, min_size=1, max_size=6), st.lists(all_float_rows, min_size=1, max_size=6)),
       st.data())
def test_writers_give_the_reference_bytes_with_calibration_ids(writer_module, node, seq, kind, frame_rows, data):
    """A measurement a record corrected names it (``calibration``, after
    the reason); the reference, both writers and an independent JSON
    parser agree."""
    base = processed(node, seq, kind, frame_rows)
    stamps = tuple(data.draw(calibration_ids) for _ in frame_rows)
    frame = ProcessedFrame(base.first_id, base.frame_id, base.node, base.seq, base.kind, base.received, base.channels,
                           base.times, base.values, base.units, base.quality, base.reasons,
                           calibrations=stamps if any(s is not None for s in stamps) else None)
    writer = writer_module.PayloadWriter()
    for _ in range(2):
        assert writer.senml_payload(frame) == reference(frame)
        assert writer.json_payloads(frame) == json_reference(frame)
    records = json.loads(writer.senml_payload(frame))
    assert [r.get("calibration") for r in records] == list(frame.calibrations or (None,) * len(frame))
    docs = [json.loads(p) for p in writer.json_payloads(frame)]
    assert [d.get("calibration") for d in docs] == [r.get("calibration") for r in records]
    for doc in docs:
        keys = list(doc)
        if "calibration" in doc:  # placed after the reason, before the kind
            assert keys[keys.index("calibration") - 1] == "reason" and keys[keys.index("calibration") + 1] == "kind"
