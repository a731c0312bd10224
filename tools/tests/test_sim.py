"""``smemet sim``: simulated nodes against a real gateway and Mosquitto; keys
added to the gateway's key store; Ctrl-C stops cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from smemet.fieldtest import SupervisedGateway, is_private, smemet
from hil_tests.harness.broker import MosquittoBroker


def test_sim_nodes_deliver_through_the_gateway_and_stop_on_ctrl_c(tmp_path):
    with MosquittoBroker(tmp_path / "broker") as broker:
        gw = SupervisedGateway(tmp_path / "gw", routes=[broker.route_table("plant")], keys={}).start()
        sub = broker.subscriber("test/plant/#").start()
        sim = subprocess.Popen(
            [sys.executable, "-m", "smemet", "sim", "--nodes", "2", "--scenario", "wire_break", "--gateway-config",
             str(gw.config), "--flash-dir", str(tmp_path / "nodes"), "--time-scale", "10"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 20
            while '"sim-2"' not in gw.keys_file.read_text():
                assert time.monotonic() < deadline and sim.poll() is None, sim.communicate()
                time.sleep(0.1)
            assert is_private(gw.keys_file)
            subprocess.run(gw.restart_command, shell=True, check=True)  # the gateway loads the new keys
            time.sleep(0.5)
            gw.wait_ready()

            def received():
                return [m.json() for m in sub.snapshot() if m.topic.count("/") == 3]

            deadline = time.monotonic() + 30
            # both nodes deliver, and the scenario's wire break (15..35 scenario s) shows as NAMUR failure
            while not ({"sim-1", "sim-2"} <= {d["node"] for d in received()}
                       and any(d["reason"] == "namur-fail-low" for d in received())):
                assert time.monotonic() < deadline, received()[-5:]
                time.sleep(0.2)
        finally:
            sim.send_signal(signal.SIGINT)
            out, err = sim.communicate(timeout=30)
            sub.stop()
            gw.stop()
    assert sim.returncode == 0, err
    assert "[sim-1] node sim-1 up: fw" in out and "[sim-2] node sim-2 up: fw" in out
    assert "added keys for sim-1, sim-2" in err and "stopped 2 nodes" in err
    assert "Traceback" not in out + err


def test_sim_mistakes(tmp_path):
    unknown = smemet("sim", "--scenario", "volcano", "--keys", str(tmp_path / "k.toml"))
    assert unknown.returncode == 2 and "unknown scenario 'volcano'" in unknown.stderr
    assert unknown.stderr.count("\n") == 1
    heap = smemet("sim", "--heap", "lots", "--keys", str(tmp_path / "k.toml"))
    assert heap.returncode == 2 and "--heap" in heap.stderr
    no_keys = smemet("sim", "--nodes", "1")
    assert no_keys.returncode == 2 and "--gateway-config" in no_keys.stderr


def test_sim_prints_each_console_and_a_blank_board_can_be_commissioned(tmp_path):
    """The guide's practice run (docs/field-engineer.md): `smemet sim --blank`
    gives an empty board on a /dev/pts/N; `smemet commission --port` that
    port commissions it against a real gateway, without hardware."""
    import os
    import re

    from smemet.firmware_tool import build

    image = tmp_path / "image"
    build(image, romfs=True)
    gw = SupervisedGateway(tmp_path / "gw", keys={}).start()
    sim = subprocess.Popen([sys.executable, "-m", "smemet", "sim", "--blank", "--flash-dir", str(tmp_path / "boards")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = sim.stdout.readline()
        found = re.match(r"sim: sim-1 console (/dev/pts/\d+)$", line.strip())
        assert found, line
        port = found.group(1)
        assert os.path.exists(port)
        result = smemet("commission", "--port", port, "--node-id", "practice-1", "--gateway", f"127.0.0.1:{gw.udp_port}",
                        "--gateway-config", str(gw.config), "--image", str(image), "--restart-gateway",
                        gw.restart_command, "--timeout", "30", "--romfs")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "gateway received a valid frame from practice-1" in result.stdout
    finally:
        sim.send_signal(signal.SIGINT)
        out, err = sim.communicate(timeout=30)
        gw.stop()
    assert sim.returncode == 0 and "Traceback" not in err, err
    assert "stopped 1 board" in err
