"""Publish rate of a route to a local Mosquitto: QoS 1, every message
PUBACKed, measured from the first read until the route's durable cursor
reaches the last measurement (so it includes SQLite reads and cursor saves).

    .venv/bin/python bench/bench_routes.py [--quick]
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test harness (hil_tests/harness)

from smemet.gateway.sinks.mqtt import parse_routes, run_routes  # noqa: E402
from hil_tests.harness.broker import MosquittoBroker  # noqa: E402
from hil_tests.harness.measurements import OutboxMeasurements, frames  # noqa: E402


async def _drain(broker: MosquittoBroker, db: Path, table: dict, measurements: int) -> float:
    source = OutboxMeasurements(db)
    try:
        source.add(frames([f"node-{i}" for i in range(10)], ["tc1", "tc2", "tc3", "tc4"], measurements // 40))
        last = source.last_id()
        routes = parse_routes([table], "bench")
        stop = asyncio.Event()
        started = time.perf_counter()
        task = asyncio.create_task(run_routes(routes, source, stop))
        while source.load_cursor(table["name"]) < last:
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        stop.set()
        await task
        return elapsed
    finally:
        source.close()


def run(quick: bool) -> dict:
    measurements = 4_000 if quick else 40_000
    results: dict = {"measurements": measurements, "broker": "mosquitto (loopback)", "qos": 1}
    with tempfile.TemporaryDirectory(prefix="bench-routes-") as tmp:
        with MosquittoBroker(Path(tmp) / "broker") as broker:
            for fmt, in_flight in (("json", 100), ("json", 500), ("senml", 100)):
                name = f"{fmt}-{in_flight}"
                table = broker.route_table(name, format=fmt, max_in_flight=in_flight)
                elapsed = asyncio.run(_drain(broker, Path(tmp) / f"{name}.db", table, measurements))
                messages = measurements if fmt == "json" else measurements // 4  # 4 channels per frame
                results[name] = {
                    "seconds": round(elapsed, 3),
                    "messages_per_s": round(messages / elapsed),
                    "measurements_per_s": round(measurements / elapsed),
                }
    return results


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))
