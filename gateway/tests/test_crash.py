"""kill -9 at any moment loses nothing ACKed and duplicates nothing.

The gateway runs as a real process (``python -m smemet.gateway run``); the
test plays many nodes over UDP, retransmitting whatever is not ACKed as nodes
do, kills the gateway with SIGKILL mid-stream, restarts it, and finally stops
it with SIGTERM.  Then every ACKed frame must be in the outbox exactly once,
and every frame's measurements exactly once."""

import os
from collections import Counter
import signal
import socket
import subprocess
import sys
import time

import pytest

from smemet.gateway.outbox import Outbox
from hil_tests.harness.nodes import SimNode, free_udp_port, write_config
from smemet.protocol import cose

NODES = [f"furnace-{i}" for i in range(6)]
SAMPLES = 16


class Gateway:
    def __init__(self, config, log_path):
        self.config = config
        self.log_path = log_path
        self.process = None

    def start(self):
        self.log = open(self.log_path, "ab")
        start_size = os.path.getsize(self.log_path)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "smemet.gateway", "run", "--config", self.config],
            stdout=self.log, stderr=self.log,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(start_size)
                if b"gateway started" in f.read():
                    return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.log.close()
        with open(self.log_path) as f:
            raise AssertionError(f"gateway did not start:\n{f.read()}")

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.log.close()

    def terminate(self):
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(30)
        self.log.close()
        return code


class Fleet:
    """Nodes as the firmware's sender behaves: every frame is kept until
    ACKed, the oldest unACKed ones (at most WINDOW per node) are in flight
    and retransmitted until ACKed."""

    WINDOW = 8

    def __init__(self, port):
        self.address = ("127.0.0.1", port)
        self.nodes = {name: SimNode(name, channels=("t", "p")) for name in NODES}
        self.stores = {name: {} for name in NODES}  # seq -> frame, unACKed
        self.acked = set()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.002)

    @property
    def unacked(self):
        return sum(len(store) for store in self.stores.values())

    def measure(self):
        for name, node in self.nodes.items():
            frame = node.data_frame(samples=SAMPLES)
            self.stores[name][node.seq] = frame

    def transmit(self):
        for store in self.stores.values():
            for seq in sorted(store)[: self.WINDOW]:
                self.sock.sendto(store[seq], self.address)

    def collect(self, duration):
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, BlockingIOError, ConnectionRefusedError):  # refused: the gateway is down
                continue
            name = cose.parse(data).kid.decode()
            (seqs, _ms, status), _ = self.nodes[name].open_ack(data)
            if status == 0:
                for seq in seqs:
                    self.stores[name].pop(seq, None)
                    self.acked.add((name, seq))

    def close(self):
        self.sock.close()

    def run(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.measure()
            self.transmit()
            self.collect(0.02)

    def settle(self, seconds=20):
        deadline = time.monotonic() + seconds
        while self.unacked and time.monotonic() < deadline:
            self.transmit()
            self.collect(0.1)
        assert not self.unacked, f"{self.unacked} frames never ACKed"


def test_kill_9_mid_stream_loses_and_duplicates_nothing(tmp_path):
    port = free_udp_port()
    config = write_config(str(tmp_path), NODES, udp_port=port, outbox="commit_max_delay = 0.001")
    gateway = Gateway(config, str(tmp_path / "gateway.log"))
    fleet = Fleet(port)
    sent_before_kill = []
    try:
        for kill_after in (0.7, 0.45, 0.9):
            gateway.start()
            fleet.run(kill_after)
            sent_before_kill.append(len(fleet.acked))
            gateway.kill()  # mid-stream: frames in flight, groups committing, processing running
            fleet.run(0.1)  # nodes keep sending into the void
        gateway.start()
        fleet.settle()
        assert gateway.terminate() == 0
    finally:
        fleet.close()
        if gateway.process and gateway.process.poll() is None:
            gateway.process.kill()
            gateway.process.wait()
    assert sent_before_kill[0] > 0, "nothing was ACKed before the first kill"
    log_text = (tmp_path / "gateway.log").read_text()
    assert "Traceback" not in log_text

    outbox = Outbox(str(tmp_path / "outbox.sqlite"), 1 << 30)
    try:
        frames = [(f.node, f.seq) for f in outbox.frames_after(0, 10**9)]
        measurements = outbox.read(0, 10**9)
        processed_to, last_frame = outbox.processing_cursor(), outbox.last_frame_id
    finally:
        outbox.close()
    assert len(frames) == len(set(frames))
    assert set(frames) == fleet.acked  # every ACKed frame, and only frames that were ACKed at last
    per_frame = Counter(f"{m.node}/{m.seq}" for m in measurements)
    assert per_frame == {f"{node}/{seq}": SAMPLES for node, seq in fleet.acked}
    identities = Counter((m.node, m.seq, m.channel, m.time) for m in measurements)
    assert max(identities.values()) == 1
    assert len({m.id for m in measurements}) == len(measurements)
    assert [m.id for m in measurements] == list(range(1, len(measurements) + 1))  # consecutive, none skipped
    assert processed_to == last_frame == max(f.id for f in outbox_frames(tmp_path))  # everything processed


def outbox_frames(tmp_path):
    outbox = Outbox(str(tmp_path / "outbox.sqlite"), 1 << 30)
    try:
        return outbox.frames_after(0, 10**9)
    finally:
        outbox.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly(tmp_path, sig):
    port = free_udp_port()
    config = write_config(str(tmp_path), NODES, udp_port=port)
    gateway = Gateway(config, str(tmp_path / "gateway.log"))
    gateway.start()
    fleet = Fleet(port)
    try:
        fleet.run(0.3)
    finally:
        fleet.close()
    gateway.process.send_signal(sig)
    assert gateway.process.wait(30) == 0
    gateway.log.close()
    log_text = (tmp_path / "gateway.log").read_text()
    assert "gateway stopped" in log_text and "Traceback" not in log_text
