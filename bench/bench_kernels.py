"""Cython kernels against their pure-Python twins.

    python bench/bench_kernels.py [--quick]

For each kernel, times one ``process`` call over a batch of synthetic samples
(best of N, ``time.perf_counter``), prints a table and returns
``{kernel: speedup}`` (pure time / Cython time).  The target is >= 30x.
Buffers are rebuilt outside the timed region, so only the kernel is measured.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from array import array

from smemet.gateway import kernels

TARGET = 30.0

# name -> (factory taking the kernel module, value generator)
CASES = {
    "FlagNonFinite": (lambda k: k.FlagNonFinite(), "signal"),
    "Linear": (lambda k: k.Linear(1.25, -3.0), "signal"),
    "Polynomial": (lambda k: k.Polynomial([0.1, 1.0, 1e-3, 1e-6]), "signal"),
    "Thermocouple": (lambda k: k.Thermocouple("K", 25.0), "millivolts"),
    "CurrentLoop": (lambda k: k.CurrentLoop(0.0, 1600.0), "milliamps"),
    "RangeCheck": (lambda k: k.RangeCheck(0.0, 1500.0), "signal"),
    "Hampel(7)": (lambda k: k.Hampel(7, 3.0), "signal"),
    "Hampel(31)": (lambda k: k.Hampel(31, 3.0), "signal"),
    "Deadband": (lambda k: k.Deadband(0.5, 0.0, 60.0), "signal"),
    "Ema": (lambda k: k.Ema(1.0, 5.0), "signal"),
    "RateLimit": (lambda k: k.RateLimit(50.0, 2), "signal"),
    "Aggregate": (lambda k: k.Aggregate(10.0, "mean"), "signal"),
    "Calibration": (lambda k: _calibration(k, ()), "signal"),
    "Calibration(points)": (lambda k: _calibration(k, ((600.0, 1.2), (1000.0, 0.9), (1200.0, -0.4), (1400.0, -1.1))),
                            "signal"),
    "ThermocoupleLife": (lambda k: k.ThermocoupleLife(100.0, 1100.0, 50.0, 1100.0, 4380 * 3600.0, 0, 1, 300.0),
                         "signal"),
}


def _calibration(k, points):
    """Two records, the second in force from the middle of the batch (offset or points)."""
    from smemet.gateway.calibration.schedule import ScheduleEntry

    kernel = k.Calibration(1, 1, 0)
    kernel.set_schedule((ScheduleEntry("A", -math.inf, 5_000.0, math.inf, math.inf, 1.0, 0.5, points),
                         ScheduleEntry("B", 5_000.0, math.inf, math.inf, math.inf, 1.0, -0.25, points)))
    return kernel


def _samples(kind: str, n: int) -> list[float]:
    rng = random.Random(1)
    if kind == "millivolts":
        return [rng.uniform(0.0, 50.0) for _ in range(n)]
    if kind == "milliamps":
        return [rng.uniform(3.0, 21.5) for _ in range(n)]
    # a furnace temperature with noise and the odd spike
    return [1200.0 + 20.0 * math.sin(i / 500.0) + rng.gauss(0.0, 0.8)
            + (300.0 if rng.random() < 0.001 else 0.0) for i in range(n)]


def _best_time(module, factory, times, values, repeat: int) -> float:
    best = math.inf
    n = len(values)
    for _ in range(repeat):
        kernel = factory(module)
        buffers = (array("d", times), array("d", values), bytearray(n), bytearray(n))
        start = time.perf_counter()
        kernel.process(*buffers)
        best = min(best, time.perf_counter() - start)
    return best


def run(quick: bool = False) -> dict[str, float]:
    """Time every kernel in both implementations; print a table and return
    ``{kernel: pure time / Cython time}``."""
    n = 20_000 if quick else 100_000
    repeat = 3 if quick else 7
    cython = kernels.load("cython")
    pure = kernels.load("pure")
    times = [i * 0.1 for i in range(n)]
    ratios: dict[str, float] = {}
    print(f"{n} samples, best of {repeat}")
    print(f"{'kernel':<20} {'pure ms':>10} {'cython ms':>10} {'speedup':>9}  target {TARGET:.0f}x")
    for name, (factory, kind) in CASES.items():
        values = _samples(kind, n)
        t_pure = _best_time(pure, factory, times, values, max(1, repeat // 2))
        t_cython = _best_time(cython, factory, times, values, repeat)
        ratios[name] = t_pure / t_cython
        verdict = "ok" if ratios[name] >= TARGET else "BELOW"
        print(f"{name:<20} {t_pure * 1e3:>10.2f} {t_cython * 1e3:>10.3f} {ratios[name]:>8.0f}x  {verdict}")
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and repeats")
    print(run(parser.parse_args().quick))


if __name__ == "__main__":
    main()
