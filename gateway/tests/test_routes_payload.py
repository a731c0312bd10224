"""Selection, topics, payloads and the PUBACK tracker, without a broker."""

from __future__ import annotations

import json

from smemet.gateway.model import Measurement
from smemet.gateway.routes import parse_routes
from smemet.gateway.routes.payload import Selector, encode_batch, json_payload, senml_record
from smemet.gateway.routes.tracker import AckTracker


def route(**changes):
    table = {"name": "r", "broker": "mqtt://h", "topic_prefix": "p", "include": ["*"], **changes}
    return parse_routes([table], "t.toml")[0]


def m(id, node="n1", seq=1, channel="tc1", value=1.5, **kw):
    return Measurement(id, node, seq, channel, 1_700_000_000.0 + id, value, kw.pop("unit", "Cel"), **kw)


def test_selector_kinds_include_exclude():
    select = Selector(route(include=["furnace-*/tc*", "ladle-1/*"], exclude=["*/tc9"], kinds=["data"]))
    assert select(m(1, "furnace-2", channel="tc1"))
    assert not select(m(2, "furnace-2", channel="tc9"))
    assert select(m(3, "ladle-1", channel="vib"))
    assert not select(m(4, "ladle-2", channel="vib"))
    assert not select(m(5, "ladle-1", channel="vib", kind="status"))
    assert not select(m(6, "Furnace-2", channel="tc1")), "patterns are case-sensitive"


def test_json_topics_and_unsafe_names():
    messages, consumed = encode_batch(route(), Selector(route()), [m(1), m(2, node="a+b", channel="c#")], False)
    assert [x.topic for x in messages] == ["p/n1/tc1", "p/a_b/c_"]
    assert consumed == 2 and [x.last_id for x in messages] == [1, 2]


def test_json_payload_non_finite_is_null():
    doc = json.loads(json_payload(m(1, value=float("nan"), quality="bad", reason="overrange")))
    assert doc["value"] is None and doc["reason"] == "overrange"


def test_senml_records_by_value_type():
    assert senml_record(m(1, value="open", unit=None)) == {
        "n": "n1/tc1", "t": 1_700_000_001.0, "vs": "open", "node": "n1", "seq": 1, "quality": "good"}
    assert senml_record(m(1, value=False))["vb"] is False
    record = senml_record(m(1, value=None, quality="bad", reason="open circuit"))
    assert "v" not in record and record["reason"] == "open circuit"


def test_senml_groups_frames_and_holds_back_a_split_one():
    cfg = route(format="senml", exclude=["*/skip"])
    batch = [m(1, seq=1), m(2, seq=1, channel="tc2"), m(3, seq=2), m(4, seq=2, channel="skip"), m(5, seq=3)]
    messages, consumed = encode_batch(cfg, Selector(cfg), batch, more=True)
    # Frame 3 may continue in the next read: held back.
    assert consumed == 4 and [x.last_id for x in messages] == [2, 4]
    assert [len(json.loads(x.payload)) for x in messages] == [2, 1]
    messages, consumed = encode_batch(cfg, Selector(cfg), batch, more=False)
    assert consumed == 5 and len(messages) == 3
    # A frame longer than the whole batch still goes out.
    messages, consumed = encode_batch(cfg, Selector(cfg), batch[:2], more=True)
    assert consumed == 2 and len(messages) == 1


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
