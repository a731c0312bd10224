"""The gateway process end to end with a Sparkplug output beside a json
route: authenticated frames over UDP in, Sparkplug B out to a real
Mosquitto, decoded by pysparkplug.  The Sparkplug metrics (values and
timestamps) must equal the json route's measurements one for one, and a
kill -9 of the gateway must fire its NDEATH will with the NBIRTH's bdSeq."""

from __future__ import annotations

import socket
import time

from hil_gateway import GatewayProcess, wait_until

from hil_tests.harness.nodes import SimNode
from hil_tests.harness.sparkplug import SparkplugStream

FRAMES = 25
SAMPLES = 8
ROUTE_TOPICS = ("status", "checkpoint", "gateway-key")  # the route's own messages, not measurements


def _measurement(message) -> bool:
    return message.topic.rsplit("/", 1)[-1] not in ROUTE_TOPICS


def test_gateway_sparkplug_equals_json_route_and_will_fires_on_kill(make_broker, tmp_path):
    broker = make_broker()
    nodes = [SimNode("furnace-1", channels=("tc1", "tc2")), SimNode("ladle:2", channels=("t",), unit="K")]
    json_route = {"name": "json", "broker": broker.url, "topic_prefix": "e2e", "include": ["*"], "format": "json"}
    sparkplug = {"broker": broker.url, "group_id": "melt-shop", "edge_node_id": "gw-e2e"}
    gateway = GatewayProcess(tmp_path / "gw", {n.node: n.key for n in nodes}, [json_route],
                             extra={"sparkplug": sparkplug})
    expected = FRAMES * len(nodes) * SAMPLES
    with broker.subscriber("e2e/#", persistent=False) as json_sub, \
            broker.subscriber("spBv1.0/#", persistent=False) as sp_sub:
        gateway.start()
        try:
            start_ms = int(time.time() * 1000) - FRAMES * 100
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                for k in range(FRAMES):
                    for node in nodes:
                        # 100 ms apart: a frame's 8 readings span 80 ms, so no two
                        # readings of a channel share a time (Sparkplug's dedup key)
                        udp.sendto(node.data_frame(samples=SAMPLES, now_ms=start_ms + k * 100), gateway.address)
                    time.sleep(0.02)
            wait_until(lambda: json_sub.count(_measurement) >= expected, 30,
                       "the json route's measurements")
            wait_until(lambda: len(SparkplugStream(sp_sub.snapshot()).unique()) >= expected, 30,
                       "the Sparkplug metrics")
            before_kill = SparkplugStream(sp_sub.snapshot())
            gateway.kill()
            wait_until(lambda: any("/NDEATH/" in m.topic for m in sp_sub.snapshot()), 30, "the NDEATH will")
        finally:
            gateway.stop()
        stream = SparkplugStream(sp_sub.snapshot())
        json_docs = [m.json() for m in json_sub.snapshot() if _measurement(m)]

    from_json = {(d["node"], d["channel"], int(round(d["time"] * 1000))): d["value"]
                 for d in json_docs}
    from_sparkplug = {key: point.value for key, point in stream.unique().items()}
    assert len(from_json) == expected
    assert from_sparkplug == from_json, "values and timestamps as the json route has them"
    units = {m.name: m for b in stream.of("DBIRTH") for m in b.raw.metrics}
    assert set(units) == {"tc1", "tc2", "t"}
    # births before data: SparkplugStream refuses data before its DBIRTH; the NBIRTH is first
    assert before_kill.messages[0].kind == "NBIRTH"
    death = stream.of("NDEATH")[-1]
    nbirth = stream.of("NBIRTH")[-1]
    assert death.payload.bd_seq_metric.value == next(m.value for m in nbirth.metrics if m.name == "bdSeq")
    assert (death.qos, death.retain) == (1, False)
