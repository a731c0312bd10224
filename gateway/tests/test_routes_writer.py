"""The fast SenML writer against the reference (``senml_payload`` over
``Measurement``s): byte for byte, for any processed frame."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from smemet.gateway.sinks.mqtt.payload import SenmlWriter, messages_of, senml_payload
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


def reference(frame: ProcessedFrame) -> bytes:
    return senml_payload(list(frame.measurements()))


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["n1", "furnace-2"]), st.integers(0, 2**32), st.sampled_from(["data", "status"]),
       st.lists(rows, min_size=1, max_size=6))
def test_writer_gives_the_reference_bytes(node, seq, kind, frame_rows):
    writer = SenmlWriter()
    frame = processed(node, seq, kind, frame_rows)
    assert writer.payload(frame) == reference(frame)
    assert writer.payload(frame) == reference(frame)  # cached parts


def test_writer_refuses_a_non_finite_time_as_the_reference_does():
    frame = processed("n", 1, "data", [("c", math.nan, 1.0, None, 0, None)])
    for maker in (lambda: SenmlWriter().payload(frame), lambda: reference(frame)):
        try:
            maker()
        except ValueError:
            continue
        raise AssertionError("a NaN time must not become JSON")


def test_json_messages_carry_each_measurement_as_a_partner_reads_it():
    frame = processed("n1", 9, "data", [("tc1", 1.5e9, 20.5, "Cel", 0, None), ("raw", 1.5e9 + 2, b"\x01\x02", None, 1, "late")])
    docs = [json.loads(m.payload) for m in messages_of("json", "p", frame, SenmlWriter())]
    assert [(d["channel"], d["value"], d["quality"], d["reason"], d["seq"]) for d in docs] == [
        ("tc1", 20.5, "good", None, 9), ("raw", "0102", "uncertain", "late", 9)]
