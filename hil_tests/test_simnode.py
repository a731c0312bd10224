"""The SimNode itself: a board-like console for mpremote, power cuts that
keep the flash, resets that come back by themselves."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

from smemet import scenarios
from smemet.simnode import FILES_HEAP, SimNode, pending_frames, read_store

MPREMOTE = str(Path(sys.executable).with_name("mpremote"))


@pytest.fixture
def lonely_node(tmp_path, firmware_image, node_heap, node_layout):
    """A node whose gateway never answers: every frame stays in its flash."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    s = scenarios.wire_break(period_ms=100)
    config = {"node_id": "lonely", "key": "22" * 32, "board": "sim",
              "transport": {"type": "udp", "gateway": "127.0.0.1", "port": sink.getsockname()[1], "ack_timeout_ms": 200},
              "batch": {"max_records": 4, "max_latency_ms": 300}, "sim": {"time_scale": 5.0}, "watchdog_ms": 0,
              "channels": s.channels}
    node = SimNode(tmp_path / "flash", image=firmware_image, config=config, scenario=s.sim_json(), heap=node_heap,
                   layout=node_layout)
    yield node, sink
    node.close()
    sink.close()


def test_power_cut_keeps_flash_and_sequence_numbers_move_on(lonely_node):
    node, sink = lonely_node
    node.power_on()
    first = node.wait_up()
    assert first.next_seq == 0
    time.sleep(2)
    node.power_off()
    assert not node.running
    held = pending_frames(node.flash)
    assert len(held) >= 3, "unacknowledged frames stay in flash across the power cut"
    node.power_on()
    second = node.wait_up()
    assert second.next_seq > max(f.seq for f in held), "sequence numbers never repeat after a power cut"
    assert f"store depth {len(held)}" in node.console_text()
    time.sleep(1)
    node.power_off()
    frames, acked = read_store(node.flash)
    assert not acked and {f.seq for f in held} <= {f.seq for f in frames}, "nothing unacknowledged was lost"
    datagrams = 0
    sink.setblocking(False)
    try:
        while sink.recv(2048):
            datagrams += 1
    except BlockingIOError:
        pass
    assert datagrams > 0, "the node sent its frames over UDP"


def test_mpremote_works_on_a_running_node_and_soft_reset_restarts_it(lonely_node):
    node, _ = lonely_node
    node.power_on()
    node.wait_up()
    out = subprocess.run([MPREMOTE, "connect", node.console_path, "resume", "exec",
                          "import os, json; print(json.load(open('config.json'))['node_id'], 'sim.json' in os.listdir())"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "lonely True"
    assert node.boots[-1].mode == "repl", "Ctrl-C stopped the firmware; the board sits at the REPL"
    # mpremote's soft reset in the raw REPL comes back in the raw REPL, as on a board
    out = subprocess.run([MPREMOTE, "connect", node.console_path, "soft-reset", "exec", "print(6 * 7)"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == "42", out.stderr
    assert "soft reboot" in node.console_text()
    with serial.Serial(node.console_path, 115200, timeout=1) as console:
        console.write(b"\r\x02\x04")  # Ctrl-D at the friendly REPL: main.py runs again
    up = node.wait_up()
    assert up.mode == "main" and up.next_seq >= 64


def test_firmware_reset_and_bad_config_behave_like_a_board(tmp_path, firmware_image, node_heap, node_layout):
    node = SimNode(tmp_path / "bad", image=firmware_image, config={"node_id": "x", "channels": "none"}, heap=node_heap,
                   layout=node_layout)
    with node:
        node.wait_console(r"config\.json: key:")
        time.sleep(1)
        assert len(node.boots) == 1 and node.running, "a bad config leaves the node idle and reachable, not crash-looping"
        out = subprocess.run([MPREMOTE, "connect", node.console_path, "resume", "exec", "print('reachable')"],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == "reachable", out.stderr


def test_the_files_layout_runs_the_same_firmware_from_the_filesystem(tmp_path, firmware_image):
    """The plain-files layout (a board without a ROMFS partition: every .mpy
    on the filesystem, loaded into the heap) boots, samples and stores
    frames like the ROMFS one, at the larger heap it needs."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    s = scenarios.combine("pair", scenarios.furnace_heatup(period_ms=100), scenarios.wire_break(period_ms=100))
    config = {"node_id": "plain", "key": "33" * 32, "board": "sim",
              "transport": {"type": "udp", "gateway": "127.0.0.1", "port": sink.getsockname()[1], "ack_timeout_ms": 200},
              "batch": {"max_records": 4, "max_latency_ms": 300}, "sim": {"time_scale": 5.0}, "watchdog_ms": 0,
              "channels": s.channels}
    with SimNode(tmp_path / "flash", image=firmware_image, config=config, scenario=s.sim_json(), heap=FILES_HEAP,
                 layout="files", rom_partition=False) as node:
        try:
            assert node.wait_up().node == "plain"
            assert (node.flash / "node" / "app.mpy").is_file() and node.rom is None
            time.sleep(3)
            assert node.running and len(node.boots) == 1 and node.memory_errors == 0, node.console_text()[-800:]
            assert len(pending_frames(node.flash)) >= 3
        finally:
            sink.close()
