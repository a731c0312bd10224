"""Sparkplug B output: the encoder alone, and a Sparkplug sink draining
stored measurements into a local Mosquitto.

* ``encoder``: ``EdgeSession.data`` on processed frames (10 nodes, 32
  channels a frame, the delivery loop's 64-frame batches): DBIRTH when
  needed, one DDATA per device, protobuf serialised -- metrics per second on
  one core (target: >= 100,000).
* ``sink``: the sink under its delivery loop, from a real outbox to
  Mosquitto, QoS 0 data confirmed by a QoS 1 PUBACK per delivery, until the
  durable cursor reaches the last measurement.

    .venv/bin/python bench/bench_sparkplug.py [--quick]
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test harness (hil_tests/harness)

from smemet.gateway.delivery import make_loops, run_loops  # noqa: E402
from smemet.gateway.sinks import ParseContext, SinkContext, sparkplug  # noqa: E402
from smemet.gateway.sinks.sparkplug.session import EdgeSession  # noqa: E402
from smemet.gateway.spine import ProcessedFrame  # noqa: E402
from hil_tests.harness.broker import MosquittoBroker  # noqa: E402
from hil_tests.harness.measurements import OutboxMeasurements, frames  # noqa: E402

CHANNELS = [f"tc{i}" for i in range(32)]
NODES = [f"node-{i}" for i in range(10)]
BATCH = 64  # frames per delivery, as the loop reads them (delivery/loop.py FRAME_BATCH)


def _frames(count: int) -> list[ProcessedFrame]:
    out = []
    t0 = time.time() - count
    for k in range(count):
        node = NODES[k % len(NODES)]
        times = tuple(t0 + k + i * 0.001 for i in range(len(CHANNELS)))
        values = tuple(20.0 + (k % 100) * 0.5 + i for i in range(len(CHANNELS)))
        out.append(ProcessedFrame(k * len(CHANNELS) + 1, k + 1, node, k + 1, 0, t0 + k, tuple(CHANNELS), times,
                                  values, ("Cel",) * len(CHANNELS), bytes(len(CHANNELS)), (None,) * len(CHANNELS)))
    return out


def encoder(frame_count: int, rounds: int) -> dict:
    data = _frames(frame_count)
    batches = [data[i:i + BATCH] for i in range(0, len(data), BATCH)]
    best = float("inf")
    for _ in range(rounds):
        session = EdgeSession("bench", "gw")
        session.connect(0)
        session.birth(0)
        started = time.process_time()
        size = 0
        for batch in batches:
            for message in session.data(batch, 0, 0):
                size += len(message.payload)
        best = min(best, time.process_time() - started)
    metrics = frame_count * len(CHANNELS)
    return {"metrics": metrics, "cpu_seconds": round(best, 3), "metrics_per_s": round(metrics / best),
            "bytes_per_metric": round(size / metrics, 1)}


async def _drain(broker: MosquittoBroker, directory: Path, measurements: int) -> tuple[float, float]:
    """(wall s, CPU s of this process) from the sink's start until its cursor
    reaches the last measurement (filling the outbox not included)."""
    source = OutboxMeasurements(directory / "outbox.db")
    try:
        source.add(frames(NODES, CHANNELS, measurements // (len(NODES) * len(CHANNELS)), start_time=time.time() - 60),
                   received=time.time())
        last = source.last_id()
        config = sparkplug.parse({"broker": broker.url, "group_id": "bench", "edge_node_id": "gw"},
                                 ParseContext("bench", str(directory), "bench"))
        sink = sparkplug.sinks(config, SinkContext("bench", source))[0]
        stop = asyncio.Event()
        cpu = time.process_time()
        started = time.perf_counter()
        task = asyncio.create_task(run_loops(make_loops([sink], source), stop))
        while source.load_cursor(config.name) < last:
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        stop.set()
        await task
        return elapsed, cpu
    finally:
        source.close()


def run(quick: bool) -> dict:
    results: dict = {"encoder": encoder(640 if quick else 6400, 3 if quick else 5)}
    measurements = 32_000 if quick else 320_000
    with tempfile.TemporaryDirectory(prefix="bench-sparkplug-") as tmp:
        with MosquittoBroker(Path(tmp) / "broker") as broker:
            elapsed, cpu_s = asyncio.run(_drain(broker, Path(tmp), measurements))
    results["sink"] = {"measurements": measurements, "seconds": round(elapsed, 3),
                       "metrics_per_s": round(measurements / elapsed),
                       "cpu_s_per_100k": round(cpu_s / measurements * 100_000, 3),
                       "broker": "mosquitto (loopback)"}
    results["metrics_per_s"] = results["encoder"]["metrics_per_s"]
    return results


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))
