"""A handful of simulated nodes (tools/simnode.py: the real firmware in the
MicroPython unix port) running plant scenarios against a gateway — what
``smemet sim`` and ``smemet demo`` start.

``SIM_HEAP`` is the one place the tools take a simulated node's heap from.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Callable

from . import scenarios
from .errors import UserError
from .simnode import DEFAULT_HEAP, SimNode, SimNodeError, pending_frames

# The heap a simulated node gets (-X heapsize): SimNode's default, which
# follows the firmware's measured needs (docs/firmware.md); `--heap`
# overrides it per run.
SIM_HEAP = DEFAULT_HEAP

# The demo plant: one node per story, named after what it measures.
PLANT = (
    ("furnace", "furnace_heatup"),  # type S and B thermocouples on MAX31856, heat-up to 1,600 °C
    ("flowloop", "wire_break"),  # 4–20 mA cooling-water flow, a wire break from 15 to 35 s
    ("millfan", "bearing_fault"),  # ADXL345 vibration of a degrading fan bearing
)

_HEAP = re.compile(r"^\d+[KM]?$")


def check_heap(heap: str) -> str:
    if not _HEAP.match(heap):
        raise UserError(f"--heap {heap!r}: give a size such as 192K or 1M")
    return heap


def scenario(name: str, period_ms: int | None = None) -> scenarios.Scenario:
    try:
        return scenarios.get(name, **({"period_ms": period_ms} if period_ms else {}))
    except KeyError:
        raise UserError(f"unknown scenario {name!r}; known: {', '.join(sorted(scenarios.SCENARIOS))}") from None


def node_config(node_id: str, key: bytes, story: scenarios.Scenario, gateway: tuple[str, int],
                time_scale: float = 1.0, health_s: int = 10) -> dict:
    """config.json of a sim-board node sending ``story``'s channels over UDP."""
    host, port = gateway
    return {
        "node_id": node_id,
        "key": key.hex(),
        "board": "sim",
        "transport": {"type": "udp", "gateway": host, "port": port, "ack_timeout_ms": 500, "backoff_max_ms": 4000},
        "batch": {"max_records": 8, "max_latency_ms": 1000},
        "store": {"max_kib": 256, "segment_kib": 4, "full_policy": "drop-oldest"},
        "health": {"period_s": health_s},
        "sim": {"scenario": "sim.json", "time_scale": time_scale},
        "watchdog_ms": 0,
        "channels": story.channels,
    }


class Fleet:
    """Simulated nodes in ``directory/<node id>`` (their flash: kept between
    runs, so sequence numbers carry on).  ``on_line(node, text)`` gets every
    line a node prints on its console."""

    def __init__(self, directory: Path | str, image: Path | str, heap: str = SIM_HEAP,
                 on_line: Callable[[str, str], None] | None = None) -> None:
        self.directory = Path(directory)
        self.image = Path(image)
        self.heap = heap
        self.on_line = on_line
        self.nodes: dict[str, SimNode] = {}
        self.blank: set[str] = set()  # empty boards (add_blank): up when their REPL prompts
        self._partial: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def add(self, node_id: str, config: dict, sim_json: dict) -> SimNode:
        try:
            node = SimNode(self.directory / node_id, image=self.image, config=config, scenario=sim_json, heap=self.heap,
                           on_console=lambda data, n=node_id: self._console(n, data))
        except SimNodeError as exc:
            raise UserError(str(exc)) from None
        self.nodes[node_id] = node
        return node

    def add_blank(self, name: str) -> SimNode:
        """An empty board, as it comes out of the box: MicroPython at its
        REPL, no firmware, no config -- to practise ``smemet flash`` and
        ``smemet commission`` on its console port."""
        try:
            node = SimNode(self.directory / name, heap=self.heap,
                           on_console=lambda data, n=name: self._console(n, data))
        except SimNodeError as exc:
            raise UserError(str(exc)) from None
        self.nodes[name] = node
        self.blank.add(name)
        return node

    def _console(self, node_id: str, data: bytes) -> None:
        if not self.on_line:
            return
        with self._lock:
            text = self._partial.get(node_id, b"") + data
            *lines, self._partial[node_id] = re.split(rb"\r?\n", text)
        for line in lines:
            line = line.decode(errors="replace").strip()
            if line:
                self.on_line(node_id, line)

    def start(self, timeout: float = 20.0) -> None:
        """Power every node on and wait until each announced itself."""
        for node in self.nodes.values():
            node.power_on()
        for name, node in self.nodes.items():
            try:
                if name in self.blank:
                    node.wait_console(r">>> ", timeout)
                else:
                    node.wait_up(timeout)
            except TimeoutError:
                last = [line for line in node.console_text().splitlines() if line.strip()][-1:] or ["(nothing printed)"]
                raise UserError(f"simulated node {name} did not start: {last[0]} "
                                f"(too small a heap? try --heap 256K)") from None

    def pending(self) -> dict[str, int]:
        """Frames each node still holds unacknowledged in its flash."""
        return {name: len(pending_frames(node.flash)) for name, node in self.nodes.items()}

    def memory_errors(self) -> dict[str, int]:
        return {name: node.memory_errors for name, node in self.nodes.items() if node.memory_errors}

    def close(self) -> None:
        for node in self.nodes.values():
            node.close()
