"""The fast SenML writer and the row-level outbox read against the
reference (``senml_payload`` over ``Measurement``s): byte for byte."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from smemet.gateway.model import Measurement
from smemet.gateway.outbox import Outbox
from smemet.gateway.routes import parse_routes
from smemet.gateway.routes.payload import (
    FrameBlock, Selector, SenmlWriter, encode_batch, encode_frames, senml_payload,
)

QUALITIES = ("good", "uncertain", "bad")

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**63, 2**63), st.booleans(), st.none(),
    st.text(max_size=8), st.binary(max_size=4),
)
rows = st.tuples(
    st.sampled_from(["tc1", "tc2", "p\u00e9", 'q"x']), st.one_of(st.floats(0, 2e9), st.integers(0, 2**40)), values,
    st.sampled_from([None, "", "Cel", "m/s2", "\u00b0C"]), st.sampled_from([0, 1, 2, *QUALITIES]),
    st.one_of(st.none(), st.text(max_size=6)),
)


def reference(node, seq, kind, frame_rows) -> bytes:
    ms = []
    for channel, time, value, unit, quality, reason in frame_rows:
        quality = QUALITIES[quality] if isinstance(quality, int) else quality
        ms.append(Measurement(0, node, seq, channel, time, value.hex() if type(value) is bytes else value,
                              unit, quality, reason, kind))
    return senml_payload(ms)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["n1", "furnace-2"]), st.integers(0, 2**32), st.sampled_from(["data", "status"]),
       st.lists(rows, min_size=1, max_size=6))
def test_writer_gives_the_reference_bytes(node, seq, kind, frame_rows):
    writer = SenmlWriter()
    assert writer.payload(node, seq, kind, frame_rows) == reference(node, seq, kind, frame_rows)
    assert writer.payload(node, seq, kind, frame_rows) == reference(node, seq, kind, frame_rows)  # cached parts


def test_writer_refuses_a_non_finite_time_as_the_reference_does():
    for maker in (lambda: SenmlWriter().payload("n", 1, "data", [("c", math.nan, 1.0, None, 0, None)]),
                  lambda: reference("n", 1, "data", [("c", math.nan, 1.0, None, 0, None)])):
        try:
            maker()
        except ValueError:
            continue
        raise AssertionError("a NaN time must not become JSON")


def route(**changes):
    table = {"name": "r", "broker": "mqtt://h", "topic_prefix": "p", "include": ["*"], **changes}
    return parse_routes([table], "t.toml")[0]


def test_outbox_frames_match_read_and_encode_batch(tmp_path):
    outbox = Outbox(str(tmp_path / "o.sqlite"), 10**9)
    try:
        frames = [
            (1, "n1", 7, 0, 100.0, [("tc1", 1.5e9, 20.5, "Cel", 0, None), ("tc2", 1.5e9, None, "Cel", 2, "open"),
                                    ("skip", 1.5e9, 3.0, None, 0, None)]),
            (2, "n2", 8, 1, 100.0, [("store_depth", 1.5e9 + 1, 4.0, None, 0, None)]),
            (3, "n1", 9, 0, 100.0, [("tc1", 1.5e9 + 2, b"\x01\x02", None, 1, "late")]),
        ]
        outbox.write_processed(frames, 3)
        for fmt in ("senml", "json"):
            cfg = route(format=fmt, exclude=["*/skip"], kinds=["data", "status"])
            for after in (0, 4096, 4097, 4098, 8192, 3 * 4096):
                blocks = [FrameBlock(*b) for b in outbox.read_frames(after, 10)]
                fast = encode_frames(cfg, Selector(cfg), blocks)
                batch = outbox.read(after, 100)
                slow, consumed = encode_batch(cfg, Selector(cfg), batch, more=False) if batch else ([], after)
                assert fast == slow, (fmt, after)
                assert (blocks[-1].last_id if blocks else after) == consumed
        cfg = route(format="json")
        last = encode_frames(cfg, Selector(cfg), [FrameBlock(*b) for b in outbox.read_frames(8192, 10)])
        assert [json.loads(m.payload)["value"] for m in last] == ["0102"] and last[0].last_id == 3 * 4096
    finally:
        outbox.close()
