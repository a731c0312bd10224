"""End to end through the demo's furnace node: ``smemet demo`` (real
firmware in a MicroPython VM, the gateway, a real Mosquitto given by
--broker); while it runs, ``smemet calibration add`` records an offset for
``furnace-1/tc_s``.  Every tc_s reading taken from the record's
``--valid-from`` on arrives corrected by the offset and names the record;
none before it does, and tc_b (same furnace, no record) never changes; the
record's due date shows in the gateway's metrics.

tc_s and tc_b read the same furnace signal (tools/scenarios.py), so tc_b
is the uncorrected reference each tc_s reading is checked against."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from hil_tests.harness.broker import MosquittoBroker

OFFSET = 50.0  # °C: far above the two converters' disagreement (below 1 °C)
AGREE = 1.0  # °C: |tc_s - tc_b| for the same reading without a correction
CERTIFICATE = "K-E2E-0042"


def _pairs(messages) -> list[tuple[dict, dict]]:
    """(tc_s, tc_b) documents of the same frame and reading time."""
    by_key: dict[tuple, dict] = {}
    for message in messages:
        doc = message.json()
        by_key.setdefault((doc["seq"], doc["time"]), {})[doc["channel"]] = doc
    return [(pair["tc_s"], pair["tc_b"]) for _key, pair in sorted(by_key.items())
            if "tc_s" in pair and "tc_b" in pair and pair["tc_s"]["value"] is not None and pair["tc_b"]["value"] is not None]


def _due_metric(config: str) -> dict[tuple, float]:
    """smemet_gateway_calibration_due_seconds from the gateway's metrics
    endpoint, read with prometheus_client's own parser."""
    port = int(re.search(r"\[metrics\][^[]*?port = (\d+)", Path(config).read_text()).group(1))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(s.labels["node"], s.labels["channel"], s.labels["record"]): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == "smemet_gateway_calibration_due_seconds"}


def test_a_record_added_while_the_demo_runs_corrects_the_furnace_and_names_itself(tmp_path):
    with MosquittoBroker(tmp_path / "broker") as broker:
        sub = broker.subscriber("smemet/furnace-1/+").start()
        summary = open(tmp_path / "demo.out", "w+")
        demo = subprocess.Popen([sys.executable, "-m", "smemet", "demo", "--nodes", "1", "--broker", broker.url,
                                 "--keep", str(tmp_path / "demo"), "--duration", "150"],
                                stdout=summary, stderr=subprocess.PIPE, text=True)
        errors: list[str] = []
        reader = threading.Thread(target=lambda: errors.extend(demo.stderr), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 60
            while len(_pairs(sub.snapshot())) < 5:
                assert time.monotonic() < deadline and demo.poll() is None, "no furnace readings: " + "".join(errors)
                time.sleep(0.2)
            config = re.search(r"demo: gateway up \(UDP [^,]+, config (\S+)\)", "".join(errors)).group(1)
            # In force a few seconds from now: committed before it applies, so
            # the boundary is the reading time, not when the gateway saw it.
            valid_from = time.time() + 3.0
            today = dt.date.today()
            added = subprocess.run(
                [sys.executable, "-m", "smemet", "calibration", "add", "furnace-1/tc_s", "--certificate", CERTIFICATE,
                 "--lab", "Kalibrierlabor Nord", "--date", today.isoformat(),
                 "--due", (today + dt.timedelta(days=365)).isoformat(), "--offset", str(OFFSET), "--uncertainty", "1.5",
                 "--unit", "Cel", "--valid-from", dt.datetime.fromtimestamp(valid_from, dt.timezone.utc).isoformat(),
                 "--gateway-config", config],
                capture_output=True, text=True, timeout=30)
            assert added.returncode == 0, added.stderr
            deadline = time.monotonic() + 60
            while sum(1 for s, _b in _pairs(sub.snapshot()) if s.get("calibration")) < 10:
                assert time.monotonic() < deadline and demo.poll() is None, "no corrected reading: " + "".join(errors)
                time.sleep(0.2)
            due_in = _due_metric(config)
        finally:
            demo.terminate()
            demo.wait(60)
            reader.join(10)
            demo.stderr.close()
            summary.close()
            sub.stop()
        pairs = _pairs(sub.snapshot())
    assert demo.returncode == 0, "".join(errors)
    before = [(s, b) for s, b in pairs if s["time"] < valid_from]
    after = [(s, b) for s, b in pairs if s["time"] >= valid_from]
    assert len(before) >= 5 and len(after) >= 10
    for s, b in before:  # taken before the record was in force: as the node sent it
        assert "calibration" not in s and abs(s["value"] - b["value"]) < AGREE, (s, b)
    for s, b in after:  # from its valid-from on: corrected by the offset, naming the record
        assert s["calibration"] == CERTIFICATE and abs(s["value"] - b["value"] - OFFSET) < AGREE, (s, b)
    assert not any("calibration" in b for _s, b in pairs)  # no record for tc_b: nothing stamped
    # the due date shows as a metric: about a year (the due day's end, local time) from now
    assert list(due_in) == [("furnace-1", "tc_s", CERTIFICATE)]
    assert 365 * 86400 - 60 < due_in[("furnace-1", "tc_s", CERTIFICATE)] < 366 * 86400 + 60
    assert "Traceback" not in "".join(errors)
    assert re.search(r"demo: 1 nodes, \d+ measurements delivered, 0 lost", (tmp_path / "demo.out").read_text())
