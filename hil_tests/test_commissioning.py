"""Commissioning over the console, as a field engineer does with a laptop and
a USB cable: ``mpremote`` copies the built firmware, the node's config and
its scenario to a fresh (empty) SimNode over its PTY; a soft reset at the
REPL starts the firmware; its first authenticated frame reaches MQTT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import serial

from hil_gateway import wait_until
from hil_ledger import parse_messages

from smemet import scenarios
from smemet.simnode import SimNode

MPREMOTE = str(Path(sys.executable).with_name("mpremote"))


def mpremote(port: str, *args: str, timeout: float = 60) -> str:
    result = subprocess.run([MPREMOTE, "connect", port, "resume", *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"mpremote {' '.join(args)} failed: {result.stderr or result.stdout}"
    return result.stdout


def test_mpremote_commissions_a_fresh_node_whose_first_frame_reaches_mqtt(bench, make_broker, firmware_image, tmp_path):
    broker = make_broker()
    sub = broker.subscriber("hil/#").start()
    key = bench.add_virtual_node("fresh-1")  # registered at the gateway before the node exists
    gw = bench.start_gateway([{"name": "plant", "broker": broker.url, "topic_prefix": "hil/plant", "include": ["*"]}])
    scenario = scenarios.thermocouple_burnout(period_ms=250, at=1e6)
    config = {"node_id": "fresh-1", "key": key.hex(), "board": "sim",
              "transport": {"type": "udp", "gateway": "127.0.0.1", "port": bench.proxy.port, "ack_timeout_ms": 300},
              "batch": {"max_records": 4, "max_latency_ms": 500}, "sim": {"time_scale": 5.0}, "watchdog_ms": 0,
              "channels": scenario.channels}
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "config.json").write_text(json.dumps(config))
    (staging / "sim.json").write_text(json.dumps(scenario.sim_json()))

    node = SimNode(tmp_path / "fresh-flash", heap=bench.heap)  # an empty board
    bench.nodes["fresh-1"] = node
    node.power_on()
    node.wait_console(r">>> ")
    assert not os.listdir(node.flash), "a fresh board has an empty flash"

    # the code into the board's ROMFS partition, main.py and the node's own
    # files to its filesystem (mpremote 1.29 wants -r before cp)
    image = firmware_image / "firmware.romfs"
    out = mpremote(node.console_path, "romfs", "query")
    assert "ROMFS0 partition has size" in out, out
    out = mpremote(node.console_path, "romfs", "deploy", str(image), timeout=120)
    assert "ROMFS image deployed" in out, out
    mpremote(node.console_path, "fs", "cp", str(firmware_image / "main.py"), ":main.py", "+",
             "fs", "cp", str(firmware_image / "boot.py"), ":boot.py", "+",
             "fs", "cp", str(staging / "config.json"), ":config.json", "+",
             "fs", "cp", str(staging / "sim.json"), ":sim.json", timeout=120)
    listing = mpremote(node.console_path, "exec", "import os; print(sorted(os.listdir()))")
    assert listing.strip() == "['boot.py', 'config.json', 'main.py', 'sim.json']", listing
    assert node.rom.read_bytes()[:image.stat().st_size] == image.read_bytes(), "the partition holds the image"

    with serial.Serial(node.console_path, 115200, timeout=1) as console:
        console.write(b"\r\x02\x04")  # Ctrl-B (friendly REPL), Ctrl-D: soft reset, main.py runs
    boot = node.wait_up()
    assert boot.node == "fresh-1"
    listing = node.console_text()
    assert "MemoryError" not in listing
    first = wait_until(lambda: [d for d in parse_messages(sub.snapshot()) if d["node"] == "fresh-1"], 30,
                       lambda: f"the commissioned node's first frame on MQTT ({node.console_text()[-400:]})")
    assert first[0]["channel"] in ("tc_k", "tc_k.cj") and first[0]["quality"] == "good"
    assert gw.rejects() == {}, "the commissioned node's frames must authenticate"
    report = bench.check(sub)
    assert report.delivered == report.produced
    sub.stop()
