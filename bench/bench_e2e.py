"""End to end: load generators -> gateway -> Mosquitto -> a subscriber.

    python bench/bench_e2e.py [--quick]

* Throughput, at 10, 100 and 1,000 node identities: load-generator processes
  (bench_gateway's, which play nodes with 8 frames in flight and retransmit
  as the firmware does) send prebuilt frames of 32 measurements as fast as the
  gateway ACKs; the gateway (its own process, ``smemet gateway run``) verifies,
  commits, processes (a 3-step chain on every channel) and publishes each
  frame as one SenML-JSON message, QoS 1, to a local Mosquitto; a subscriber
  (``mosquitto_sub``, see subscriber.py) stamps each message on receipt.  The
  clock runs from the first frame sent to the last message received.  The
  10-node run is repeated with the pure-Python build (``SMEMET_PUREPYTHON=1``)
  for ``e2e_cython_vs_pure`` (ratio of gateway CPU per measurement).
* Latency at a fixed rate (10,000 frames/s of 4 readings, 15 s): frames built
  before the clock starts and sent on a schedule; latency is the receipt
  time minus the frame's send time (p50, p99), and every frame must arrive.
* Overload: 1,000 nodes offer 3x the knee (the 1,000-node throughput) for
  60 s, retransmitting what is not ACKed; the delivered rate in every 5 s
  window against the knee, the gateway's peak RSS, the kernel's drops (from
  the gateway's own metric) and ``lost_after_ack``: ACKed frames that were
  never delivered (must be 0).
* Gateway CPU seconds per 100,000 measurements (/proc) and peak RSS (VmHWM).

``run(quick)`` returns the figures for bench/run.py.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import urllib.request
import os
import pathlib
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # the test harness (hil_tests/harness): broker, nodes

import bench_gateway  # noqa: E402  (its load generator and helpers)
import loadgen  # noqa: E402
from subscriber import Subscriber  # noqa: E402

SAMPLES = bench_gateway.SAMPLES
LATENCY_SAMPLES = 4
PROFILE: dict = {}  # {"output": path, "format": ...} set by --profile: py-spy records the gateway


def route_table(broker_url: str) -> str:
    return (
        "[[routes]]\n"
        'name = "bench"\n'
        f'broker = "{broker_url}"\n'
        'topic_prefix = "bench"\n'
        'include = ["*"]\n'
        'format = "senml"\n'
        "max_in_flight = 1000\n"
    )


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Setup:
    """Broker + subscriber + gateway process in a temporary directory."""

    def __init__(self, directory: str, nodes: list[str], *, pure: bool = False, metrics: bool = False,
                 extra: str = "") -> None:
        from hil_tests.harness.broker import MosquittoBroker
        from hil_tests.harness.nodes import write_config

        self.broker = MosquittoBroker(pathlib.Path(directory) / "broker")
        self.broker.start()
        self.subscriber = Subscriber(self.broker.port, "bench/+", os.path.join(directory, "received.txt"))
        self.port = bench_gateway._free_port()  # noqa: SLF001
        self.metrics_port = _free_tcp_port() if metrics else 0
        extra = bench_gateway.CHAIN + route_table(self.broker.url) + '[log]\nlevel = "warning"\n' + extra
        # settings to try, ";" between lines: SMEMET_BENCH_OUTBOX (e.g. "commit_max_delay = 0.001"),
        # SMEMET_BENCH_UDP ([ingest.udp], e.g. 'receive_buffer = "2MiB"'), SMEMET_BENCH_GATEWAY ([gateway])
        if os.environ.get("SMEMET_BENCH_GATEWAY"):
            extra += "[gateway]\n" + os.environ["SMEMET_BENCH_GATEWAY"].replace(";", "\n") + "\n"
        config = write_config(directory, nodes, udp_port=self.port, extra=extra, metrics_port=self.metrics_port,
                              outbox=os.environ.get("SMEMET_BENCH_OUTBOX", "").replace(";", "\n"),
                              udp_extra=os.environ.get("SMEMET_BENCH_UDP", "").replace(";", "\n"))
        self.log_path = os.path.join(directory, "gateway.log")
        env = dict(os.environ, SMEMET_PUREPYTHON="1" if pure else "0")
        with open(self.log_path, "wb") as log:
            self.gateway = subprocess.Popen([sys.executable, "-m", "smemet.gateway", "run", "--config", config],
                                            stdout=log, stderr=log, env=env)
        self._wait_online(directory)
        self.profiler = None
        if PROFILE:
            self.profiler = subprocess.Popen(
                ["py-spy", "record", "--pid", str(self.gateway.pid), "--rate", "250", *PROFILE.get("flags", ["--nonblocking", "--gil"]),
                 "--format", PROFILE["format"], "--output", PROFILE["output"]],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)  # let it attach

    def _wait_online(self, directory: str) -> None:
        """Until the gateway's retained status reached the subscriber: the
        route is connected and the subscription is in place."""
        received = os.path.join(directory, "received.txt")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.gateway.poll() is not None:
                raise RuntimeError(f"gateway exited {self.gateway.returncode}: {_tail(self.log_path)}")
            with open(received, "rb") as f:
                if b"online" in f.read():
                    return
            time.sleep(0.05)
        raise RuntimeError(f"the gateway's route did not come online: {_tail(self.log_path)}")

    def metric(self, name: str) -> float | None:
        """One sample from the gateway's /metrics endpoint."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return None

    def close(self) -> tuple[int, list]:
        """Stop everything; the gateway's exit code and the messages received."""
        if self.profiler is not None:
            self.profiler.send_signal(signal.SIGINT)  # writes the profile
            self.profiler.wait(60)
        self.gateway.send_signal(signal.SIGTERM)
        try:
            code = self.gateway.wait(60)
        finally:
            messages = self.subscriber.close()
            self.broker.close()
        return code, messages


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: str) -> str:
    with open(path, errors="replace") as f:
        return " | ".join(f.read().strip().splitlines()[-3:])


