"""Gateway throughput: UDP ingest -> verify -> durable outbox (group commit,
fsync) -> processing chains -> measurement rows, on one core.

    python bench/bench_gateway.py [--quick] [--impl cython|pure|both]

The gateway runs as its own process (``python -m smemet.gateway run``) pinned
to one CPU; load generators in separate processes (pinned to the other CPUs
when there are any) play many nodes, each keeping at most 8 frames in flight
and retransmitting on timeout, as the node firmware does.  Every frame
carries ``SAMPLES`` measurements over 4 channels; every channel runs a chain
(calibration, range check, EMA), so the kernels are on the path.  The clock
runs from the first frame sent until the gateway's processing cursor has
passed the last one, so the figure includes the fsync'd commits and the
processing transactions.

``run(quick)`` returns the figures for bench/run.py: per implementation the
measurements per second (wall clock), the gateway's CPU seconds per 100k
measurements (fair on a shared machine), and the Cython/pure ratio.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pathlib
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test harness (hil_tests/harness): simulated nodes, config files
SAMPLES = 32
CHANNELS = ("t0", "t1", "t2", "t3")
WINDOW = 8  # frames in flight per node, as the firmware's sender allows at most
CHAIN = (
    '[channels."*/t*"]\nunit = "Cel"\nsteps = [\n'
    '  { type = "calibration", gain = 1.001, offset = -0.2 },\n'
    '  { type = "range", min = -50.0, max = 1800.0 },\n'
    '  { type = "ema", alpha = 0.3 },\n]\n'
)


def _node_name(generator: int, index: int) -> str:
    return f"bench-{generator:02d}-{index:03d}"


def _generator(generator: int, nodes: int, frames_per_node: int, port: int, start, done, cpu: int | None) -> None:
    """One load-generator process: builds its frames first, then sends them
    with a per-node window, collecting ACKs until every frame is ACKed."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    from hil_tests.harness.nodes import SimNode
    from smemet.protocol import cose

    sims = [SimNode(_node_name(generator, i), channels=CHANNELS) for i in range(nodes)]
    base_ms = int(time.time() * 1000) - 3_600_000
    frames = {}
    for sim in sims:
        for k in range(frames_per_node):
            frames[(sim.kid, k + 1)] = sim.data_frame(
                samples=SAMPLES, now_ms=base_ms + k * 1000, value=lambda i, k=k: 20.0 + ((i * 7 + k) % 50) * 0.5
            )
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 2**20)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    address = ("127.0.0.1", port)
    next_seq = {sim.kid: 1 for sim in sims}
    in_flight: dict[bytes, dict[int, float]] = {sim.kid: {} for sim in sims}
    remaining = len(frames)
    done.put(("ready", generator))
    start.wait()
    while remaining:
        now = time.monotonic()
        for kid, flying in in_flight.items():
            while len(flying) < WINDOW and next_seq[kid] <= frames_per_node:
                seq = next_seq[kid]
                next_seq[kid] = seq + 1
                flying[seq] = now
                try:
                    sock.sendto(frames[(kid, seq)], address)
                except BlockingIOError:
                    flying[seq] = now - 10  # send again below
            for seq, sent in flying.items():
                if now - sent > 2.0:  # lost: retransmit
                    flying[seq] = now
                    try:
                        sock.sendto(frames[(kid, seq)], address)
                    except BlockingIOError:
                        pass
        deadline = time.monotonic() + 0.002
        while time.monotonic() < deadline:
            try:
                data = sock.recv(2048)
            except BlockingIOError:
                time.sleep(0.0002)
                continue
            # An ACK: trust its kid and seqs here (the tests verify ACK MACs);
            # verifying would cost the generator CPU the gateway needs.
            mac0 = cose.parse(data)
            body = __import__("cbor2").loads(mac0.payload)
            flying = in_flight.get(mac0.kid)
            if flying is None or body.get(3, 0) != 0:
                continue
            for seq in body[1]:
                if flying.pop(seq, None) is not None:
                    remaining -= 1
    sock.close()
    done.put(("done", generator))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process."""
    user, system = _cpu_split(pid)
    return user + system


def _cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(impl: str, quick: bool) -> dict:
    """One gateway process with ``impl`` kernels under full load."""
    from hil_tests.harness.nodes import write_config

    generators = 2 if quick else 3
    nodes = 40 if quick else 80
    frames_per_node = 12 if quick else 40
    total_frames = generators * nodes * frames_per_node
    cpus = sorted(os.sched_getaffinity(0))
    gateway_cpu = cpus[0]
    load_cpus = cpus[1:] or [None]
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as directory:
        names = [_node_name(g, i) for g in range(generators) for i in range(nodes)]
        port = _free_port()
        config = write_config(directory, names, udp_port=port, extra=CHAIN + '[log]\nlevel = "warning"\n')
        env = dict(os.environ)
        env["SMEMET_PUREPYTHON"] = "1" if impl == "pure" else "0"
        log_path = os.path.join(directory, "gateway.log")
        with open(log_path, "wb") as log:
            gateway = subprocess.Popen(
                [sys.executable, "-m", "smemet.gateway", "run", "--config", config],
                stdout=log, stderr=log, env=env, preexec_fn=lambda: os.sched_setaffinity(0, {gateway_cpu}),
            )
        try:
            db_path = os.path.join(directory, "outbox.sqlite")
            deadline = time.monotonic() + 30
            while not os.path.exists(db_path) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)
            context = multiprocessing.get_context("spawn")
            start, done = context.Event(), context.Queue()
            workers = [
                context.Process(target=_generator, args=(g, nodes, frames_per_node, port, start, done, load_cpus[g % len(load_cpus)]))
                for g in range(generators)
            ]
            for worker in workers:
                worker.start()
            for _ in workers:  # the generators build their frames first
                done.get(timeout=120)
            from smemet.gateway.outbox_view import OutboxView

            view = OutboxView.open(db_path)
            cpu_before = _cpu_split(gateway.pid)
            started = time.monotonic()
            start.set()
            acked_at = None
            finished = 0
            processed = 0
            limit = time.monotonic() + (120 if quick else 600)
            while time.monotonic() < limit:
                while not done.empty():
                    done.get()
                    finished += 1
                if finished == generators and acked_at is None:
                    acked_at = time.monotonic()
                processed, measurements = view.progress()
                if processed >= total_frames and acked_at is not None:
                    break
                time.sleep(0.01)
            elapsed = time.monotonic() - started
            user, system = (after - before for after, before in zip(_cpu_split(gateway.pid), cpu_before))
            cpu = user + system
            processed, measurements = view.progress()
            view.close()
            for worker in workers:
                worker.join(10)
        finally:
            gateway.send_signal(signal.SIGTERM)
            code = gateway.wait(60)
        if processed < total_frames:
            raise RuntimeError(f"{impl}: only {processed} of {total_frames} frames processed; see {log_path}")
        if code != 0:
            raise RuntimeError(f"{impl}: gateway exited {code}")
    return {
        "frames": total_frames,
        "measurements": measurements,
        "seconds": round(elapsed, 3),
        "measurements_per_s": round(measurements / elapsed),
        "frames_per_s": round(total_frames / elapsed),
        "acked_frames_per_s": round(total_frames / (acked_at - started)) if acked_at else None,
        "gateway_cpu_s": round(cpu, 3),
        "measurements_per_cpu_s": round(measurements / cpu) if cpu else None,
        "gateway_cpu_s_per_100k": round(cpu / measurements * 100_000, 3),
        "gateway_system_cpu_s_per_100k": round(system / measurements * 100_000, 3),
    }


def run(quick: bool = False, impls=("cython", "pure")) -> dict:
    results = {impl: measure(impl, quick) for impl in impls}
    figures: dict = {"samples_per_frame": SAMPLES, "nodes": (2 if quick else 3) * (40 if quick else 80)}
    for impl, r in results.items():
        prefix = "" if impl == "cython" else f"{impl}_"
        for key, value in r.items():
            figures[prefix + key] = value
    if "cython" in results and "pure" in results:
        figures["cython_vs_pure"] = round(results["pure"]["gateway_cpu_s_per_100k"] / results["cython"]["gateway_cpu_s_per_100k"], 2)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--impl", choices=("cython", "pure", "both"), default="both")
    args = parser.parse_args()
    impls = ("cython", "pure") if args.impl == "both" else (args.impl,)
    print(json.dumps(run(args.quick, impls), indent=2))


if __name__ == "__main__":
    main()
