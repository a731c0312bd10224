"""``smemet commission`` against fresh SimNodes over their PTYs, a real
gateway process (kept running like systemd keeps it) and a real Mosquitto:
the node's first frame must reach the gateway and MQTT."""

from __future__ import annotations

import json
import time

import pytest

from smemet.fieldtest import SupervisedGateway, free_port, is_private, smemet
from hil_tests.harness.broker import MosquittoBroker
from smemet.sim_fleet import SIM_HEAP
from smemet.simnode import SimNode


@pytest.fixture
def broker(tmp_path):
    with MosquittoBroker(tmp_path / "broker") as b:
        yield b


@pytest.fixture
def gateway(tmp_path, broker):
    gw = SupervisedGateway(tmp_path / "gw", routes=[broker.route_table("plant")], keys={"furnace-9": b"\x11" * 32})
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture
def fresh_node(tmp_path):
    node = SimNode(tmp_path / "flash", heap=SIM_HEAP)
    node.power_on()
    node.wait_console(r">>> ")
    yield node
    node.close()


def commission(node, gw, *extra, node_id="ladle-7"):
    return smemet("commission", "--port", node.console_path, "--node-id", node_id,
                  "--gateway", f"127.0.0.1:{gw.udp_port}", "--gateway-config", str(gw.config), *extra)


def test_commissions_a_fresh_node_whose_frames_reach_mqtt_and_can_run_again(fresh_node, gateway, broker):
    sub = broker.subscriber("test/plant/#").start()
    result = commission(fresh_node, gateway, "--romfs", "--restart-gateway", gateway.restart_command, "--timeout", "30")
    assert result.returncode == 0, result.stdout + result.stderr
    checks = [line for line in result.stdout.splitlines() if line[:1] in "✓✗"]
    assert len(checks) == 8 and all(line.startswith("✓") for line in checks), result.stdout
    assert "registered with a new key" in result.stdout and "flashed (romfs layout) and verified" in result.stdout
    assert sorted(p.name for p in fresh_node.flash.iterdir() if p.suffix in (".py", ".mpy", "")) == [
        "boot.py", "main.py", "store"], "the code is in the ROMFS partition, not on the filesystem"
    assert "gateway received a valid frame from ladle-7" in result.stdout

    # the key store holds the node's key, privately; the node holds the same key
    assert is_private(gateway.keys_file)
    keys = gateway.keys_file.read_text()
    assert '"furnace-9"' in keys  # the other node is untouched
    config = json.loads((fresh_node.flash / "config.json").read_text())
    assert config["node_id"] == "ladle-7" and f'"ladle-7" = "{config["key"]}"' in keys
    assert config["transport"] == {"type": "udp", "gateway": "127.0.0.1", "port": gateway.udp_port}

    # its measurements reach the partner's broker
    deadline = time.monotonic() + 20
    while not [m for m in sub.snapshot() if m.topic.startswith("test/plant/ladle-7/")]:
        assert time.monotonic() < deadline, "no measurement of the commissioned node on MQTT"
        time.sleep(0.2)
    sub.stop()

    # again (e.g. after a failure further on): the key is kept, the firmware is not copied again
    again = commission(fresh_node, gateway, "--romfs", "--timeout", "30")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already registered: its key kept" in again.stdout and "already on the node" in again.stdout
    assert json.loads((fresh_node.flash / "config.json").read_text())["key"] == config["key"]


def test_without_a_gateway_restart_the_checklist_says_what_to_check(fresh_node, gateway):
    result = commission(fresh_node, gateway, "--timeout", "4", node_id="tundish-2")
    assert result.returncode == 1, result.stdout
    assert "✗ the gateway saw no valid frame from tundish-2" in result.stdout
    assert "what to check next:" in result.stdout and "reload it" in result.stdout
    assert "NOT commissioned" in result.stderr and "Traceback" not in result.stderr


def test_a_channel_the_firmware_rejects_stops_before_touching_the_node_or_key_store(fresh_node, gateway):
    before = gateway.keys_file.read_text()
    result = commission(fresh_node, gateway, "--channel", "t1=max3185,tc_type=K")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "unknown driver 'max3185'" in result.stderr and "max31856" in result.stderr and result.stdout == ""
    bad_setting = commission(fresh_node, gateway, "--channel", "t1=max31856,tc_type=Q")
    assert bad_setting.returncode == 2 and "tc_type" in bad_setting.stderr and bad_setting.stdout == ""
    assert gateway.keys_file.read_text() == before and not (fresh_node.flash / "config.json").exists()


def _silent_port():
    """A serial port nobody answers on (a board that is off, or stuck)."""
    import os

    master, slave = os.openpty()
    return master, slave, os.ttyname(slave)


def test_on_a_board_that_does_not_answer_mistakes_come_first_then_progress(tmp_path, gateway):
    import os
    import subprocess
    import sys

    master, slave, port = _silent_port()
    try:
        started = time.monotonic()
        result = smemet("commission", "--port", port, "--node-id", "ladle-8", "--gateway", "127.0.0.1",
                        "--gateway-config", str(gateway.config), "--channel", "tc1=nosuchdriver", timeout=60)
        assert result.returncode == 2 and "unknown driver 'nosuchdriver'" in result.stderr
        assert time.monotonic() - started < 15, "a bad --channel is found before waiting for the board"

        from smemet.firmware_tool import build

        build(tmp_path / "image", romfs=True)
        process = subprocess.Popen([sys.executable, "-m", "smemet", "flash", "--port", port, "--image",
                                    str(tmp_path / "image")], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                   text=True)
        try:
            lines = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                line = process.stderr.readline()
                lines.append(line)
                if "waiting for the node on" in line:
                    break
            assert "waiting for the node on" in lines[-1], lines
            assert "of at most" in lines[-1] and "reset button" in lines[-1]
        finally:
            process.kill()
            process.wait()
            process.stderr.close()
    finally:
        os.close(master)
        os.close(slave)


def test_no_such_port(tmp_path, gateway):
    result = smemet("commission", "--port", str(tmp_path / "ttyACM3"), "--node-id", "n1", "--gateway", "127.0.0.1",
                    "--gateway-config", str(gateway.config))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "no such port" in result.stderr


def test_unreachable_gateway(fresh_node, tmp_path):
    keys = tmp_path / "keys.toml"
    result = smemet("commission", "--port", fresh_node.console_path, "--node-id", "n1", "--gateway", "127.0.0.1",
                    "--keys", str(keys), "--metrics", f"http://127.0.0.1:{free_port()}/metrics")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "gateway does not answer" in result.stderr and not keys.exists()


def test_bad_gateway_config(fresh_node, tmp_path):
    config = tmp_path / "gateway.toml"
    config.write_text('[keys]\nfile = "keys.toml"\n[outbox]\npath = "o.db"\nmax_bytes = "lots"\n')
    result = smemet("commission", "--port", fresh_node.console_path, "--node-id", "n1", "--gateway", "127.0.0.1",
                    "--gateway-config", str(config))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "outbox.max_bytes" in result.stderr and "Traceback" not in result.stderr


def test_bad_arguments(fresh_node, gateway):
    bad_id = commission(fresh_node, gateway, node_id="no spaces please")
    assert bad_id.returncode == 2 and "node id" in bad_id.stderr
    bad_gw = smemet("commission", "--port", fresh_node.console_path, "--node-id", "n1", "--gateway",
                    "no-such-host.invalid:47000", "--gateway-config", str(gateway.config))
    assert bad_gw.returncode == 2 and "cannot resolve" in bad_gw.stderr
