"""Selection, topics, payloads and the delivery tracker, without a broker."""

from __future__ import annotations

import json

from smemet.gateway.delivery import Selection
from smemet.gateway.delivery.tracker import AckTracker
from smemet.gateway.sinks.mqtt.payload import PayloadWriter, json_payload, messages_of, senml_record
from smemet.gateway.spine import KIND_DATA, KIND_STATUS, Measurement, ProcessedFrame


def m(id, node="n1", seq=1, channel="tc1", value=1.5, **kw):
    return Measurement(id, node, seq, channel, 1_700_000_000.0 + id, value, kw.pop("unit", "Cel"), **kw)


def frame(first_id, node, seq, channels, kind=KIND_DATA):
    n = len(channels)
    return ProcessedFrame(first_id, 1, node, seq, kind, 0.0, tuple(channels), tuple(1.7e9 + i for i in range(n)),
                          tuple(float(i) for i in range(n)), ("Cel",) * n, bytes(n), (None,) * n)


def test_selection_kinds_include_exclude():
    select = Selection(("furnace-*/tc*", "ladle-1/*"), ("*/tc9",), ("data",))
    assert select.allows("furnace-2", "tc1", KIND_DATA)
    assert not select.allows("furnace-2", "tc9", KIND_DATA)
    assert select.allows("ladle-1", "vib", KIND_DATA)
    assert not select.allows("ladle-2", "vib", KIND_DATA)
    assert not select.allows("ladle-1", "vib", KIND_STATUS)
    assert not select.allows("Furnace-2", "tc1", KIND_DATA), "patterns are case-sensitive"


def test_selection_of_a_frame_keeps_the_ids_of_what_it_picks():
    select = Selection(("*",), ("*/skip",))
    whole = frame(10, "n1", 1, ["tc1", "tc2"])
    assert select.of(whole) is whole
    picked = select.of(frame(10, "n1", 1, ["tc1", "skip", "tc2"]))
    assert picked.channels == ("tc1", "tc2") and [picked.id_of(i) for i in range(2)] == [10, 12]
    assert picked.last_id == 12 and picked.values == (0.0, 2.0)
    assert select.of(frame(10, "n1", 1, ["skip"])) is None
    assert Selection(kinds=("data",)).of(frame(1, "n1", 1, ["x"], KIND_STATUS)) is None


def test_json_topics_and_unsafe_names():
    messages = messages_of("json", "p", frame(1, "a+b", 3, ["tc1", "c#"]), PayloadWriter())
    assert [x.topic for x in messages] == ["p/a_b/tc1", "p/a_b/c_"]
    assert [json.loads(x.payload)["seq"] for x in messages] == [3, 3]


def test_json_payload_non_finite_is_null():
    doc = json.loads(json_payload(m(1, value=float("nan"), quality="bad", reason="overrange")))
    assert doc["value"] is None and doc["reason"] == "overrange"


def test_senml_records_by_value_type():
    assert senml_record(m(1, value="open", unit=None)) == {
        "n": "n1/tc1", "t": 1_700_000_001.0, "vs": "open", "node": "n1", "seq": 1, "quality": "good"}
    assert senml_record(m(1, value=False))["vb"] is False
    record = senml_record(m(1, value=None, quality="bad", reason="open circuit"))
    assert "v" not in record and record["reason"] == "open circuit"


def test_senml_is_one_message_per_frame_on_the_node_topic():
    writer = PayloadWriter()
    messages = messages_of("senml", "p", frame(5, "n1", 9, ["tc1", "tc2"]), writer)
    assert [x.topic for x in messages] == ["p/n1"]
    pack = json.loads(messages[0].payload)
    assert [(r["n"], r["seq"], r["node"]) for r in pack] == [("n1/tc1", 9, "n1"), ("n1/tc2", 9, "n1")]
    # a frame cut at a read position (a redelivery after a partial one) sends only the rest
    rest = frame(5, "n1", 9, ["tc1", "tc2", "tc3"]).after(5)
    assert [r["n"] for r in json.loads(messages_of("senml", "p", rest, writer)[0].payload)] == ["n1/tc2", "n1/tc3"]


def test_tracker_moves_only_past_everything_acknowledged():
    tracker = AckTracker(10)
    a, b, c = tracker.add(11, 100.0), tracker.add(12, 101.0), tracker.add(15, 102.0)
    tracker.done(c)
    tracker.done(b)
    assert tracker.acked == 10 and tracker.in_flight == 1 and tracker.oldest_time() == 100.0
    tracker.skip(20)  # unselected ids after the last message
    assert tracker.acked == 10
    tracker.done(a)
    assert tracker.acked == 20 and tracker.in_flight == 0 and tracker.oldest_time() is None
