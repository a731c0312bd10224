"""``smemet demo`` headless: the embedded broker, the gateway and the
simulated plant; the summary line proves measurements flowed.  Also with a
real Mosquitto given by --broker, stopped by Ctrl-C, and its mistakes."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

from smemet.fieldtest import free_port, smemet
from hil_tests.harness.broker import MosquittoBroker

SUMMARY = re.compile(r"^demo: (\d+) nodes, (\d+) measurements delivered, (\d+) lost", re.MULTILINE)


def test_demo_runs_headless_and_delivers_measurements():
    started = time.monotonic()
    result = smemet("demo", "--duration", "12", timeout=90)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    summary = SUMMARY.search(result.stdout)
    assert summary, result.stdout
    nodes, delivered, lost = map(int, summary.groups())
    assert nodes == 3 and delivered > 50 and lost == 0, summary.group(0)
    assert re.search(r"mosquitto_sub -h 127\.0\.0\.1 -p \d+ -t 'smemet/#' -v", result.stdout)
    assert "smemet monitor --broker mqtt://127.0.0.1:" in result.stdout
    # two routes under two agreements, how to verify one, and the demo's own check of it
    assert "Two routes under two agreements" in result.stdout and "IMT-DEMO v1" in result.stdout
    assert re.search(r"smemet verify --broker mqtt://127\.0\.0\.1:\d+ --topic 'institute/#' .*--fingerprint '[0-9a-f ]{79}'",
                     result.stdout), result.stdout
    assert re.search(r"^demo: route institute: \d+ messages under IMT-DEMO v1, signed up to seq \d+: complete and "
                     r"authentic$", result.stdout, re.MULTILINE), result.stdout
    first = re.search(r"first measurements after ([\d.]+) s", result.stderr)
    assert first and float(first.group(1)) < 15, result.stderr
    assert "Traceback" not in result.stdout + result.stderr and took < 40


def test_demo_with_a_given_broker_stops_cleanly_on_ctrl_c(tmp_path):
    with MosquittoBroker(tmp_path / "broker") as broker:
        sub = broker.subscriber("smemet/+/+").start()
        demo = subprocess.Popen([sys.executable, "-m", "smemet", "demo", "--nodes", "2", "--broker", broker.url],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while len({m.json()["node"] for m in sub.snapshot()}) < 2:
                assert time.monotonic() < deadline and demo.poll() is None, "no measurements from both nodes"
                time.sleep(0.2)
        finally:
            demo.send_signal(signal.SIGINT)
            out, err = demo.communicate(timeout=40)
        sub.stop()
    assert demo.returncode == 0, err
    nodes, delivered, lost = map(int, SUMMARY.search(out).groups())
    assert nodes == 2 and delivered > 0 and lost == 0
    assert delivered <= len({(m.json()["node"], m.json()["seq"], m.json()["channel"], m.json()["time"])
                             for m in sub.snapshot()})
    assert "Traceback" not in out + err and "embedded MQTT broker" not in err


def test_unreachable_broker_is_one_line():
    result = smemet("demo", "--duration", "5", "--broker", f"mqtt://127.0.0.1:{free_port()}", timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("smemet demo: error: cannot reach the broker")
    assert "Traceback" not in result.stderr
    bad = smemet("demo", "--broker", "http://example")
    assert bad.returncode == 2 and "mqtt://HOST:PORT" in bad.stderr


async def test_demo_serves_opc_ua_and_prints_the_endpoint():
    """``--opcua``: the endpoint is printed, and asyncua's client reads the
    simulated plant's values from it while the demo runs."""
    import asyncio

    from asyncua import Client, ua

    demo = subprocess.Popen([sys.executable, "-m", "smemet", "demo", "--nodes", "2", "--opcua", "--duration", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = await asyncio.wait_for(asyncio.to_thread(demo.stdout.readline), 60)
        endpoint = re.search(r"OPC UA server at (opc\.tcp://127\.0\.0\.1:\d+) \(namespace urn:smemet-edge:measurements",
                             line)
        assert endpoint, line
        deadline = time.monotonic() + 45
        async with Client(endpoint.group(1)) as client:
            idx = await client.get_namespace_index("urn:smemet-edge:measurements")
            good = []
            while not good:
                assert time.monotonic() < deadline and demo.poll() is None, "no good value over OPC UA"
                gateway = client.get_node(ua.NodeId(1, idx))
                for node in await gateway.get_children():
                    for variable in await node.get_children():
                        if (await variable.read_node_class()) != ua.NodeClass.Variable:
                            continue
                        dv = await variable.read_data_value(raise_on_bad_status=False)
                        if dv.StatusCode.is_good() and dv.Value.Value is not None and dv.SourceTimestamp:
                            good.append(variable)
                await asyncio.sleep(0.5)
    finally:
        demo.send_signal(signal.SIGINT)
        out, err = await asyncio.to_thread(demo.communicate, timeout=40)
    assert demo.returncode == 0, err
    assert f"uals -u {endpoint.group(1)}" in out
    assert "Traceback" not in out + err
