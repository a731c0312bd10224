"""OPC UA server: gateway CPU and notification latency with one subscribed
client, and what the server costs the data path.

    python bench/bench_opcua.py [--quick]

* Load: a sender process plays nodes of 40 channels each, one frame per
  node per period, readings stamped when the frame is built: 5,000 channels
  at 1 Hz (125 nodes) and 50,000 channels at 0.1 Hz (1,250 nodes), i.e.
  5,000 measurements/s each.  The gateway is its own process (``smemet
  gateway run``, ``[opcua]`` on loopback, no other sink); one asyncua client
  (this process) subscribes to every channel (publishing interval 100 ms).
* Figures per scenario, over a measuring window after warm-up: the
  gateway's CPU share (user + system CPU seconds / wall seconds, of one
  core), the notification latency (client receipt - the reading's
  SourceTimestamp: UDP, verify, fsync'd commit, processing, the OPC UA
  update, the subscription's publishing interval) p50/p99, the
  notifications received against the measurements sent.
* Data path: bench_e2e's throughput run (10 nodes, 32 readings a frame, one
  senml route to Mosquitto) with and without ``[opcua]`` (server on, the
  address space updated, no client), alternating; the ratio of the medians.

``run(quick)`` returns the figures for bench/run.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))  # the test harness (hil_tests/harness)

import bench_e2e  # noqa: E402
import bench_gateway  # noqa: E402

CHANNELS_PER_NODE = 40
PUBLISHING_MS = 100
NAMESPACE = "urn:smemet-edge:measurements"


def _node(i: int) -> str:
    return f"u-{i:04d}"


def _sender(port: int, nodes: int, period: float, seconds: float, done) -> None:
    """Each node sends one frame per ``period``, spread evenly over it,
    readings stamped at build time."""
    from hil_tests.harness.nodes import node_key
    from smemet.protocol import cose, messages, senml

    keys = [node_key(_node(i)) for i in range(nodes)]
    kids = [_node(i).encode() for i in range(nodes)]
    names = [f"c{k:02d}" for k in range(CHANNELS_PER_NODE)]
    builder = senml.PackBuilder(CHANNELS_PER_NODE)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sent = 0
    seq = [0] * nodes
    start = time.monotonic()
    slot = period / nodes
    while time.monotonic() - start < seconds:
        due = int((time.monotonic() - start) / slot)
        while sent < due:
            i = sent % nodes
            now_ms = int(time.time() * 1000)
            builder.clear()
            for k, name in enumerate(names):
                builder.add(name, "Cel", 20.0 + (sent // nodes % 100) * 0.25 + k, now_ms)
            seq[i] += 1
            frame = cose.create(keys[i], kids[i], seq[i], messages.CT_SENML, builder.encode(now_ms, True))
            try:
                sock.sendto(frame, ("127.0.0.1", port))
            except BlockingIOError:
                pass
            sent += 1
        try:
            while True:
                sock.recv(2048)  # ACKs
        except BlockingIOError:
            pass
        time.sleep(0.001)
    done.put(sent)


class Gateway:
    def __init__(self, directory: str, nodes: list[str], extra: str) -> None:
        from hil_tests.harness.nodes import write_config

        self.udp = bench_gateway._free_port()  # noqa: SLF001
        self.opcua = bench_e2e_free_tcp()
        config = write_config(directory, nodes, udp_port=self.udp,
                              extra=f"[opcua]\nport = {self.opcua}\n{extra}\n[log]\nlevel = \"warning\"\n")
        self.log = open(os.path.join(directory, "gateway.log"), "wb")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen([sys.executable, "-m", "smemet.gateway", "run", "--config", config],
                                        stdout=self.log, stderr=self.log)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(60)
        finally:
            self.log.close()


def bench_e2e_free_tcp() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Latencies:
    def __init__(self) -> None:
        self.values: list[float] = []
        self.recording = False
        self.count = 0

    def datachange_notification(self, node, value, data) -> None:
        if not self.recording:
            return
        self.count += 1
        stamp = data.monitored_item.Value.SourceTimestamp
        if stamp is not None:
            self.values.append(time.time() - stamp.timestamp())


async def _client(url: str, node_names: list[str], ready_timeout: float, window: float, pid: int,
                  started) -> dict:
    from asyncua import Client, ua

    async with Client(url, timeout=120, watchdog_intervall=10.0) as client:
        idx = await client.get_namespace_index(NAMESPACE)
        last = client.get_node(ua.NodeId(f"{node_names[-1]}/c{CHANNELS_PER_NODE - 1:02d}", idx))
        deadline = time.monotonic() + ready_timeout
        while True:  # every variable exists once each node sent its first frame
            try:
                if (await last.read_data_value(raise_on_bad_status=False)).StatusCode.is_good():
                    break
            except ua.UaStatusCodeError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the address space did not fill in time; see gateway.log")
            await asyncio.sleep(0.5)
        handler = Latencies()
        params = ua.CreateSubscriptionParameters(RequestedPublishingInterval=PUBLISHING_MS,
                                                 RequestedLifetimeCount=10_000, RequestedMaxKeepAliveCount=100,
                                                 MaxNotificationsPerPublish=5000, PublishingEnabled=True)
        subscription = await client.create_subscription(params, handler)
        nodes = [client.get_node(ua.NodeId(f"{n}/c{k:02d}", idx)) for n in node_names
                 for k in range(CHANNELS_PER_NODE)]
        subscribe_started = time.monotonic()
        for i in range(0, len(nodes), 2000):
            await subscription.subscribe_data_change(nodes[i:i + 2000], queuesize=1)
        subscribe_seconds = time.monotonic() - subscribe_started
        await asyncio.sleep(3.0)  # the initial values go by
        handler.recording = True
        cpu_before, wall_before = sum(bench_gateway._cpu_split(pid)), time.monotonic()  # noqa: SLF001
        await asyncio.sleep(window)
        cpu = sum(bench_gateway._cpu_split(pid)) - cpu_before  # noqa: SLF001
        wall = time.monotonic() - wall_before
        handler.recording = False
        return {"latencies": handler.values, "notifications": handler.count, "cpu": cpu, "wall": wall,
                "subscribe_seconds": subscribe_seconds}


def scenario(channels: int, period: float, window: float) -> dict:
    nodes = channels // CHANNELS_PER_NODE
    names = [_node(i) for i in range(nodes)]
    with tempfile.TemporaryDirectory(prefix="bench-opcua-") as directory:
        gateway = Gateway(directory, names, "")
        try:
            _wait_listening(gateway.opcua)
            context = multiprocessing.get_context("spawn")
            done = context.Queue()
            run_for = window + 3 * period + 90.0
            sender = context.Process(target=_sender, args=(gateway.udp, nodes, period, run_for, done))
            sender.start()
            try:
                result = asyncio.run(_client(f"opc.tcp://127.0.0.1:{gateway.opcua}", names, 60 + 3 * period,
                                             window, gateway.process.pid, None))
            finally:
                sender.terminate()
                sender.join(10)
        finally:
            gateway.close()
    ms = sorted(x * 1000 for x in result["latencies"])
    if len(ms) < 10:
        raise RuntimeError("too few notifications to measure latency")
    expected = channels / period * result["wall"]
    return {
        "channels": channels,
        "period_s": period,
        "updates_per_s": round(channels / period),
        "window_s": round(result["wall"], 1),
        "gateway_cpu_share": round(result["cpu"] / result["wall"], 3),
        "notifications": result["notifications"],
        "notifications_per_expected": round(result["notifications"] / expected, 3),
        "p50_notification_ms": round(statistics.median(ms), 1),
        "p99_notification_ms": round(ms[int(0.99 * (len(ms) - 1))], 1),
        "max_notification_ms": round(ms[-1], 1),
        "subscribe_s": round(result["subscribe_seconds"], 1),
    }


def _wait_listening(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError("the gateway's OPC UA server did not start; see gateway.log")


def data_path(rounds: int, frames_per_node: int) -> dict:
    """bench_e2e throughput with and without the OPC UA server, alternating."""
    off, on = [], []
    for _ in range(rounds):
        off.append(bench_e2e.throughput(10, frames_per_node)["measurements_per_s"])
        on.append(bench_e2e.throughput(10, frames_per_node, extra=f"[opcua]\nport = {bench_e2e_free_tcp()}\n")
                  ["measurements_per_s"])
    return {
        "measurements_per_s_without": off,
        "measurements_per_s_with": on,
        "ratio_with_to_without": round(statistics.median(on) / statistics.median(off), 3),
    }


def run(quick: bool = False) -> dict:
    window = 10.0 if quick else 30.0
    figures = {
        "channels_5000_at_1hz": scenario(5000, 1.0, window),
        "channels_50000_at_0.1hz": scenario(50_000, 10.0, window),
        "data_path": data_path(1 if quick else 2, 200 if quick else 1500),
    }
    figures["gateway_cpu_share_5000_1hz"] = figures["channels_5000_at_1hz"]["gateway_cpu_share"]
    figures["p99_notification_ms_5000_1hz"] = figures["channels_5000_at_1hz"]["p99_notification_ms"]
    figures["gateway_cpu_share_50000_0.1hz"] = figures["channels_50000_at_0.1hz"]["gateway_cpu_share"]
    figures["p99_notification_ms_50000_0.1hz"] = figures["channels_50000_at_0.1hz"]["p99_notification_ms"]
    figures["data_path_ratio"] = figures["data_path"]["ratio_with_to_without"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--scenario", metavar="CHANNELS:PERIOD", help="only this load, e.g. 5000:1")
    parser.add_argument("--data-path", action="store_true", help="only the with/without throughput comparison")
    args = parser.parse_args()
    if args.scenario:
        channels, period = args.scenario.split(":")
        figures = scenario(int(channels), float(period), 10.0 if args.quick else 30.0)
    elif args.data_path:
        figures = data_path(1 if args.quick else 2, 200 if args.quick else 1500)
    else:
        figures = run(args.quick)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