def _spawn(target, *args):
    context = multiprocessing.get_context("spawn")
    ready, start, results = context.Queue(), context.Event(), context.Queue()
    process = context.Process(target=target, args=args + (ready, start, results))
    process.start()
    return process, ready, start, results


def throughput(identities: int, frames_per_node: int, pure: bool = False, extra: str = "", watcher=None) -> dict:
    """``extra``: gateway.toml text to add (another sink, e.g. bench_opcua's
    ``[opcua]``); ``watcher``: started (``start()``) once the gateway runs
    and stopped (``stop()``) after, e.g. a web console page kept open
    (bench_web.py)."""
    generators = 2
    nodes = max(1, identities // generators)
    names = [bench_gateway._node_name(g, i) for g in range(generators) for i in range(nodes)]  # noqa: SLF001
    total_frames = len(names) * frames_per_node
    expected = total_frames * SAMPLES
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as directory:
        setup = Setup(directory, names, pure=pure, extra=extra)
        try:
            if watcher is not None:
                watcher.start()
            context = multiprocessing.get_context("spawn")
            start, done = context.Event(), context.Queue()
            workers = [context.Process(target=bench_gateway._generator,  # noqa: SLF001
                                       args=(g, nodes, frames_per_node, setup.port, start, done, None))
                       for g in range(generators)]
            for worker in workers:
                worker.start()
            for _ in workers:
                done.get(timeout=300)  # frames built
            cpu_before = bench_gateway._cpu_split(setup.gateway.pid)  # noqa: SLF001
            started = time.time()
            start.set()
            arrived = setup.subscriber.wait_for(total_frames, timeout=600)
            elapsed = setup.subscriber.last_arrival - started
            user, system = (after - before for after, before in
                            zip(bench_gateway._cpu_split(setup.gateway.pid), cpu_before))  # noqa: SLF001
            cpu = user + system
            rss = _peak_rss_mb(setup.gateway.pid)
            for worker in workers:
                worker.join(30)
        finally:
            if watcher is not None:
                watcher.stop()
            code, messages = setup.close()
        received = sum(m.measurements for m in messages)
        if not arrived or received < expected:
            raise RuntimeError(f"{identities} nodes: {received} of {expected} measurements arrived; see the gateway log")
        if code != 0:
            raise RuntimeError(f"gateway exited {code}")
    return {
        "nodes": len(names),
        "frames": total_frames,
        "measurements": expected,
        "measurements_received": received,
        "seconds": round(elapsed, 3),
        "frames_per_s": round(total_frames / elapsed),
        "measurements_per_s": round(expected / elapsed),
        "gateway_cpu_s_per_100k": round(cpu / expected * 100_000, 3),
        "gateway_system_cpu_s_per_100k": round(system / expected * 100_000, 3),
        "gateway_rss_mb": round(rss, 1),
    }


def latency(rate: float, seconds: float) -> dict:
    names = [f"lat-{i:03d}" for i in range(100)]
    with tempfile.TemporaryDirectory(prefix="bench-e2e-lat-") as directory:
        setup = Setup(directory, names)
        try:
            sender, ready, start, results = _spawn(loadgen.paced, setup.port, names, LATENCY_SAMPLES, rate, seconds)
            total = ready.get(timeout=300)  # frames built
            cpu_before = bench_gateway._cpu_split(setup.gateway.pid)  # noqa: SLF001
            start.set()
            report = results.get(timeout=seconds + 120)
            sender.join(30)
            setup.subscriber.wait_for(total, timeout=60)
            user, system = (after - before for after, before in
                            zip(bench_gateway._cpu_split(setup.gateway.pid), cpu_before))  # noqa: SLF001
        finally:
            code, messages = setup.close()
    if code != 0:
        raise RuntimeError(f"gateway exited {code}")
    sent_at = {(node, index): t for node, index, t in report["sent_at"]}
    latencies = sorted((m.received - sent_at[m.node, loadgen.frame_index(m.first_time)]) * 1000 for m in messages
                       if (m.node, loadgen.frame_index(m.first_time)) in sent_at)
    if len(latencies) < 10:
        raise RuntimeError("too few frames arrived to measure latency")
    distinct = len({(m.node, loadgen.frame_index(m.first_time)) for m in messages})
    return {
        "rate_frames_per_s": rate,
        "seconds": seconds,
        "frames_sent": report["sent"],
        "frames_received": distinct,
        "every_frame_delivered": distinct == report["sent"] == total,
        "sender_blocked": report["blocked"],
        "gateway_cpu_us_per_frame": round((user + system) / total * 1e6, 1),
        "gateway_system_cpu_us_per_frame": round(system / total * 1e6, 1),
        "p50_latency_ms": round(statistics.median(latencies), 2),
        "p99_latency_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 2),
        "max_latency_ms": round(latencies[-1], 2),
    }


def overload(knee_measurements_per_s: float, factor: float, seconds: float, identities: int = 1000) -> dict:
    """``factor`` x the knee offered for ``seconds`` from ``identities`` nodes."""
    generators = 2
    knee_frames = knee_measurements_per_s / SAMPLES
    offered = knee_frames * factor
    names = [f"ovl-{g}-{i:03d}" for g in range(generators) for i in range(identities // generators)]
    groups = [names[g::generators] for g in range(generators)]
    window = 5.0
    with tempfile.TemporaryDirectory(prefix="bench-e2e-ovl-") as directory:
        setup = Setup(directory, names, metrics=True)
        try:
            spawned = [_spawn(loadgen.overload, setup.port, group, SAMPLES, offered / generators, seconds)
                       for group in groups]
            for _process, ready, _start, _results in spawned:
                ready.get(timeout=120)
            began = time.time()
            cpu_before = sum(bench_gateway._cpu_split(setup.gateway.pid))  # noqa: SLF001
            for _process, _ready, start, _results in spawned:
                start.set()
            reports = [results.get(timeout=seconds + 120) for _process, _ready, _start, results in spawned]
            # the gateway's share of a core while offered the load: ~1 is saturated, well below is underfed
            cpu_share = (sum(bench_gateway._cpu_split(setup.gateway.pid)) - cpu_before) / (time.time() - began)  # noqa: SLF001
            for process, *_ in spawned:
                process.join(30)
            acked = {pair for report in reports for pair in report["acked"]}
            setup.subscriber.wait_for(len(acked), timeout=300)  # everything ACKed must come out
            setup.subscriber.wait_quiet(2.0, timeout=60)
            rss = _peak_rss_mb(setup.gateway.pid)
            drops = setup.metric("smemet_gateway_udp_receive_drops")
            paused = setup.metric("smemet_gateway_ingest_pauses_total")
            gateway_duplicates = setup.metric("smemet_gateway_frames_duplicate_total")
        finally:
            code, messages = setup.close()
    if code != 0:
        raise RuntimeError(f"gateway exited {code}")
    delivered = {}
    for m in messages:
        delivered.setdefault((m.node, loadgen.frame_index(m.first_time) + 1), m.received)  # frame k is seq k+1
    lost = acked - delivered.keys()
    # The delivered rate in each whole window of the offered period.
    rates = []
    edge = began
    while edge + window <= began + seconds:
        count = sum(1 for m in messages if edge <= m.received < edge + window)
        rates.append(count * SAMPLES / window)
        edge += window
    counts = {key: sum(r["counts"][key] for r in reports) for key in reports[0]["counts"] if key != "seconds"}
    return {
        "nodes": len(names),
        "seconds": seconds,
        "knee_measurements_per_s": round(knee_measurements_per_s),
        "offered_frames_per_s_target": round(offered),
        "offered_frames_per_s": round((counts["new"] + counts["retransmitted"]) / seconds),
        "new_frames": counts["new"],
        "retransmissions": counts["retransmitted"],
        "acked_frames": len(acked),
        "delivered_frames": len(delivered),
        "duplicate_messages": len(messages) - len(delivered),
        "lost_after_ack": len(lost),
        "delivered_measurements_per_s_by_window": [round(r) for r in rates],
        "delivered_fraction_min": round(min(rates) / knee_measurements_per_s, 3) if rates else None,
        "delivered_fraction_mean": round(statistics.mean(rates) / knee_measurements_per_s, 3) if rates else None,
        "kernel_drops": drops,
        "ingest_pauses": paused,
        "duplicates_at_gateway": gateway_duplicates,
        "gateway_cpu_share": round(cpu_share, 2),  # retransmissions that arrived after their frame did
        "gateway_peak_rss_mb": round(rss, 1),
    }


def run(quick: bool = False) -> dict:
    sizes = {10: 200, 1000: 4} if quick else {10: 1500, 100: 150, 1000: 20}
    figures: dict = {"samples_per_frame": SAMPLES}
    best = None
    for identities, frames_per_node in sizes.items():
        result = throughput(identities, frames_per_node)
        figures[f"nodes_{identities}"] = result
        if best is None or result["measurements_per_s"] > best["measurements_per_s"]:
            best = result
    figures["measurements_per_s"] = best["measurements_per_s"]
    figures["frames_per_s"] = best["frames_per_s"]
    figures["gateway_cpu_s_per_100k"] = best["gateway_cpu_s_per_100k"]
    figures["gateway_cpu_s_per_100k_max"] = max(figures[f"nodes_{n}"]["gateway_cpu_s_per_100k"] for n in sizes)
    pure = throughput(10, sizes[10], pure=True)
    figures["pure_nodes_10"] = pure
    figures["e2e_cython_vs_pure"] = round(pure["gateway_cpu_s_per_100k"] / figures["nodes_10"]["gateway_cpu_s_per_100k"], 2)
    lat = latency(rate=2000 if quick else 10000, seconds=5 if quick else 15)
    figures["latency"] = lat
    figures["p50_latency_ms"] = lat["p50_latency_ms"]
    figures["p99_latency_ms"] = lat["p99_latency_ms"]
    knee = figures["nodes_1000"]["measurements_per_s"]
    over = overload(knee, 3.0, 10 if quick else 60)
    figures["overload"] = over
    figures["overload_delivered_fraction"] = over["delivered_fraction_min"]
    figures["overload_peak_rss_mb"] = over["gateway_peak_rss_mb"]
    figures["lost_after_ack"] = over["lost_after_ack"]
    figures["gateway_rss_mb"] = max(r["gateway_rss_mb"] for k, r in figures.items()
                                    if k.startswith("nodes_") or k.startswith("pure_nodes_"))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", metavar="FILE",
                        help="record the gateway with py-spy into FILE (.svg flame graph, .txt collapsed stacks, "
                             "else speedscope JSON)")
    parser.add_argument("--throughput", metavar="NODES:FRAMES", help="only this throughput run, e.g. 10:1000")
    parser.add_argument("--latency", metavar="RATE:SECONDS", help="only this latency run, e.g. 10000:10")
    parser.add_argument("--overload", metavar="KNEE:FACTOR:SECONDS",
                        help="only an overload run: FACTOR x KNEE measurements/s for SECONDS, e.g. 90000:3:20")
    parser.add_argument("--pure", action="store_true", help="the throughput run with the pure-Python build")
    args = parser.parse_args()
    if args.profile:
        fmt = {".svg": "flamegraph", ".txt": "raw"}.get(pathlib.Path(args.profile).suffix, "speedscope")
        PROFILE.update(output=args.profile, format=fmt)
        if os.environ.get("SMEMET_PROFILE_FLAGS"):  # e.g. "--native" (all threads, C frames too; pauses the process per sample) instead of "--nonblocking --gil"
            PROFILE["flags"] = os.environ["SMEMET_PROFILE_FLAGS"].split()
    if args.throughput or args.latency or args.overload:
        figures = {}
        if args.throughput:
            nodes, frames = map(int, args.throughput.split(":"))
            figures["throughput"] = throughput(nodes, frames, args.pure)
        if args.latency:
            rate, seconds = map(float, args.latency.split(":"))
            figures["latency"] = latency(rate, seconds)
        if args.overload:
            knee, factor, seconds = map(float, args.overload.split(":"))
            figures["overload"] = overload(knee, factor, seconds)
    else:
        figures = run(args.quick)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
