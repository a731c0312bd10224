"""End to end: load generators -> gateway -> Mosquitto -> a subscriber.

    python bench/bench_e2e.py [--quick]

* Throughput, at 10, 100 and 1,000 node identities: load-generator processes
  (bench_gateway's, which play nodes with 8 frames in flight and retransmit
  as the firmware does) send prebuilt frames of 32 measurements as fast as the
  gateway ACKs; the gateway (its own process, ``smemet gateway run``) verifies,
  commits, processes (a 3-step chain on every channel) and publishes each
  frame as one SenML-JSON message, QoS 1, to a local Mosquitto; a subscriber
  counts the measurements that arrive.  The clock runs from the first frame
  sent to the last measurement received.
* Latency at a fixed rate: one generator builds each frame when it sends it
  (readings stamped "now"); the subscriber takes receipt time minus the
  frame's build time (p50, p99).
* Gateway CPU seconds per 100,000 measurements (/proc) and peak RSS (VmHWM).

``run(quick)`` returns the figures for bench/run.py.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pathlib
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # the test harness (hil_tests/harness): broker, nodes

import bench_gateway  # noqa: E402  (its load generator and helpers)

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


class Counter:
    """An MQTT subscriber in a thread: counts measurements and, for frames
    stamped at send time, their latency."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.measurements = 0
        self.messages = 0
        self.last_arrival = 0.0
        self.latencies: list[float] = []
        self.track_latency = False
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{os.getpid()}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("bench/+", qos=1)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("subscriber could not subscribe")

    def _on_message(self, client, userdata, message) -> None:
        now = time.time()
        try:
            records = json.loads(message.payload)
        except ValueError:
            return
        if not isinstance(records, list):
            return  # the retained status message
        with self._lock:
            self.messages += 1
            self.measurements += len(records)
            self.last_arrival = now
            if self.track_latency and records:
                built = max(r["t"] for r in records) + 0.010  # SimNode stamps the last reading 10 ms before building
                self.latencies.append(now - built)

    def wait_for(self, measurements: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.measurements >= measurements:
                return True
            time.sleep(0.01)
        return False

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Setup:
    """Broker + gateway process in a temporary directory."""

    def __init__(self, directory: str, nodes: list[str], extra_config: str = "") -> None:
        from hil_tests.harness.broker import MosquittoBroker
        from hil_tests.harness.nodes import write_config

        self.broker = MosquittoBroker(pathlib.Path(directory) / "broker")
        self.broker.start()
        self.port = bench_gateway._free_port()  # noqa: SLF001
        extra = bench_gateway.CHAIN + route_table(self.broker.url) + '[log]\nlevel = "warning"\n' + extra_config
        # SMEMET_BENCH_OUTBOX: extra [outbox] settings to try (e.g. "commit_max_delay = 0.001")
        config = write_config(directory, nodes, udp_port=self.port, extra=extra,
                              outbox=os.environ.get("SMEMET_BENCH_OUTBOX", "").replace(";", "\n"))
        self.log_path = os.path.join(directory, "gateway.log")
        with open(self.log_path, "wb") as log:
            self.gateway = subprocess.Popen([sys.executable, "-m", "smemet.gateway", "run", "--config", config],
                                            stdout=log, stderr=log)
        self.counter = Counter(self.broker.port)
        deadline = time.monotonic() + 30
        while not os.path.exists(os.path.join(directory, "outbox.sqlite")) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        self.profiler = None
        if PROFILE:
            self.profiler = subprocess.Popen(
                ["py-spy", "record", "--pid", str(self.gateway.pid), "--rate", "250", "--nonblocking", "--gil",
                 "--format", PROFILE["format"], "--output", PROFILE["output"]],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)  # let it attach

    def close(self) -> int:
        if self.profiler is not None:
            self.profiler.send_signal(signal.SIGINT)  # writes the profile
            self.profiler.wait(60)
        self.counter.close()
        self.gateway.send_signal(signal.SIGTERM)
        try:
            code = self.gateway.wait(60)
        finally:
            self.broker.close()
        return code


def throughput(identities: int, frames_per_node: int, extra_config: str = "", watcher=None) -> dict:
    """``extra_config``: gateway.toml text to add; ``watcher``: started
    (``start()``) once the gateway runs and stopped (``stop()``) after, e.g.
    a web console page kept open (bench_web.py)."""
    generators = 2
    nodes = max(1, identities // generators)
    names = [bench_gateway._node_name(g, i) for g in range(generators) for i in range(nodes)]  # noqa: SLF001
    total_frames = len(names) * frames_per_node
    expected = total_frames * SAMPLES
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as directory:
        setup = Setup(directory, names, extra_config)
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
            arrived = setup.counter.wait_for(expected, timeout=600)
            elapsed = setup.counter.last_arrival - started
            user, system = (after - before for after, before in
                            zip(bench_gateway._cpu_split(setup.gateway.pid), cpu_before))  # noqa: SLF001
            cpu = user + system
            rss = _peak_rss_mb(setup.gateway.pid)
            for worker in workers:
                worker.join(30)
            received = setup.counter.measurements
        finally:
            if watcher is not None:
                watcher.stop()
            code = setup.close()
        if not arrived:
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


def _paced_sender(port: int, nodes: list[str], rate: float, seconds: float, done) -> None:
    """Frames built at the moment they are sent, at ``rate`` frames/s."""
    from hil_tests.harness.nodes import SimNode

    sims = [SimNode(name, channels=bench_gateway.CHANNELS) for name in nodes]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sent = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        due = int((time.monotonic() - start) * rate)
        while sent < due:
            frame = sims[sent % len(sims)].data_frame(samples=LATENCY_SAMPLES)
            try:
                sock.sendto(frame, ("127.0.0.1", port))
            except BlockingIOError:
                pass
            sent += 1
        try:
            while True:
                sock.recv(2048)  # drain ACKs
        except BlockingIOError:
            pass
        time.sleep(0.0005)
    done.put(sent)


def latency(rate: float, seconds: float) -> dict:
    names = [f"lat-{i:03d}" for i in range(100)]
    with tempfile.TemporaryDirectory(prefix="bench-e2e-lat-") as directory:
        setup = Setup(directory, names)
        try:
            setup.counter.track_latency = True
            context = multiprocessing.get_context("spawn")
            done = context.Queue()
            worker = context.Process(target=_paced_sender, args=(setup.port, names, rate, seconds, done))
            worker.start()
            sent = done.get(timeout=seconds + 120)
            worker.join(30)
            setup.counter.wait_for(sent * LATENCY_SAMPLES, timeout=60)
            latencies = sorted(setup.counter.latencies)
        finally:
            setup.close()
    if len(latencies) < 10:
        raise RuntimeError("too few frames arrived to measure latency")
    ms = [x * 1000 for x in latencies]
    return {
        "rate_frames_per_s": rate,
        "frames_sent": sent,
        "frames_received": len(ms),
        "p50_latency_ms": round(statistics.median(ms), 2),
        "p99_latency_ms": round(ms[int(0.99 * (len(ms) - 1))], 2),
        "max_latency_ms": round(ms[-1], 2),
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
    figures["gateway_rss_mb"] = max(r["gateway_rss_mb"] for k, r in figures.items() if k.startswith("nodes_"))
    lat = latency(rate=2000 if quick else 10000, seconds=5 if quick else 15)
    figures["latency"] = lat
    figures["p50_latency_ms"] = lat["p50_latency_ms"]
    figures["p99_latency_ms"] = lat["p99_latency_ms"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", metavar="FILE",
                        help="record the gateway with py-spy into FILE (.svg flame graph, .txt collapsed stacks, "
                             "else speedscope JSON)")
    parser.add_argument("--throughput", metavar="NODES:FRAMES", help="only this throughput run, e.g. 10:1000")
    parser.add_argument("--latency", metavar="RATE:SECONDS", help="only this latency run, e.g. 10000:10")
    args = parser.parse_args()
    if args.profile:
        fmt = {".svg": "flamegraph", ".txt": "raw"}.get(pathlib.Path(args.profile).suffix, "speedscope")
        PROFILE.update(output=args.profile, format=fmt)
    if args.throughput or args.latency:
        figures = {}
        if args.throughput:
            nodes, frames = map(int, args.throughput.split(":"))
            figures["throughput"] = throughput(nodes, frames)
        if args.latency:
            rate, seconds = map(float, args.latency.split(":"))
            figures["latency"] = latency(rate, seconds)
    else:
        figures = run(args.quick)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
