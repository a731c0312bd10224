"""kill -9 does not double-count a thermocouple's life.

The gateway runs as a real process with a ``thermocouple_life`` step on
three hot furnace thermocouples; nodes stream over UDP (retransmitting what
is not ACKed), the gateway is killed with SIGKILL mid-stream three times and
restarted (each start warms its chains up on frames it had processed),
then stopped.  The life counts, read back with ``smemet calibration export`` as an
auditor would, must be what one uninterrupted pass over the stored readings
gives, worked out here from the rules docs/processing.md states (not by the
gateway's kernel): a reading counts only if later than the last counted;
the time to the next one is credited to the earlier reading's 100 °C band
(and to the hours above 1100 °C when it was that hot), unless longer than
``max_gap`` (then it is unaccounted); a heat cycle is a rise to 1100 °C after
having been below 1050 °C; from the first reading past the usage limit on,
every reading is uncertain ``usage-limit``.  The furnace swings between
three levels frame by frame, so a count lost or repeated moves time
between bands, cycles and the limit's moment.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import pytest

from hil_tests.harness.nodes import SimNode, free_udp_port, write_config
from smemet.gateway.outbox import Outbox
from smemet.protocol import cose

NODES = ["furnace-1", "furnace-2", "furnace-3"]
SAMPLES = 16
LIMIT_HOURS = 0.0002  # 0.72 s above 1100 °C: passed during the first run
LEVELS = (1150.0, 1250.0, 900.0)  # °C by seq % 3 (+ 0.5 per sample): hot, hotter, cooled below the hysteresis
BAND, ABOVE, HYSTERESIS, MAX_GAP = 100.0, 1100.0, 50.0, 1.0  # the step below (kind S: 1100 °C)
CHAINS = """
[[channels."furnace-*/t".steps]]
type = "thermocouple_life"
kind = "S"
limit_hours = %r
max_gap = "1s"
""" % LIMIT_HOURS


class GatewayProcess:
    def __init__(self, config: str, log_path) -> None:
        self.config, self.log_path, self.process, self.log = config, log_path, None, None

    def start(self) -> None:
        self.log = open(self.log_path, "ab")
        offset = self.log.tell()
        self.process = subprocess.Popen([sys.executable, "-m", "smemet.gateway", "run", "--config", self.config],
                                        stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.process.poll() is None:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                if b"gateway started" in f.read():
                    return
            time.sleep(0.05)
        self.log.close()
        raise AssertionError("gateway did not start:\n" + open(self.log_path).read())

    def stop(self, sig: int) -> int:
        self.process.send_signal(sig)
        code = self.process.wait(30)
        self.log.close()
        return code


class HotFleet:
    """Nodes as the firmware sends: frames kept until ACKed, the oldest
    unACKed (up to WINDOW per node) retransmitted."""

    WINDOW = 8

    def __init__(self, port: int) -> None:
        self.address = ("127.0.0.1", port)
        self.nodes = {name: SimNode(name, channels=("t",)) for name in NODES}
        self.stores: dict[str, dict[int, bytes]] = {name: {} for name in NODES}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.002)

    def run(self, seconds: float, measure: bool = True) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if measure:
                for name, node in self.nodes.items():
                    level = LEVELS[(node.seq + 1) % 3]
                    frame = node.data_frame(samples=SAMPLES, value=lambda i: level + 0.5 * i)
                    self.stores[name][node.seq] = frame
            for store in self.stores.values():
                for seq in sorted(store)[: self.WINDOW]:
                    self.sock.sendto(store[seq], self.address)
            end = time.monotonic() + 0.02
            while time.monotonic() < end:
                try:
                    data = self.sock.recv(4096)
                except (TimeoutError, BlockingIOError, ConnectionRefusedError):
                    continue
                name = cose.parse(data).kid.decode()
                (seqs, _ms, status), _ = self.nodes[name].open_ack(data)
                if status == 0:
                    for seq in seqs:
                        self.stores[name].pop(seq, None)

    @property
    def unacked(self) -> int:
        return sum(len(store) for store in self.stores.values())

    def close(self) -> None:
        self.sock.close()


@dataclass
class Life:
    """What one uninterrupted pass counts (the documented rules)."""

    bands: dict = field(default_factory=dict)  # lower edge °C -> seconds
    above: float = 0.0
    unaccounted: float = 0.0
    cycles: int = 0
    peak: float = -math.inf
    exceeded_at: float | None = None


def expected_life(readings: list[tuple[float, float]], limit_seconds: float) -> Life:
    """Over ``readings`` (time, °C) in processing order."""
    life, last, hot = Life(), None, False
    for t, value in readings:
        if last is not None:
            if t <= last[0]:
                continue  # not later than the last counted: never counted
            dt_, before = t - last[0], last[1]
            if dt_ > MAX_GAP:
                life.unaccounted += dt_
            else:
                edge = math.floor(before / BAND) * BAND
                life.bands[edge] = life.bands.get(edge, 0.0) + dt_
                if before >= ABOVE:
                    life.above += dt_
        life.peak = max(life.peak, value)
        if hot and value < ABOVE - HYSTERESIS:
            hot = False
        elif not hot and value >= ABOVE:
            hot, life.cycles = True, life.cycles + 1
        last = (t, value)
        if life.exceeded_at is None and life.above > limit_seconds:
            life.exceeded_at = t
    return life


def _utc(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def test_kill_9_while_counting_neither_loses_nor_repeats_time_at_temperature(tmp_path):
    port = free_udp_port()
    config = write_config(str(tmp_path), NODES, udp_port=port, outbox="commit_max_delay = 0.001", extra=CHAINS)
    gateway = GatewayProcess(config, tmp_path / "gateway.log")
    fleet = HotFleet(port)
    try:
        for run_for in (0.8, 0.5, 0.9):
            gateway.start()
            fleet.run(run_for)
            gateway.process.send_signal(signal.SIGKILL)  # mid-stream: batches processing, groups committing
            gateway.process.wait(10)
            gateway.log.close()
            fleet.run(0.1)  # nodes keep measuring into the void
        gateway.start()
        deadline = time.monotonic() + 30
        while fleet.unacked and time.monotonic() < deadline:
            fleet.run(0.1, measure=False)
        assert not fleet.unacked, f"{fleet.unacked} frames never ACKed"
        time.sleep(1.0)  # the last batches processed
        assert gateway.stop(signal.SIGTERM) == 0
    finally:
        fleet.close()
        if gateway.process and gateway.process.poll() is None:
            gateway.process.kill()
            gateway.process.wait()
    log_text = (tmp_path / "gateway.log").read_text()
    assert "Traceback" not in log_text and log_text.count("gateway started") == 4

    outbox = Outbox(str(tmp_path / "outbox.sqlite"), 1 << 30)
    try:
        measurements = outbox.read(0, 10**9)
        assert outbox.processing_cursor() == outbox.last_frame_id  # everything processed
    finally:
        outbox.close()
    exported = subprocess.run([sys.executable, "-m", "smemet", "calibration", "export", "--format", "json",
                               "--outbox", str(tmp_path / "outbox.sqlite")], capture_output=True, text=True, timeout=60)
    assert exported.returncode == 0, exported.stderr
    lives = {life["node"]: life for life in json.loads(exported.stdout)["lives"]}
    assert set(lives) == set(NODES)
    limit_seconds = LIMIT_HOURS * 3600.0
    for node in NODES:
        mine = [m for m in measurements if m.node == node]  # storage (= processing) order
        expected = expected_life([(m.time, m.value) for m in mine], limit_seconds)
        life = lives[node]
        assert expected.above > 1.5 * limit_seconds and expected.cycles > 3, "too little streamed"
        assert life["hours_above"] * 3600.0 == pytest.approx(expected.above, abs=1e-6), node
        bands = {band["from"]: band["hours"] * 3600.0 for band in life["bands"]}
        assert bands == pytest.approx(expected.bands, abs=1e-6), node
        assert life["unaccounted_hours"] * 3600.0 == pytest.approx(expected.unaccounted, abs=1e-6), node
        assert (life["heat_cycles"], life["peak"]) == (expected.cycles, expected.peak), node
        assert _utc(life["exceeded_at"]) == pytest.approx(expected.exceeded_at, abs=1e-3), node
        flagged = [m.time >= expected.exceeded_at for m in mine]
        assert [(m.quality, m.reason) for m in mine] == [
            ("uncertain", "usage-limit") if over else ("good", None) for over in flagged], node
        assert 0 < sum(flagged) < len(mine)
