"""Registers per second the Modbus pollers read.

    python bench/bench_modbus.py [--quick]

Two cases, each through ``run_pollers`` end to end (request, decode, one
``Reading`` per register, submit to an in-memory sink), against pymodbus'
own servers as instruments in the same process and event loop:

* **tcp** — one instrument with 1000 uint16 holding registers over one
  Modbus TCP connection on loopback (8 merged requests of <= 125 registers
  per poll), polled back to back;
* **rtu** — four instruments of 250 registers each on one serial bus: a
  pseudo-terminal pair (no baud-rate limit, so this is the software ceiling;
  a real RS-485 line at 115200 baud carries at most ~4 000 registers/s);
* **tcp-unmerged** — the tcp case with ``max_registers = 1`` (one request
  per register, what a naive poller does), to show what merging buys.

Returns ``{case: registers_per_second, ...}`` plus ``merge_speedup``.
Both ends share one process (and the 2 cores with everything else), so the
figures are a floor for the gateway alone.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from prometheus_client import CollectorRegistry

from smemet.gateway.modbus import parse_modbus, run_pollers
from smemet.gateway.modbus.simulate import PtyCable, SimulatedInstrument, free_port, start_rtu, start_tcp


class CountingSink:
    def __init__(self) -> None:
        self.readings = 0

    async def submit(self, node, readings) -> int:
        self.readings += len(readings)
        return self.readings


def _instrument(unit: int, registers: int) -> SimulatedInstrument:
    register_map = [{"channel": f"r{i}", "table": "holding", "address": i, "type": "uint16"}
                    for i in range(registers)]
    instrument = SimulatedInstrument(unit, register_map, holding=registers, input=1)
    instrument.set_registers("holding", 0, list(range(registers)))
    return instrument


async def _measure(devices: list[dict], seconds: float) -> float:
    config = parse_modbus({"devices": devices}, "bench")
    registry, sink, stop = CollectorRegistry(), CountingSink(), asyncio.Event()
    task = asyncio.create_task(run_pollers(config, sink, stop, registry))
    await asyncio.sleep(min(0.5, seconds / 4))  # connect and warm up
    names = [d["name"] for d in devices]

    def registers() -> float:
        return sum(registry.get_sample_value("smemet_modbus_registers_read_total", {"device": n}) or 0.0
                   for n in names)

    start_count, start = registers(), time.perf_counter()
    await asyncio.sleep(seconds)
    rate = (registers() - start_count) / (time.perf_counter() - start)
    stop.set()
    await task
    failures = sum(s.value for m in registry.collect() for s in m.samples
                   if s.name == "smemet_modbus_poll_failures_total")
    if failures:
        raise RuntimeError(f"{failures:.0f} failed requests during the benchmark")
    return rate


async def _tcp(seconds: float, max_registers: int = 125, registers: int = 1000) -> float:
    instrument = _instrument(1, registers)
    port = free_port()
    server = await start_tcp([instrument], port)
    try:
        device = instrument.config("bench-tcp", host="127.0.0.1", port=port, period=0.001, timeout=2.0,
                                   max_registers=max_registers)
        return await _measure([device], seconds)
    finally:
        await server.shutdown()


async def _rtu(seconds: float) -> float:
    cable = PtyCable().start()
    instruments = [_instrument(unit, 250) for unit in (1, 2, 3, 4)]
    server = await start_rtu(instruments, cable.device_path, baudrate=115200)
    try:
        devices = [inst.config(f"bench-rtu-{inst.unit}", transport="rtu", serial_port=cable.client_path,
                               baudrate=115200, parity="N", period=0.001, timeout=2.0)
                   for inst in instruments]
        return await _measure(devices, seconds)
    finally:
        await server.shutdown()
        cable.close()


async def _run(quick: bool) -> dict:
    seconds = 1.0 if quick else 5.0
    results = {
        "tcp": await _tcp(seconds),
        "rtu": await _rtu(seconds),
        "tcp-unmerged": await _tcp(seconds, max_registers=1, registers=200),
    }
    results["merge_speedup"] = results["tcp"] / results["tcp-unmerged"]
    return results


def run(quick: bool = False) -> dict:
    """Measure and return ``{case: registers per second, "merge_speedup": ratio}``."""
    return asyncio.run(_run(quick))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 s per case instead of 5 s")
    results = run(parser.parse_args().quick)
    print(f"{'case':<14} {'registers/s':>12}")
    for case in ("tcp", "rtu", "tcp-unmerged"):
        print(f"{case:<14} {results[case]:>12,.0f}")
    print(f"merging contiguous registers: {results['merge_speedup']:.1f}x the registers/s of one request each")


if __name__ == "__main__":
    main()
