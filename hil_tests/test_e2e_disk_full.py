"""The gateway's disk filling up: a small outbox limit ([outbox] max_bytes,
the smallest the gateway accepts) while the partner's broker is down.  The
gateway must raise its storage alarm and stop ACKing (nodes keep their
frames in flash), then resume when the backlog drains: nothing lost,
nothing twice."""

from __future__ import annotations

import time

from hil_gateway import wait_until

from smemet import scenarios
from smemet.simnode import pending_frames


def test_full_outbox_stops_acks_nodes_buffer_and_nothing_is_lost(bench, make_broker):
    broker = make_broker()
    sub = broker.subscriber("hil/#").start()
    busy = scenarios.combine("busy", scenarios.furnace_heatup(period_ms=50), scenarios.ladle_cooling(period_ms=50))
    node = bench.add_node("bof-1", busy, time_scale=4.0, max_records=16, max_latency_ms=500)
    gw = bench.start_gateway(
        [{"name": "plant", "broker": broker.url, "topic_prefix": "hil/plant", "include": ["*"]}],
        outbox={"max_bytes": "64KiB", "audit_retention": "0s"},
    )
    broker.stop()  # the partner is away: the outbox can only grow
    bench.fault("broker-stop")
    bench.power_on()

    wait_until(lambda: gw.metric("smemet_gateway_storage_full") == 1, 60, "the gateway's storage alarm")
    bench.fault("gateway-disk-full")
    refused = wait_until(lambda: gw.metric("smemet_gateway_frames_refused_full"), 20, "frames refused while full")
    time.sleep(2)
    held = len(pending_frames(node.flash))
    assert held >= 3, f"the node should keep what the gateway refused (holds {held})"

    broker.start()
    wait_until(lambda: gw.metric("smemet_gateway_storage_full") == 0, 60, lambda: f"the alarm to clear ({gw.log_tail(5)})")
    report = bench.check(sub, timeout=90)
    assert report.delivered == report.produced
    assert refused > 0
    sub.stop()
