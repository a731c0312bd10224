"""Quality flags end to end: the plant scenarios inject sensor faults into
the simulated chips (thermocouple burn-out, 4–20 mA wire break, an off-gas
analyzer on Modbus that stops answering, a type B thermocouple below its
range, a degrading bearing) and what reaches MQTT must carry the quality
the scenario implies at the moment of each reading."""

from __future__ import annotations

import time
from collections import defaultdict
from statistics import mean

from hil_ledger import parse_messages

from smemet import scenarios

TIME_SCALE = 5.0
GUARD_S = 0.6  # real seconds around a fault edge where either quality is right


def _by_channel(docs, node):
    out = defaultdict(list)
    for d in docs:
        if d["node"] == node:
            out[d["channel"]].append(d)
    for v in out.values():
        v.sort(key=lambda d: (d["seq"], d["time"]))
    return out


def _check_against_scenario(scenario, docs, node, checked):
    """Compare each reading's quality with the scenario's, with scenario time
    reckoned from the node's first reading (sampling starts with the board)."""
    channels = _by_channel(docs, node)
    t0 = min(d["time"] for v in channels.values() for d in v)
    for channel, readings in channels.items():
        for d in readings:
            t = (d["time"] - t0) * TIME_SCALE
            want = scenario.expected_quality(channel, t, d["value"], guard=GUARD_S * TIME_SCALE)
            if want is None:
                continue
            assert (d["quality"], d["reason"]) == want, f"{node}/{channel} at scenario t={t:.1f}s: got {d['quality']}/{d['reason']}, scenario says {want}"
            checked[want] += 1


def test_quality_flags_follow_injected_sensor_faults(bench, make_broker):
    broker = make_broker()
    sub = broker.subscriber("hil/#").start()
    field = scenarios.combine(
        "caster",
        scenarios.thermocouple_burnout(period_ms=200, at=25.0),
        scenarios.wire_break(period_ms=200, start=12.0, end=32.0),
        scenarios.offgas_modbus(period_ms=250, every=15.0, length=8.0),
    )
    mill = scenarios.combine("mill", scenarios.furnace_heatup(period_ms=200, duration=40.0), scenarios.bearing_fault(period_ms=400))
    bench.add_node("caster-1", field, time_scale=TIME_SCALE)
    bench.add_node("mill-2", mill, time_scale=TIME_SCALE)
    bench.start_gateway([{"name": "plant", "broker": broker.url, "topic_prefix": "hil/plant", "include": ["*"]}])
    bench.power_on()
    time.sleep(11)  # 55 scenario seconds: every fault window opens and most close

    bench.check(sub)
    docs = parse_messages(sub.snapshot())
    checked = defaultdict(int)
    _check_against_scenario(field, docs, "caster-1", checked)
    _check_against_scenario(mill, docs, "mill-2", checked)
    # every kind of fault was seen and checked, not just good readings
    for want in (("bad", "open-circuit"), ("bad", "namur-fail-low"), ("bad", "modbus-timeout"),
                 ("uncertain", "tc-out-of-range"), ("good", None)):
        assert checked[want] >= 3, f"too few readings checked for {want}: {dict(checked)}"

    # physics: the furnace reached 1,600 °C on both thermocouples; the bearing's vibration rose
    mill_channels = _by_channel(docs, "mill-2")
    assert max(d["value"] for d in mill_channels["tc_s"]) > 1550
    assert max(d["value"] for d in mill_channels["tc_b"] if d["value"] is not None) > 1550
    rms = [d["value"] for d in mill_channels["fan.rms"] if d["value"] is not None]
    assert len(rms) >= 8 and mean(rms[-3:]) > 3 * mean(rms[:3]), rms
    sub.stop()
