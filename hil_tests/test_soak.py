"""Soak: the delivery guarantee over a long run of random faults.

Opt-in (``pytest hil_tests -m soak`` or ``SMEMET_SOAK=1``); the length is
``SMEMET_SOAK_MINUTES`` (default 15).  Three nodes stream through a lossy,
duplicating, reordering proxy while a seeded schedule cuts node power,
SIGKILLs the gateway, restarts the broker and partitions the network; at the
end every reading must have arrived exactly once, in order."""

from __future__ import annotations

import os
import random
import time

import pytest

from smemet import scenarios


@pytest.mark.soak
def test_soak_random_faults_lose_nothing(bench, make_broker):
    minutes = float(os.environ.get("SMEMET_SOAK_MINUTES", "15"))
    rng = random.Random(int(os.environ.get("SMEMET_SOAK_SEED", "7")))
    broker = make_broker()
    sub = broker.subscriber("hil/soak/#").start()
    names = ["furnace-1", "ladle-2", "fan-3"]
    bench.add_node(names[0], scenarios.furnace_heatup(period_ms=250, duration=600.0), time_scale=2.0)
    bench.add_node(names[1], scenarios.ladle_cooling(period_ms=250, duration=600.0), time_scale=2.0)
    bench.add_node(names[2], scenarios.bearing_fault(period_ms=500, duration=600.0), time_scale=2.0)
    bench.start_gateway([{"name": "soak", "broker": broker.url, "topic_prefix": "hil/soak", "include": ["*"],
                          "format": "json", "client_id": "gw-soak"}])
    bench.power_on()
    bench.proxy.set(loss=0.05, duplicate=0.05, reorder=0.05, delay=(0.0, 0.03))

    deadline = time.monotonic() + minutes * 60
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(5.0, 15.0))
        fault = rng.choice(("power-cut", "gateway-crash", "broker-restart", "partition"))
        if fault == "power-cut":
            bench.power_cut(rng.choice(names))
        elif fault == "gateway-crash":
            bench.crash_gateway(down_seconds=rng.uniform(0.5, 3.0))
        elif fault == "broker-restart":
            broker.stop()
            bench.fault("broker-stop")
            time.sleep(rng.uniform(0.5, 3.0))
            broker.start()
        else:
            bench.proxy.partition(True)
            time.sleep(rng.uniform(0.5, 3.0))
            bench.proxy.partition(False)
    bench.proxy.clear()

    report = bench.check(sub, timeout=180)
    sub.stop()
    assert report.produced > 0
    assert report.delivered == report.produced
