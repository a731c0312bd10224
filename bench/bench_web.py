"""What the web console costs the data path: end-to-end throughput
(bench_e2e's load generators -> gateway -> Mosquitto -> subscriber) with
the console off, and with it on and a page open and updating, in
alternating runs so drift on a shared machine hits both alike.

    python bench/bench_web.py [--quick]

"The page open" is what the browser does, from a thread of this process:
the overview's Server-Sent Events stream (gateway, nodes, waiting, routes,
Modbus documents every second) and a node page's stream, both read to the
end of every event.  (A real Chromium would also be a fair page, but on
two cores its own CPU would compete with the gateway and measure the
machine, not the console.)

Figures: each run's measurements/s and gateway CPU per 100k measurements;
the median of each side; ``throughput_ratio`` = on / off; ``noise`` = the
spread of the "off" runs ((max - min) / median), the yardstick the ratio is
judged against; and the console's own fold cost per frame, timed alone.
"""

from __future__ import annotations

import argparse
import http.client
import json
import pathlib
import statistics
import sys
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_e2e  # noqa: E402
import bench_gateway  # noqa: E402


class Page:
    """A console page kept open: reads two live streams to the end of every event."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.events = 0
        self.bytes = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._read, args=(path,), daemon=True) for path in (
            "/api/v1/events?view=overview", f"/api/v1/events?view=node&node={bench_gateway._node_name(0, 0)}")]  # noqa: SLF001

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _read(self, path: str) -> None:
        while not self._stop.is_set():
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                connection.request("GET", path)
                response = connection.getresponse()
                while not self._stop.is_set():
                    line = response.fp.readline()
                    if not line:
                        break
                    self.bytes += len(line)
                    if line.startswith(b"data: "):
                        json.loads(line[6:])  # as the page does
                        self.events += 1
                connection.close()
            except OSError:
                time.sleep(0.2)  # the gateway is starting: try again


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_pair(identities: int, frames: int) -> tuple[dict, dict]:
    off = bench_e2e.throughput(identities, frames, "[web]\nport = 0\n")
    port = _free_port()
    page = Page(port)
    on = bench_e2e.throughput(identities, frames, f"[web]\nport = {port}\n", watcher=page)
    on["page_events"] = page.events
    on["page_bytes"] = page.bytes
    return off, on


def fold_cost(frames: int = 20_000, nodes: int = 10) -> dict:
    """The console's per-frame work (ConsoleState.fold, in deliveries of 64
    frames as the loop hands them) timed alone, frames from ``nodes`` nodes
    in turn (10: as the end-to-end run; 64 or more: every frame of a
    delivery from another node, the worst case)."""
    from smemet.gateway.sinks.web.console import ConsoleState
    from smemet.gateway.spine import KIND_DATA, ProcessedFrame

    channels = bench_gateway.CHANNELS
    samples = bench_gateway.SAMPLES
    batch = []
    now = time.time()
    for i in range(frames):
        names = tuple(channels[j % len(channels)] for j in range(samples))
        times = tuple(now + i * 0.01 + j * 0.0001 for j in range(samples))
        batch.append(ProcessedFrame(i * samples + 1, i + 1, f"node-{i % nodes}", i, KIND_DATA, now, names, times,
                                    tuple(float(j) for j in range(samples)), ("Cel",) * samples, bytes(samples),
                                    (None,) * samples))
    state = ConsoleState(step=2.0)
    started = time.perf_counter()
    for k in range(0, frames, 64):
        state.fold(batch[k:k + 64])
    seconds = time.perf_counter() - started
    return {"frames": frames, "nodes": nodes, "measurements_per_frame": samples,
            "channels_per_frame": len(set(channels)), "us_per_frame": round(seconds / frames * 1e6, 2)}


def run(quick: bool = False) -> dict:
    identities, frames, pairs = (10, 300, 2) if quick else (10, 1000, 3)
    offs, ons = [], []
    for _ in range(pairs):
        off, on = run_pair(identities, frames)
        offs.append(off)
        ons.append(on)
    off_rates = [r["measurements_per_s"] for r in offs]
    on_rates = [r["measurements_per_s"] for r in ons]
    off_median, on_median = statistics.median(off_rates), statistics.median(on_rates)
    noise = (max(off_rates) - min(off_rates)) / off_median
    ratio = on_median / off_median
    return {
        "nodes": identities,
        "frames_per_node": frames,
        "off_measurements_per_s": off_rates,
        "on_measurements_per_s": on_rates,
        "off_cpu_s_per_100k": [r["gateway_cpu_s_per_100k"] for r in offs],
        "on_cpu_s_per_100k": [r["gateway_cpu_s_per_100k"] for r in ons],
        "page_events": [r["page_events"] for r in ons],
        "throughput_ratio": round(ratio, 3),
        "noise": round(noise, 3),
        "within_noise": abs(ratio - 1) <= max(noise, 0.02),
        "cpu_ratio": round(statistics.median(r["gateway_cpu_s_per_100k"] for r in ons)
                           / statistics.median(r["gateway_cpu_s_per_100k"] for r in offs), 3),
        "fold": fold_cost(5_000 if quick else 20_000),
        "fold_worst_case": fold_cost(5_000 if quick else 20_000, nodes=1000),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
