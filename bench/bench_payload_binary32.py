"""What printing untouched binary32 readings at binary32 costs a route's
payload writer: µs per measurement for senml and json, each writer twin,
without chain information (every value binary64's repr, as before) and with
every channel untouched (each value's shortest binary32 decimal searched).

    .venv/bin/python bench/bench_payload_binary32.py [--quick]
"""

from __future__ import annotations

import random
import struct
import sys
import time

from smemet.gateway.sinks.mqtt.payload import load_writer
from smemet.gateway.spine import ProcessedFrame


def _frames(count: int, per_frame: int = 16, quantised: bool = False) -> list[ProcessedFrame]:
    """Random binary32 readings (every value new: the writer's worst case) or,
    ``quantised``, what a MAX31856 gives a furnace near 1,200 °C (steps of
    1/128 °C: values come again)."""
    rng = random.Random(1)
    single = struct.Struct("<f")
    frames = []
    for f in range(count):
        if quantised:
            values = tuple(1200.0 + rng.randint(-640, 640) / 128 for _ in range(per_frame))
        else:
            values = tuple(single.unpack(single.pack(rng.uniform(-50.0, 1600.0)))[0] for _ in range(per_frame))
        times = tuple(1.7e9 + f + i / 1024 for i in range(per_frame))
        frames.append(ProcessedFrame(f * per_frame, f, "furnace-1", f, 0, 1.7e9, tuple(f"tc{i % 4}" for i in range(per_frame)),
                                     times, values, ("Cel",) * per_frame, bytes(per_frame), (None,) * per_frame))
    return frames


def _per_measurement(write, frames) -> float:
    started = time.perf_counter()
    for frame in frames:
        write(frame)
    return (time.perf_counter() - started) / sum(len(f) for f in frames) * 1e6


def main(quick: bool) -> None:
    count = 500 if quick else 4000
    for readings, frames in (("random", _frames(count)), ("quantised", _frames(count, quantised=True))):
        print(f"-- {readings} readings")
        _compare(frames)


def _compare(frames) -> None:
    for name in ("cython", "pure"):
        try:
            module = load_writer(name)
        except ImportError:
            print(f"{name}: not compiled")
            continue
        for label, untouched in (("binary64 repr", None), ("binary32 shortest", lambda node, channel: True)):
            # a new writer each time: its caches start empty, as at a gateway's start
            senml = min(_per_measurement(module.PayloadWriter(untouched).senml_payload, frames) for _ in range(3))
            json_ = min(_per_measurement(module.PayloadWriter(untouched).json_payloads, frames) for _ in range(3))
            print(f"{name:6} {label:17}  senml {senml:5.2f} µs/measurement  json {json_:5.2f} µs/measurement")


if __name__ == "__main__":
    main("--quick" in sys.argv)
