"""The bench one end-to-end test builds on: simulated nodes (real firmware
in MicroPython VMs), the UDP fault proxy, serial cables, the real gateway
process and the ledger of what the nodes took.  ``Bench.finish`` drains the
nodes and asserts the delivery invariants; ``close`` reports the figures to
the suite's summary."""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hil_gateway import GatewayProcess, free_port, wait_until
from hil_ledger import Ledger, check_delivery, parse_messages
from hil_proxy import FaultProxy

from smemet.simnode import SerialCable, SimNode, pending_frames


@dataclass
class Summary:
    """What the suite did, collected from the tests (printed at the end)."""

    tests: int = 0
    nodes: int = 0
    faults: Counter = field(default_factory=Counter)
    produced: int = 0
    delivered: int = 0
    messages: int = 0
    duplicates: int = 0
    rejects: Counter = field(default_factory=Counter)
    heap: str = "?"
    layout: str = "?"
    memory_errors: int = 0
    notes: list[str] = field(default_factory=list)


SUMMARY = Summary()


class Bench:
    def __init__(self, directory: Path, image: Path, heap: str, seed: int = 1, layout: str = "romfs") -> None:
        self.directory = Path(directory)
        self.image = image
        self.heap = heap
        self.layout = layout
        self.seed = seed
        self.keys: dict[str, bytes] = {}
        self.nodes: dict[str, SimNode] = {}
        self.cables: dict[str, SerialCable] = {}
        self.ledger = Ledger({})
        self.gateway_udp_port = free_port(socket.SOCK_DGRAM)
        self.proxy = FaultProxy(("127.0.0.1", self.gateway_udp_port), seed=seed, tap=self.ledger.capture).start()
        self.gateway: GatewayProcess | None = None
        self.faults: Counter = Counter()
        self.reports = []
        SUMMARY.tests += 1

    # ------------------------------------------------------------ nodes

    def add_node(self, name: str, scenario, *, transport: str = "udp", time_scale: float = 10.0, max_records: int = 8,
                 max_latency_ms: int = 1000, ack_timeout_ms: int = 300, backoff_max_ms: int = 2000, store_kib: int = 256,
                 health_s: int = 30, window: int = 1) -> SimNode:
        key = os.urandom(32)
        self.keys[name] = key
        self.ledger.keys[name] = key
        if transport == "udp":
            tr = {"type": "udp", "gateway": "127.0.0.1", "port": self.proxy.port}
        else:
            cable = self.cables[name] = SerialCable(on_frame=lambda d, f: self.ledger.capture(f) if d == "up" else None)
            tr = {"type": "serial", "device": cable.node_path, "baudrate": 115200}
        tr.update(ack_timeout_ms=ack_timeout_ms, backoff_max_ms=backoff_max_ms, window=window)
        config = {
            "node_id": name,
            "key": key.hex(),
            "board": "sim",
            "transport": tr,
            "batch": {"max_records": max_records, "max_latency_ms": max_latency_ms},
            "store": {"max_kib": store_kib, "segment_kib": 4, "full_policy": "stop"},
            "health": {"period_s": health_s},
            "sim": {"scenario": "sim.json", "time_scale": time_scale},
            "watchdog_ms": 0,
            "channels": scenario.channels,
        }
        node = SimNode(self.directory / name, image=self.image, config=config, scenario=scenario.sim_json(), heap=self.heap,
                       layout=self.layout)
        self.nodes[name] = node
        SUMMARY.nodes += 1
        return node

    def power_on(self, *names: str) -> None:
        for name in names or list(self.nodes):
            self.nodes[name].power_on()
        for name in names or list(self.nodes):
            self.nodes[name].wait_up()

    def power_cut(self, name: str, off_seconds: float = 0.3) -> None:
        """SIGKILL the node's VM, note what its flash holds, power it on again."""
        node = self.nodes[name]
        node.power_off()
        self.ledger.capture_store(node.flash)
        self.fault("node-power-cut")
        time.sleep(off_seconds)
        node.power_on()
        node.wait_up()

    def fault(self, kind: str, n: int = 1) -> None:
        self.faults[kind] += n

    # ------------------------------------------------------------ gateway

    def start_gateway(self, routes: list[dict], **options) -> GatewayProcess:
        serial = [c.gateway_path for c in self.cables.values()]
        self.gateway = GatewayProcess(self.directory / "gateway", self.keys, routes, serial=serial,
                                      udp_port=self.gateway_udp_port, **options)
        self.gateway.start()
        return self.gateway

    def crash_gateway(self, down_seconds: float = 1.0) -> None:
        assert self.gateway is not None
        self.gateway.kill()
        self.fault("gateway-sigkill")
        time.sleep(down_seconds)
        self.gateway.start()

    # ------------------------------------------------------------ end

    def drain(self, timeout: float = 60.0) -> None:
        """Stop every node with nothing left unacknowledged in its flash:
        cut the power when the store is empty; if a frame slipped in, let
        the node boot and send it, and try again."""
        deadline = time.monotonic() + timeout
        for name, node in self.nodes.items():
            while True:
                if node.powered:
                    wait_until(lambda: not [f for f in pending_frames(node.flash)], max(1.0, deadline - time.monotonic()),
                               f"node {name} to have everything ACKed (pending: {len(pending_frames(node.flash))})",
                               interval=0.05)
                    node.power_off()
                left = self.ledger.capture_store(node.flash)
                if not left:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"node {name}: {left} frames still unacknowledged after {timeout} s")
                node.power_on()
                node.wait_up()

    def add_virtual_node(self, name: str) -> bytes:
        """A node the test itself plays (crafted frames); register before
        start_gateway."""
        key = os.urandom(32)
        self.keys[name] = key
        self.ledger.keys[name] = key
        return key

    def check(self, subscriber, selects=lambda node, channel: True, nodes=None, timeout: float = 60.0, drain: bool = True):
        """Drain the nodes, wait for the route, assert every invariant of
        delivery; returns the DeliveryReport."""
        nodes = list(nodes or self.nodes)
        if drain:
            self.drain()
        for name in nodes:
            if name in self.nodes:
                self.ledger.check_complete(name, self.nodes[name].boots)
                assert self.nodes[name].memory_errors == 0, f"node {name} ran out of heap: {self.nodes[name].console_text()[-800:]}"
        want = {(f.node, f.seq, r.channel) for f in self.ledger.data_frames() if f.node in nodes for r in f.readings
                if selects(f.node, r.channel)}

        def arrived():
            got = {(d["node"], d["seq"], d["channel"]) for d in parse_messages(subscriber.snapshot())}
            return want <= got

        try:
            wait_until(arrived, timeout, "the subscriber to receive every reading the nodes took")
        except TimeoutError:
            pass  # check_delivery says precisely what is missing
        report = check_delivery(self.ledger, parse_messages(subscriber.snapshot()), nodes, selects)
        assert report.produced > 0, "the nodes took no readings: nothing was tested"
        self.reports.append(report)
        return report

    def close(self) -> None:
        for node in self.nodes.values():
            node.close()
            SUMMARY.memory_errors += node.memory_errors
        if self.gateway is not None:
            try:
                rejects = self.gateway.rejects()
            except OSError:
                rejects = {}
            SUMMARY.rejects.update({k: int(v) for k, v in rejects.items() if v})
            self.gateway.stop()
        self.proxy.close()
        for cable in self.cables.values():
            cable.close()
        for kind, n in self.proxy.injected().items():
            self.faults["udp-" + kind] += n
        SUMMARY.faults.update(self.faults)
        for r in self.reports:
            SUMMARY.produced += r.produced
            SUMMARY.delivered += r.delivered
            SUMMARY.messages += r.messages
            SUMMARY.duplicates += r.duplicates
