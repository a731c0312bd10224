"""An RS-485 node: COBS frames over a serial line (a PTY pair with a tap)
into the gateway's serial port, through a line cut and a gateway crash."""

from __future__ import annotations

import time

from smemet import scenarios


def test_serial_node_delivers_exactly_once_across_line_cut_and_gateway_crash(bench, make_broker):
    broker = make_broker()
    sub = broker.subscriber("hil/#").start()
    bench.add_node("ladle-5", scenarios.ladle_cooling(period_ms=200), transport="serial", time_scale=6.0)
    bench.start_gateway([{"name": "plant", "broker": broker.url, "topic_prefix": "hil/plant", "include": ["*"]}])
    bench.power_on()
    cable = bench.cables["ladle-5"]
    time.sleep(3)
    cable.cut = True
    bench.fault("serial-line-cut")
    time.sleep(2)
    cable.cut = False
    time.sleep(2)
    bench.crash_gateway(down_seconds=1.0)
    time.sleep(3)
    report = bench.check(sub)
    assert report.delivered == report.produced
    assert cable.bytes["up"] > 0 and cable.bytes["down"] > 0, "frames and ACKs went over the serial line"
    sub.stop()
