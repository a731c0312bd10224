"""Simulated nodes in a thread, for tests that watch a running gateway (the
web console's browser tests): each sends real frames (``SimNode``: the
protocol's own builder and COSE_Mac0) over UDP on its period, plus a health
report now and then, and can be told to fall silent, break a wire, or use
a wrong key.  Frames are sent with absolute times, as a node whose clock
has synced does."""

from __future__ import annotations

import math
import socket
import threading
import time
from dataclasses import dataclass

from smemet.protocol import cose, messages, senml

from .nodes import SimNode, node_key


@dataclass
class PlantNode:
    name: str
    channel: str
    unit: str
    base: float  # the channel's value, with a slow wave of 1 % on it (a sparkline shows it)
    period: float = 0.5  # seconds between data frames
    silent: bool = False
    wire_break: bool = False  # readings become faults "wire-break" (no value, quality bad)
    key: bytes | None = None  # None: the node's registered key; else a wrong one
    firmware: str = "1.4.2"
    reset_cause: str = "power-on"


class Plant:
    """Sends every node's frames until ``close()``."""

    HEALTH_EVERY = 4  # data frames between health reports

    def __init__(self, gateway: tuple[str, int], nodes: list[PlantNode]) -> None:
        self.gateway = gateway
        self.nodes = {node.name: node for node in nodes}
        self._sims = {node.name: SimNode(node.name, key=node.key or node_key(node.name)) for node in nodes}
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="plant", daemon=True)
        self.sent = 0

    def start(self) -> Plant:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._sock.close()

    def _run(self) -> None:
        due = {name: time.monotonic() for name in self.nodes}
        frames = dict.fromkeys(self.nodes, 0)
        while not self._stop.is_set():
            now = time.monotonic()
            for name, node in self.nodes.items():
                if now < due[name]:
                    continue
                due[name] = now + node.period
                if node.silent:
                    continue
                self._send(self._data(node))
                frames[name] += 1
                if frames[name] % self.HEALTH_EVERY == 1:
                    self._send(self._health(node, frames[name]))
            try:
                while True:
                    self._sock.recv(4096)  # ACKs: a real node would delete its copies
            except (BlockingIOError, OSError):
                pass
            self._stop.wait(0.02)

    def _send(self, frame: bytes) -> None:
        try:
            self._sock.sendto(frame, self.gateway)
            self.sent += 1
        except (BlockingIOError, OSError):
            pass

    def _data(self, node: PlantNode) -> bytes:
        sim = self._sims[node.name]
        sim.seq += 1
        now_ms = int(time.time() * 1000)
        builder = senml.PackBuilder(8)
        for i in range(4):
            t_ms = now_ms - (3 - i) * int(node.period * 250)
            if node.wire_break:
                builder.add(node.channel, node.unit, None, t_ms, "wire-break")
            else:
                wave = 0.01 * node.base * math.sin(2 * math.pi * t_ms / 30_000)
                builder.add(node.channel, node.unit, round(node.base + wave, 2), t_ms)
        return cose.create(sim.key, sim.kid, sim.seq, messages.CT_SENML, builder.encode(now_ms, True))

    def _health(self, node: PlantNode, frames: int) -> bytes:
        sim = self._sims[node.name]
        sim.seq += 1
        now_ms = int(time.time() * 1000)
        builder = senml.PackBuilder(8)
        builder.add("uptime", "s", int(time.monotonic() - self._started) + 3600, now_ms)
        builder.add("store_depth", None, frames % 3, now_ms)
        builder.add_text("reset_cause", node.reset_cause, now_ms)
        builder.add_text("fw", node.firmware, now_ms)
        return cose.create(sim.key, sim.kid, sim.seq, messages.CT_STATUS, builder.encode(now_ms, True))
