"""Malformed, forged (wrong key), unknown-node and replayed frames sent by
the test while a real node runs: none reaches any route, each is counted by
its reason on the gateway's metrics, and the node's data still arrives
exactly once."""

from __future__ import annotations

import os
import socket
import time

from hil_gateway import wait_until

from smemet import scenarios
from smemet.protocol import cbor_encode, cose, messages


def _pack(channel: str, value: float) -> bytes:
    return cbor_encode.encode([{-2: channel, -3: int(time.time()), -4: "Pa", 2: value}])


def _frame(key: bytes, node: str, seq: int, channel: str, value: float) -> bytes:
    return cose.create(key, node.encode(), seq, messages.CT_SENML, _pack(channel, value))


def test_forged_unknown_replayed_and_malformed_frames_never_reach_a_route(bench, make_broker):
    broker = make_broker()
    sub = broker.subscriber("hil/#").start()
    bench.add_node("tundish-1", scenarios.thermocouple_burnout(period_ms=250, at=1e6), time_scale=5.0)
    vkey = bench.add_virtual_node("press-9")
    gw = bench.start_gateway([{"name": "plant", "broker": broker.url, "topic_prefix": "hil/plant", "include": ["*"]}])
    bench.power_on()

    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.settimeout(2)
    tx.connect(gw.address)

    def send(frame: bytes, expect_ack: bool) -> None:
        tx.send(frame)
        if expect_ack:
            reply = tx.recv(2048)
            msg = messages.open_from_gateway(reply, b"press-9", vkey)
            assert msg.content_type == messages.CT_ACK

    # legitimate frames of the virtual node: accepted, ACKed, delivered
    good = {}
    for seq in range(0, 70):
        good[seq] = _frame(vkey, "press-9", seq, "pressure", 100.0 + seq)
        bench.ledger.capture(good[seq])
        send(good[seq], expect_ack=True)
    # a retransmission of a stored frame is ACKed again, never delivered twice
    send(good[69], expect_ack=True)

    sent = {"malformed": 0, "bad-mac": 0, "unknown-node": 0, "replayed": 0}
    for junk in (b"", b"\x00" * 10, b"\xd1\x84garbage", os.urandom(64), b"\xa1\x01\x02"):
        tx.send(junk)
        sent["malformed"] += 1
    wrong = os.urandom(32)
    for seq in range(1000, 1005):  # forged: a registered node's id, a key that is not its own
        tx.send(_frame(wrong, "tundish-1", seq, "forged", 666.0))
        tx.send(_frame(wrong, "press-9", seq, "forged", 666.0))
        sent["bad-mac"] += 2
    for seq in range(3):
        tx.send(_frame(os.urandom(32), "intruder", seq, "intruder", 13.0))
        sent["unknown-node"] += 1
    # replays: a seen sequence number with other content (a node that reused
    # numbers), and a number far below the window that the gateway no longer
    # knows the frame of
    tx.send(_frame(vkey, "press-9", 65, "replay", 1.0))
    tx.send(_frame(vkey, "press-9", 69, "replay", 2.0))
    sent["replayed"] += 2
    bench.fault("forged-frames", sent["bad-mac"])
    bench.fault("malformed-frames", sent["malformed"])
    bench.fault("unknown-node-frames", sent["unknown-node"])
    bench.fault("replayed-frames", sent["replayed"])

    unforgeable = ("malformed", "bad-mac", "unknown-node")
    wait_until(lambda: all(gw.rejects().get(r, 0) >= sent[r] for r in unforgeable), 15,
               lambda: f"the gateway to count {sent} (has {gw.rejects()})")
    time.sleep(3)  # the real node keeps sending meanwhile
    report = bench.check(sub, nodes=["tundish-1", "press-9"])
    assert report.delivered == report.produced
    for m in sub.snapshot():
        assert b"forged" not in m.payload and b"intruder" not in m.payload and b"replay" not in m.payload, m
    # SPEC.md 5.3: a seen number is re-ACKed only for the stored frame (same
    # tag); the same number with other content is rejected as replayed
    assert gw.rejects() == {r: float(n) for r, n in sent.items()}, "rejects counted by reason, nothing else rejected"
    tx.close()
    sub.stop()
