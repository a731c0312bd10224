"""The bench's own instruments: the fault proxy does what it counts, the
ledger's checks catch every kind of delivery failure, the scenarios say
what the physics and faults are."""

from __future__ import annotations

import socket
import time

import pytest

from hil_ledger import Ledger, check_delivery
from hil_proxy import FaultProxy

from smemet import scenarios
from smemet.protocol import cbor_encode, cose, messages


def _echo_server():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.05)
    return s


def _pump(server, client, n, gap=0.0):
    got = []
    for i in range(n):
        client.send(b"%d" % i)
        if gap:
            time.sleep(gap)
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        try:
            got.append(server.recv(64))
        except TimeoutError:
            pass
    return got


def test_proxy_loss_duplication_reordering_and_partition_are_real_and_counted():
    server = _echo_server()
    with FaultProxy(server.getsockname(), seed=7) as proxy:
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.connect(("127.0.0.1", proxy.port))
        proxy.set("up", loss=0.3)
        got = _pump(server, client, 200)
        assert len(got) == 200 - proxy.stats["up", "loss"] and 30 < proxy.stats["up", "loss"] < 90
        proxy.clear()
        time.sleep(0.05)
        proxy.set("up", duplicate=0.5)
        got = _pump(server, client, 100)
        assert len(got) == 100 + proxy.stats["up", "duplicate"] and proxy.stats["up", "duplicate"] > 20
        proxy.clear()
        time.sleep(0.05)
        proxy.set("up", reorder=0.3)
        got = _pump(server, client, 100, gap=0.002)
        numbers = [int(g) for g in got]
        assert sorted(numbers) == list(range(100)) and numbers != sorted(numbers)
        proxy.clear()
        proxy.partition(True)
        time.sleep(0.05)
        assert _pump(server, client, 20) == [] and proxy.stats["up", "partition-drop"] == 20
        client.close()
    server.close()


def _frame(key, node, seq, readings):
    pack = [{0: readings[0][0], -3: 1796000000, 2: readings[0][1]}] + [{0: c, 2: v, 6: i + 1} for i, (c, v) in enumerate(readings[1:])]
    return cose.create(key, node.encode(), seq, messages.CT_SENML, cbor_encode.encode(pack))


def _doc(node, seq, channel, t, value, quality="good", reason=None):
    return {"node": node, "seq": seq, "channel": channel, "time": t, "value": value, "quality": quality, "reason": reason}


def test_ledger_check_catches_loss_extras_wrong_quality_and_disorder():
    key = b"k" * 32
    ledger = Ledger({"n": key})
    ledger.capture(_frame(key, "n", 0, [("a", 1.0), ("a", 2.0)]))
    ledger.capture(_frame(key, "n", 1, [("a", 3.0)]))
    good = [_doc("n", 0, "a", 1796000000, 1.0), _doc("n", 0, "a", 1796000001, 2.0), _doc("n", 1, "a", 1796000000, 3.0)]
    report = check_delivery(ledger, good + good[:1], ["n"])
    assert (report.produced, report.delivered, report.duplicates) == (3, 3, 1)
    with pytest.raises(AssertionError, match="never arrived"):
        check_delivery(ledger, good[:2], ["n"])
    with pytest.raises(AssertionError, match="took 2 readings, 1 arrived"):
        check_delivery(ledger, good[1:], ["n"])
    with pytest.raises(AssertionError, match="no node took"):
        check_delivery(ledger, good + [_doc("n", 9, "a", 1796000000, 1.0)], ["n"])
    with pytest.raises(AssertionError, match="quality"):
        check_delivery(ledger, good[:2] + [_doc("n", 1, "a", 1796000000, 3.0, "bad", "open-circuit")], ["n"])
    with pytest.raises(AssertionError, match="value"):
        check_delivery(ledger, good[:2] + [_doc("n", 1, "a", 1796000000, 3.5)], ["n"])
    with pytest.raises(AssertionError, match="out of order"):
        check_delivery(ledger, [good[2], good[0], good[1]], ["n"])


def test_ledger_completeness_finds_a_frame_numbered_but_never_seen():
    from smemet.simnode import Boot

    key = b"k" * 32
    ledger = Ledger({"n": key})
    for seq in (0, 1, 3, 64, 65):
        ledger.capture(_frame(key, "n", seq, [("a", 1.0)]))
    boots = [Boot(0, "main", "n", 0), Boot(0, "main", "n", 64)]
    with pytest.raises(AssertionError, match=r"frames \[2\]"):
        ledger.check_complete("n", boots)
    ledger.capture(_frame(key, "n", 2, [("a", 1.0)]))
    ledger.check_complete("n", boots)


def test_scenarios_describe_physics_and_fault_windows():
    for name in scenarios.SCENARIOS:
        s = scenarios.get(name)
        doc = s.sim_json()
        assert s.channels and doc["channels"], name
        for ch in s.channels:
            assert ch["name"] in doc["channels"], (name, ch["name"])
    heat = scenarios.get("furnace_heatup", duration=50.0)
    assert heat.signals["tc_s"]["value"][-1][1] == 1600.0
    assert heat.expected_quality("tc_b", 1.0, 30.0) == ("uncertain", "tc-out-of-range")
    assert heat.expected_quality("tc_b", 30.0, 900.0) == ("good", None)
    burn = scenarios.get("thermocouple_burnout", at=20.0)
    assert burn.expected_quality("tc_k", 10.0) == ("good", None)
    assert burn.expected_quality("tc_k", 25.0) == ("bad", "open-circuit")
    assert burn.expected_quality("tc_k", 20.5, guard=1.0) is None
    assert burn.sim_json()["channels"]["tc_k"]["faults"] == [{"from": 20.0, "to": scenarios.FOREVER, "fault": "open-circuit"}]
    gas = scenarios.get("offgas_modbus", every=10.0, length=2.0, duration=30.0)
    assert gas.expected_quality("offgas.co", 11.0) == ("bad", "modbus-timeout")
    assert gas.expected_quality("offgas.co", 13.0) == ("good", None)
    cooling = scenarios.get("ladle_cooling").signals["ladle"]["value"]
    assert cooling[0][1] == 1600.0 and all(a[1] > b[1] for a, b in zip(cooling, cooling[1:]))
    with pytest.raises(KeyError, match="known:"):
        scenarios.get("blast_furnace_tap")


@pytest.mark.parametrize("samples", [1, 4, 32])
def test_frame_template_gives_the_bytes_simnode_builds(samples):
    from hil_tests.harness.nodes import FrameTemplate, SimNode

    def value(i):
        return 20.0 + (i * 7 % 50) * 0.5

    template = FrameTemplate(SimNode("tpl-1", channels=("t0", "t1", "t2", "t3")), samples, value)
    reference = SimNode("tpl-1", channels=("t0", "t1", "t2", "t3"))
    for seq, second in [(1, 1_700_000_000), (300, 1_700_000_977), (70_000, 1_800_000_001)]:
        expected = reference.data_frame(samples=samples, seq=seq, now_ms=second * 1000 + samples * 10, value=value)
        assert template.frame(seq, second) == expected
    with pytest.raises(ValueError):
        FrameTemplate(SimNode("tpl-1"), samples, second=1000)
