"""What calibration costs on the data path, on one core.

* ``processing``: ``Processor.process`` (batch runner + kernels) over
  furnace frames (10 nodes, 32 channels, 64-frame batches) with the chain
  ``[range]`` (no calibration), ``[calibration, range]`` with no record in
  force, and with a record (each measurement stamped with its id);
  measurements per second, per implementation.
* ``writer``: the MQTT senml writer in use on the same frames, without and
  with a calibration id on every measurement.
* ``codec``: frame_codec.pack of the processed frames, without and with
  the calibration column.

    .venv/bin/python bench/bench_calibration.py [--quick]

Best of N ``time.process_time`` rounds; no assertion on speed (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import math
import time

from smemet.gateway import frame_codec, kernels
from smemet.gateway.calibration.schedule import ScheduleEntry
from smemet.gateway.processing import Processor
from smemet.gateway.sinks.mqtt.payload import PayloadWriter
from smemet.gateway.spine import OpenedFrame, ProcessedFrame

CHANNELS = [f"tc{i}" for i in range(32)]
NODES = [f"furnace-{i}" for i in range(10)]
BATCH = 64
T0 = 1_750_000_000.0
CHAINS = {
    "no calibration": [{"type": "range", "min": 0.0, "max": 1800.0}],
    "calibration, no record": [{"type": "calibration"}, {"type": "range", "min": 0.0, "max": 1800.0}],
    "calibration, a record": [{"type": "calibration"}, {"type": "range", "min": 0.0, "max": 1800.0}],
}
RECORD = (ScheduleEntry("K-2025-117", -math.inf, math.inf, math.inf, math.inf, 1.0, 0.75, ()),)


def _opened(count: int) -> list[OpenedFrame]:
    out = []
    for k in range(count):
        node = NODES[k % len(NODES)]
        frame = OpenedFrame(b"", node.encode(), node, k + 1, 112, T0 + k, 0.0, [], [], [], [], bytearray(), [])
        for i, channel in enumerate(CHANNELS):
            frame.names.append(channel)
            frame.units.append("Cel")
            frame.values.append(1200.0 + (k % 100) * 0.5 + i)
            frame.times.append(T0 + k + i * 0.001)
            frame.quality.append(0)
            frame.reasons.append(None)
        out.append(frame)
    return out


class _Book:
    """The calibration book's part the processor uses: a schedule per chain."""

    def __init__(self, schedule) -> None:
        self.schedule = schedule

    def attach(self, node, channel, chain) -> None:
        if chain.calibration is not None:
            chain.calibration.set_schedule(self.schedule)

    def refresh(self) -> None:
        pass

    def write_state(self, db, last_frame_id) -> None:
        pass

    def state_written(self) -> None:
        pass

    def counting(self, on: bool) -> None:
        pass


def processing(impl: str, name: str, frames: list[OpenedFrame], rounds: int) -> tuple[float, list[ProcessedFrame]]:
    steps = CHAINS[name]
    best, out = math.inf, []
    for _ in range(rounds):
        book = _Book(RECORD if name.endswith("a record") else ()) if "calibration" in steps[0]["type"] else None
        processor = Processor(lambda node, channel: steps, kernels=kernels.load(impl), calibration=book)
        made: list[ProcessedFrame] = []
        started = time.process_time()
        for i in range(0, len(frames), BATCH):
            made += processor.process(frames[i:i + BATCH], i + 1, i * len(CHANNELS) + 1)
        best = min(best, time.process_time() - started)
        out = made
    return len(frames) * len(CHANNELS) / best, out


def _best(fn, rounds: int) -> float:
    best = math.inf
    for _ in range(rounds):
        started = time.process_time()
        fn()
        best = min(best, time.process_time() - started)
    return best


def run(quick: bool = False) -> dict:
    count, rounds = (320, 3) if quick else (1280, 5)
    frames = _opened(count)
    n = count * len(CHANNELS)
    result: dict = {"measurements": n, "processing": {}}
    print(f"{count} frames x {len(CHANNELS)} channels, best of {rounds}")
    made = {}
    for impl in ("cython", "pure"):
        for name in CHAINS:
            rate, made[(impl, name)] = processing(impl, name, frames, rounds)
            result["processing"][f"{impl}: {name}"] = round(rate)
            print(f"processing {impl:<6} {name:<24} {rate:>12,.0f} measurements/s")
    plain, stamped = made[("cython", "no calibration")], made[("cython", "calibration, a record")]
    assert stamped[0].calibrations is not None and plain[0].calibrations is None
    writer = PayloadWriter()
    for label, batch in (("writer senml, no calibration", plain), ("writer senml, calibration ids", stamped)):
        seconds = _best(lambda: [writer.senml_payload(f) for f in batch], rounds)
        result[label] = round(n / seconds)
        print(f"{label:<42} {n / seconds:>12,.0f} measurements/s")
    for label, batch in (("codec encode, no calibration", plain), ("codec encode, calibration column", stamped)):
        seconds = _best(lambda: [frame_codec.pack(f.channels, f.times, f.values, f.units, f.quality, f.reasons, f.calibrations) for f in batch], rounds)
        result[label] = round(n / seconds)
        print(f"{label:<42} {n / seconds:>12,.0f} measurements/s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames and rounds")
    print(json.dumps(run(parser.parse_args().quick)))


if __name__ == "__main__":
    main()
