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
judged against.  Because a shared machine's noise can hide a few per cent,
the console's own costs are also timed alone, in CPU seconds (other load
does not count): ``fold`` (the sink's work per frame), ``delivery_path``
(its delivery loop reading a real outbox plus the fold, per frame: compare
with the gateway's CPU per frame end to end, ~300 us for 32 measurements)
and ``page_update_*`` (building every document of one live update).
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
    off = bench_e2e.throughput(identities, frames, extra="[web]\nport = 0\n")
    port = _free_port()
    page = Page(port)
    on = bench_e2e.throughput(identities, frames, extra=f"[web]\nport = {port}\n", watcher=page)
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


def _frames(count: int, nodes: int, first_id: int = 1):
    from smemet.gateway.spine import KIND_DATA, ProcessedFrame

    channels, samples, now = bench_gateway.CHANNELS, bench_gateway.SAMPLES, time.time()
    out = []
    for i in range(count):
        names = tuple(channels[j % len(channels)] for j in range(samples))
        times = tuple(now + i * 0.01 + j * 0.0001 for j in range(samples))
        out.append(ProcessedFrame(first_id + i * samples, i + 1, f"node-{i % nodes}", i, KIND_DATA, now, names, times,
                                  tuple(float(j) for j in range(samples)), ("Cel",) * samples, bytes(samples),
                                  (None,) * samples))
    return out


def loop_cost(frames: int = 20_000, nodes: int = 10, chunk: int = 64) -> dict:
    """CPU the console's whole delivery path adds per frame -- its delivery
    loop reading the outbox's newest frames, the sink folding them -- as the
    gateway runs it: frames written to a real outbox in processing's chunks,
    the loop keeping up.  process_time() with the console's loop minus
    without, so other load on the machine does not count."""
    import asyncio
    import tempfile

    from smemet.gateway.delivery import make_loops, run_loops
    from smemet.gateway.outbox import Outbox
    from smemet.gateway.sinks.web.config import WebConfig
    from smemet.gateway.sinks.web.sink import WebSink

    batch = _frames(frames, nodes)

    async def once(with_console: bool) -> float:
        with tempfile.TemporaryDirectory(prefix="bench-web-") as directory:
            outbox = Outbox(f"{directory}/outbox.sqlite", 2**31)
            outbox.bind_loop(asyncio.get_running_loop())
            stop = asyncio.Event()
            loops = make_loops([WebSink(WebConfig(), status=None)], outbox) if with_console else []
            runner = asyncio.create_task(run_loops(loops, stop))
            await asyncio.sleep(0.1)
            started = time.process_time()
            for k in range(0, frames, chunk):
                part = batch[k:k + chunk]
                outbox.write_processed(part, part[-1].frame_id)
                outbox.notify()
                await asyncio.sleep(0)
            while loops and loops[0].state.cursor < outbox.last_measurement_id:
                await asyncio.sleep(0.001)
            spent = time.process_time() - started
            stop.set()
            await runner
            outbox.close()
            return spent

    async def measure() -> tuple[float, float]:
        without = min([await once(False) for _ in range(3)])
        with_console = min([await once(True) for _ in range(3)])
        return without, with_console

    without, with_console = asyncio.run(measure())
    return {"frames": frames, "nodes": nodes, "cpu_s_without": round(without, 3),
            "cpu_s_with_console": round(with_console, 3),
            "us_per_frame": round((with_console - without) / frames * 1e6, 2)}


def tick_cost(nodes: int) -> dict:
    """CPU of one live update of an open overview page (every document the
    stream sends each second), with ``nodes`` registered nodes."""
    from smemet.gateway.sinks.web.activity import Activity
    from smemet.gateway.sinks.web.config import WebConfig
    from smemet.gateway.sinks.web.console import ConsoleState
    from smemet.gateway.sinks.web.server import _WAITING
    from smemet.gateway.sinks.web.views import NodeQuery, Views
    import orjson

    class Status:  # the figures GatewayStatus gives, for ``nodes`` nodes that report
        gateway_id, version, started_at, uptime, native = "bench", "0", time.time(), 1.0, "cython"
        storage_full, storage_full_reason, backlog_frames, ingest_paused = False, "", 0, False
        frames_stored = measurements_processed = 0

        def __init__(self):
            from smemet.gateway.status import NodeStatus

            now = time.time()
            self._nodes = [NodeStatus(f"node-{i}", True, now, "udp", "127.0.0.1:5000", {}, True, True)
                           for i in range(nodes)]

        def outbox(self):
            from smemet.gateway.outbox import OutboxStats
            return OutboxStats(0, 0, 0, 1, 0, 0, 0, {})

        def rejects(self):
            return {}

        def nodes(self):
            return self._nodes

        def last_seen(self):
            return {n.node: n.last_seen for n in self._nodes}

        def sinks(self):
            return []

        def modbus_devices(self):
            return []

        def chain(self, node, channel):
            return []

    status = Status()
    console = ConsoleState(step=2.0)
    console.fold(_frames(nodes, nodes))
    views = Views(WebConfig(), status, console, Activity(status))
    query = NodeQuery()
    repeats = 20
    started = time.process_time()
    for _ in range(repeats):
        views._rows = None  # noqa: SLF001 - each update builds everything anew, as once a second
        views._shared.clear()  # noqa: SLF001
        for document in (views.gateway(), views.nodes(query), views.nodes(_WAITING), views.routes(), views.modbus()):
            orjson.dumps(document)
    return {"nodes": nodes, "ms_per_update": round((time.process_time() - started) / repeats * 1000, 2)}


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
        "delivery_path": loop_cost(5_000 if quick else 20_000),
        "page_update_10_nodes": tick_cost(10),
        "page_update_1000_nodes": tick_cost(1000),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
