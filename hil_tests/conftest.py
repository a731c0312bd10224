"""Hardware-in-the-loop bench: fixtures, the soak marker and the summary.

* ``firmware_image`` — built once per session with ``smemet firmware build``
  (the real build tool) into a temp dir.
* ``node_heap`` / ``node_layout`` — how the simulated nodes run: the
  firmware executed in place from its ROMFS partition (``romfs``) at
  SimNode's default heap (96K: the 64K the firmware issue asks for is not
  reached yet, docs/firmware.md); ``SMEMET_HIL_HEAP`` and
  ``SMEMET_HIL_LAYOUT`` (``files``) override them.  No probing for a heap
  that works: a node that runs out of heap fails its test.
* ``bench`` — a Bench (hil_bench.py) per test, closed at the end.
* ``make_broker`` — real Mosquitto brokers (hil_tests/harness/broker.py).

Soak tests carry ``@pytest.mark.soak`` and run only with ``-m soak`` or
``SMEMET_SOAK=1`` (docs/hil.md).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from hil_bench import SUMMARY, Bench  # noqa: E402

from hil_tests.harness.broker import make_broker  # noqa: E402,F401 - the broker fixture, shared
from smemet.simnode import DEFAULT_HEAP, LAYOUTS, build_image  # noqa: E402

DEFAULT_LAYOUT = "romfs"


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


@pytest.fixture(scope="session")
def node_heap() -> str:
    SUMMARY.heap = os.environ.get("SMEMET_HIL_HEAP", DEFAULT_HEAP)
    return SUMMARY.heap


@pytest.fixture(scope="session")
def node_layout() -> str:
    SUMMARY.layout = os.environ.get("SMEMET_HIL_LAYOUT", DEFAULT_LAYOUT)
    if SUMMARY.layout not in LAYOUTS:
        pytest.exit(f"SMEMET_HIL_LAYOUT={SUMMARY.layout!r}: give one of {', '.join(LAYOUTS)}", returncode=2)
    return SUMMARY.layout


@pytest.fixture
def bench(tmp_path, firmware_image, node_heap, node_layout, request):
    seed = int(os.environ.get("SMEMET_HIL_SEED", "1"))
    b = Bench(tmp_path, firmware_image, node_heap, seed=seed, layout=node_layout)
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
    where = {"romfs": "firmware executed in place from the ROMFS partition", "files": "firmware loaded from .mpy files"}
    tr.write_line(f"end-to-end benches: {s.tests}; nodes simulated: {s.nodes}; node heap: -X heapsize={s.heap}; "
                  f"layout: {s.layout} ({where.get(s.layout, '?')}); MemoryErrors: {s.memory_errors}")
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
            "nodes": s.nodes, "heap": s.heap, "layout": s.layout, "memory_errors": s.memory_errors,
            "faults": dict(s.faults),
            "produced": s.produced, "delivered": s.delivered, "messages": s.messages,
            "duplicates": s.duplicates, "rejects": dict(s.rejects),
        }, indent=1))
