"""Hardware-in-the-loop bench: fixtures, the soak marker and the summary.

* ``firmware_image`` — built once per session with ``smemet firmware build``
  (the real build tool) into a temp dir.
* ``node_heap`` — the heap the simulated nodes get: ``-X heapsize=64K`` as
  the firmware issue demands, unless the firmware as built does not run in
  it; then the lowest heap of a ladder that runs a node with every driver,
  plus one step of margin, reported in the summary (``SMEMET_HIL_HEAP``
  forces a value).
* ``bench`` — a Bench (hil_bench.py) per test, closed at the end.
* ``make_broker`` — real Mosquitto brokers (hil_tests/harness/broker.py).

Soak tests carry ``@pytest.mark.soak`` and run only with ``-m soak`` or
``SMEMET_SOAK=1`` (docs/hil.md).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from hil_bench import SUMMARY, Bench  # noqa: E402

from hil_tests.harness.broker import make_broker  # noqa: E402,F401 - the broker fixture, shared
from smemet.simnode import SimNode, build_image  # noqa: E402

HEAP_LADDER = ("64K", "96K", "128K", "160K", "192K", "256K", "384K", "512K")


def pytest_configure(config):
    config.addinivalue_line("markers", "soak: long-running soak test; opt in with -m soak or SMEMET_SOAK=1")


def pytest_collection_modifyitems(config, items):
    markexpr = config.getoption("-m") or ""
    if "soak" in markexpr or os.environ.get("SMEMET_SOAK"):
        return
    skip = pytest.mark.skip(reason="soak run is opt-in: pytest hil_tests -m soak (or SMEMET_SOAK=1)")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def firmware_image(tmp_path_factory) -> Path:
    return build_image(tmp_path_factory.mktemp("firmware") / "image")


def _probe_config(port: int) -> tuple[dict, dict]:
    from smemet import scenarios

    s = scenarios.combine("probe", scenarios.furnace_heatup(100), scenarios.wire_break(100), scenarios.bearing_fault(200),
                          scenarios.offgas_modbus(200), scenarios.thermocouple_burnout(100))
    config = {
        "node_id": "probe", "key": "11" * 32, "board": "sim",
        "transport": {"type": "udp", "gateway": "127.0.0.1", "port": port, "ack_timeout_ms": 100},
        "batch": {"max_records": 16, "max_latency_ms": 300}, "health": {"period_s": 1},
        "sim": {"time_scale": 10}, "watchdog_ms": 0, "channels": s.channels,
    }
    return config, s.sim_json()


def _runs_in(heap: str, image: Path, directory: Path, seconds: float = 3.0) -> bool:
    """Boot a node with every driver at ``heap`` and keep it busy (no
    gateway: frames pile up in its store) for a few seconds."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # a port nobody answers on
        s.bind(("127.0.0.1", 0))
        config, scenario = _probe_config(s.getsockname()[1])
        node = SimNode(directory / heap, image=image, config=config, scenario=scenario, heap=heap)
        try:
            node.power_on()
            try:
                node.wait_up(10)
            except TimeoutError:
                return False
            time.sleep(seconds)
            return node.memory_errors == 0 and len(node.boots) == 1 and node.running
        finally:
            node.close()


@pytest.fixture(scope="session")
def node_heap(firmware_image, tmp_path_factory) -> str:
    forced = os.environ.get("SMEMET_HIL_HEAP")
    if forced:
        SUMMARY.heap = forced
        SUMMARY.heap_note = "forced by SMEMET_HIL_HEAP"
        return forced
    directory = tmp_path_factory.mktemp("heap-probe")
    if _runs_in("64K", firmware_image, directory):
        SUMMARY.heap = "64K"
        return "64K"
    low, high = 1, len(HEAP_LADDER) - 1  # HEAP_LADDER[0] failed
    if not _runs_in(HEAP_LADDER[high], firmware_image, directory):
        pytest.fail(f"the firmware does not run even in {HEAP_LADDER[high]} of heap (see a node's console)")
    while low < high:
        mid = (low + high) // 2
        if _runs_in(HEAP_LADDER[mid], firmware_image, directory):
            high = mid
        else:
            low = mid + 1
    lowest = HEAP_LADDER[high]
    use = HEAP_LADDER[min(high + 1, len(HEAP_LADDER) - 1)]
    SUMMARY.heap = use
    SUMMARY.heap_note = f"64K is NOT enough for the firmware as built; lowest that ran the probe: {lowest}; bench uses {use}"
    return use


@pytest.fixture
def bench(tmp_path, firmware_image, node_heap, request):
    seed = int(os.environ.get("SMEMET_HIL_SEED", "1"))
    b = Bench(tmp_path, firmware_image, node_heap, seed=seed)
    yield b
    b.close()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        # keep the evidence next to the test's temp dir
        for name, node in b.nodes.items():
            (tmp_path / f"{name}.console.txt").write_text(node.console_text())


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    s = SUMMARY
    if not s.tests:
        return
    tr = terminalreporter
    tr.section("HIL bench summary")
    tr.write_line(f"end-to-end benches: {s.tests}; nodes simulated: {s.nodes}; node heap: {s.heap}"
                  + (f" ({s.heap_note})" if s.heap_note else ""))
    faults = ", ".join(f"{k} {v}" for k, v in sorted(s.faults.items())) or "none"
    tr.write_line(f"faults injected: {faults}")
    tr.write_line(f"measurements produced: {s.produced}; delivered (after dedup): {s.delivered}; "
                  f"messages received: {s.messages}; duplicates removed: {s.duplicates}")
    rejects = ", ".join(f"{k} {v}" for k, v in sorted(s.rejects.items())) or "none"
    tr.write_line(f"gateway rejects by reason: {rejects}")
    for note in s.notes:
        tr.write_line(note)
    path = os.environ.get("SMEMET_HIL_SUMMARY")
    if path:  # for the issue note / CI artefacts
        Path(path).write_text(json.dumps({
            "nodes": s.nodes, "heap": s.heap, "heap_note": s.heap_note, "faults": dict(s.faults),
            "produced": s.produced, "delivered": s.delivered, "messages": s.messages,
            "duplicates": s.duplicates, "rejects": dict(s.rejects),
        }, indent=1))
