"""A node's readings travel as binary32: a route prints an unprocessed one
as the shortest decimal that round-trips at binary32, in json and senml; a
processed one (a chain ran on it) is a binary64 result and keeps binary64's
repr.  Real MicroPython node, real gateway, real Mosquitto."""

from __future__ import annotations

import json
import re
import struct
import time

from smemet import scenarios


def _single(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _digits(text: str) -> int:
    return len(re.sub(r"[-.]|e.*$", "", text).strip("0")) or 1


def _shortest_at_binary32(text: str) -> bool:
    """``text`` has as few digits as the shortest decimal that reads back as
    the binary32 it rounds to (an independent search, not the gateway's)."""
    x = _single(float(text))
    shortest = next(d for d in range(1, 18) if _single(float(f"{x:.{d}g}")) == x)
    return _digits(text) == shortest


def _value_texts(payload: bytes, field: str) -> list[str]:
    return re.findall(rf'"{field}":(-?[0-9][0-9.e+-]*)', payload.decode())


def test_unprocessed_readings_print_at_binary32_processed_at_binary64(bench, make_broker):
    broker = make_broker()
    bench.add_node("eaf-9", scenarios.furnace_heatup(period_ms=250), time_scale=6.0)
    chains = {"channels": {'"eaf-9/tc_b"': {"steps": [{"type": "calibration", "gain": 1.01, "offset": 0.3}]}}}
    with broker.subscriber("b32/#") as sub:
        bench.start_gateway([broker.route_table("j", topic_prefix="b32/j", format="json"),
                             broker.route_table("s", topic_prefix="b32/s", format="senml")], extra=chains)
        bench.power_on()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = sub.snapshot()
            if sum(m.topic.startswith("b32/j/eaf-9/tc_") for m in got) >= 20 and any(m.topic == "b32/s/eaf-9" for m in got):
                break
            time.sleep(0.5)
    json_tc_s = [t for m in got if m.topic == "b32/j/eaf-9/tc_s" for t in _value_texts(m.payload, "value")]
    json_tc_b = [t for m in got if m.topic == "b32/j/eaf-9/tc_b" for t in _value_texts(m.payload, "value")]
    assert len(json_tc_s) >= 5 and len(json_tc_b) >= 5, [m.topic for m in got][:20]
    for text in json_tc_s:  # untouched: binary32's shortest
        assert _shortest_at_binary32(text), text
    assert any(_digits(t) > 9 for t in json_tc_b), json_tc_b
    for text in json_tc_b:  # processed: binary64 repr, as the chain computed it
        assert repr(float(text)) == text
    senml = [json.loads(m.payload) for m in got if m.topic == "b32/s/eaf-9"]
    raw = [m.payload for m in got if m.topic == "b32/s/eaf-9"]
    records = [r for pack in senml for r in pack if r["n"] == "eaf-9/tc_s" and "v" in r]
    assert records
    for payload in raw:
        for record_text in re.findall(rb'\{"n":"eaf-9/tc_s"[^}]*\}', payload):
            for text in _value_texts(record_text, "v"):
                assert _shortest_at_binary32(text), text
