"""End to end with kill -9: nodes over UDP -> gateway process -> real
Mosquitto -> subscriber.  The gateway is killed mid-stream twice and
restarted; the subscriber must end up with every measurement of every ACKed
frame (duplicates allowed only as exact repeats, which (node, seq) dedup
removes)."""

import time
from collections import Counter

from hil_tests.harness.broker import MosquittoBroker
from hil_tests.harness.nodes import free_udp_port, write_config

from .test_crash import NODES, SAMPLES, Fleet, Gateway


def test_kill_9_with_a_route_delivers_every_acked_measurement(tmp_path):
    with MosquittoBroker(tmp_path / "broker") as broker:
        port = free_udp_port()
        route = f'[[routes]]\nname = "partner"\nbroker = "{broker.url}"\ntopic_prefix = "plant"\ninclude = ["*"]\n'
        config = write_config(str(tmp_path), NODES, udp_port=port, extra=route)
        gateway = Gateway(config, str(tmp_path / "gateway.log"))
        fleet = Fleet(port)
        with broker.subscriber("plant/#") as subscriber:
            try:
                for kill_after in (0.6, 0.4):
                    gateway.start()
                    fleet.run(kill_after)
                    gateway.kill()
                gateway.start()
                fleet.settle()
                expected = Counter()
                for node, seq in fleet.acked:
                    expected[(node, seq)] = SAMPLES
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    got = {}
                    for message in subscriber.snapshot():
                        if message.topic.endswith("/status") or not message.payload.startswith(b"{"):
                            continue
                        body = message.json()
                        if "seq" in body:
                            got[(body["node"], body["seq"], body["channel"], body["time"])] = body
                    per_frame = Counter((node, seq) for node, seq, _c, _t in got)
                    if per_frame == expected:
                        break
                    time.sleep(0.2)
                assert per_frame == expected, f"{sum(expected.values()) - sum(per_frame.values())} measurements missing"
                assert gateway.terminate() == 0
            finally:
                fleet.close()
                if gateway.process and gateway.process.poll() is None:
                    gateway.process.kill()
                    gateway.process.wait()
