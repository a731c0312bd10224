"""The built image in a small heap, executed in place from its ROMFS image
(the board's ROMFS partition, tools/romboot.py): a node with four drivers
(max31856, ads1115, adxl345, a Modbus RTU instrument) on the sim board
samples, frames and sends for more than 10 seconds without a MemoryError;
and a gateway config update is saved, the node resets, and the next boot
applies it."""

import json
import shutil
import socket
import subprocess
import time

from fw_testlib import ROMFS_HEAP, romboot
from smemet.protocol import cose, gateway_side, messages

KEY = bytes(range(32))
NODE = b"n4"
CHANNELS = [
    {"name": "ladle", "driver": "max31856", "tc_type": "B", "period_ms": 200},
    {"name": "flow", "driver": "ads1115", "period_ms": 250, "lrv": 0, "urv": 40, "unit": "m3/s"},
    {"name": "vib", "driver": "adxl345", "period_ms": 1000, "window_ms": 200, "rate_hz": 100},
    {"name": "meter", "driver": "modbus_rtu", "period_ms": 500, "registers": [
        {"name": "flow", "address": 0, "type": "float32", "unit": "m3/s"},
        {"name": "p", "address": 2, "type": "int16", "scale": 0.1, "unit": "Pa"}]},
]
SCENARIO = {"channels": {"ladle": {"value": 1550, "cj": 30}, "flow": {"value": 12.0}, "vib": {"value": 3.0},
                         "meter": {"flow": 2.5, "p": 101.3}}}


class Gateway:
    """Verifies each frame with the gateway-side decoder and ACKs it."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.messages = []
        self.config_update = None  # (version, settings) to send with the next ACK

    def pump(self, seconds, until=None):
        end = time.time() + seconds
        while time.time() < end and not (until and until()):
            try:
                data, addr = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            msg = gateway_side.open_from_node(data, lambda kid: KEY if kid == NODE else None, time.time())
            self.messages.append(msg)
            ack = gateway_side.encode_ack([msg.seq], int(time.time() * 1000))
            self.sock.sendto(cose.create(KEY, NODE, 0, messages.CT_ACK, ack), addr)
            if self.config_update:
                body = gateway_side.encode_config(*self.config_update)
                self.sock.sendto(cose.create(KEY, NODE, 1, messages.CT_CONFIG, body), addr)
                self.config_update = None


def _flash(image, tmp_path, port):
    flash = tmp_path / "flash"  # the filesystem of the ROMFS layout: main.py and the node's own files
    flash.mkdir()
    for name in ("main.py", "boot.py", "manifest.json"):
        shutil.copyfile(image / name, flash / name)
    config = {"node_id": NODE.decode(), "key": KEY.hex(), "board": "sim", "stable_after_s": 1,
              "transport": {"type": "udp", "gateway": "127.0.0.1", "port": port, "ack_timeout_ms": 300},
              "batch": {"max_records": 16, "max_latency_ms": 1000}, "health": {"period_s": 2}, "channels": CHANNELS}
    (flash / "config.json").write_text(json.dumps(config))
    (flash / "sim.json").write_text(json.dumps(SCENARIO))
    return flash


def _start(image, flash, log):
    return subprocess.Popen(romboot(image) + ["-X", "heapsize=" + ROMFS_HEAP, "main.py"], cwd=flash, stdout=log,
                            stderr=subprocess.STDOUT)


def _stop(node):
    if node.poll() is None:
        node.kill()
    node.wait(5)


def test_four_drivers_run_in_a_small_heap(image, tmp_path):
    gw = Gateway()
    flash = _flash(image, tmp_path, gw.port)
    log_path = tmp_path / "console.txt"
    with open(log_path, "w") as log:
        node = _start(image, flash, log)
        try:
            gw.pump(12.0)
            alive = node.poll() is None
        finally:
            _stop(node)
            gw.sock.close()
    console = log_path.read_text()
    assert alive, "the node ended:\n" + console
    assert "MemoryError" not in console and "Traceback" not in console and "read failed" not in console, console
    data = [m for m in gw.messages if m.content_type == messages.CT_SENML]
    status = [m for m in gw.messages if m.content_type == messages.CT_STATUS]
    assert len(data) >= 8 and len(status) >= 4, (len(data), len(status), console)
    records = [r for m in data for r in m.body]
    names = {r.name for r in records}
    assert {"ladle", "ladle.cj", "flow", "vib.rms", "vib.peak", "meter.flow", "meter.p"} <= names, names
    assert all(r.value is not None for r in records), [r for r in records if r.value is None][:3]
    assert any(abs(r.value - 1550) < 0.1 for r in records if r.name == "ladle")
    assert any(abs(r.value - 101.3) < 0.11 for r in records if r.name == "meter.p")
    heap_free = [r.value for m in status for r in m.body if r.name == "heap_free"]
    assert heap_free and min(heap_free) > 4096, heap_free  # room left for a frame's transient buffers
    seqs = [m.seq for m in gw.messages]
    assert len(set(seqs)) == len(seqs) or sorted(set(seqs)) == list(range(min(seqs), max(seqs) + 1)), seqs


def test_config_update_is_saved_then_applied_at_the_next_boot(image, tmp_path):
    gw = Gateway()
    flash = _flash(image, tmp_path, gw.port)
    log_path = tmp_path / "console.txt"
    with open(log_path, "w") as log:
        node = _start(image, flash, log)
        try:
            gw.pump(3.0, until=lambda: len(gw.messages) >= 2)
            gw.config_update = (7, {"batch.max_records": 6, "channels.ladle.period_ms": 400})
            gw.pump(5.0, until=lambda: node.poll() is not None)
            assert node.wait(5) == 3, "the node resets (sys.exit(3) on the sim board) to apply the update"
            saved_before_reset = (flash / "config.update").exists()
            node = _start(image, flash, log)
            before = len(gw.messages)
            gw.pump(6.0, until=lambda: any(
                r.name == "cfg_ver" and r.value == 7 for m in gw.messages[before:]
                if m.content_type == messages.CT_STATUS for r in m.body))
        finally:
            _stop(node)
            gw.sock.close()
    console = log_path.read_text()
    assert saved_before_reset, console
    assert "config: version 7 saved, restarting to apply it" in console, console
    assert "config: version 7 applied" in console and "Traceback" not in console, console
    config = json.loads((flash / "config.json").read_text())
    assert config["cfg_ver"] == 7 and config["batch"]["max_records"] == 6, config
    assert [ch["period_ms"] for ch in config["channels"] if ch["name"] == "ladle"] == [400]
    assert not (flash / "config.update").exists(), "an applied update is consumed"
    status = [m for m in gw.messages[before:] if m.content_type == messages.CT_STATUS]
    assert any(r.name == "cfg_ver" and r.value == 7 for m in status for r in m.body), (console, [[(r.name, r.value) for r in m.body] for m in status])
    assert any(r.name == "reset_cause" and r.value == "config-update" for m in status for r in m.body), console
