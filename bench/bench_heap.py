"""The lowest heap a node runs in, per configuration and layout.

    python bench/bench_heap.py [--seconds 15] [--only NAME] [--layout romfs|files]

For each configuration (docs/firmware.md, Memory) and each layout (the
firmware executed in place from a ROMFS image, or loaded from .mpy files),
bisects ``-X heapsize`` in 4K steps for the lowest heap at which a SimNode
(tools/simnode.py: the real firmware in the unix port) runs ``--seconds``
against a peer that ACKs every frame, with no MemoryError, no restart, and
frames arriving (a bad config: its problems printed, the node idle).
Prints a table and writes bench/results/heap.json.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import socket
import sys
import tempfile
import threading
import time

from smemet.protocol import cose, messages
from smemet.simnode import SimNode, build_image

ROOT = pathlib.Path(__file__).resolve().parents[1]
KEY = bytes(range(32))
STEP = 4  # KiB

MAX31855 = {"name": "tc", "driver": "max31855", "period_ms": 500}
MAX31856 = {"name": "ladle", "driver": "max31856", "tc_type": "B", "period_ms": 200}
ADS1115 = {"name": "flow", "driver": "ads1115", "period_ms": 250, "lrv": 0, "urv": 40, "unit": "m3/s"}
ADXL345 = {"name": "vib", "driver": "adxl345", "period_ms": 1000, "window_ms": 200, "rate_hz": 100}
MODBUS = {"name": "meter", "driver": "modbus_rtu", "period_ms": 500, "registers": [
    {"name": "flow", "address": 0, "type": "float32", "unit": "m3/s"},
    {"name": "p", "address": 2, "type": "int16", "scale": 0.1, "unit": "Pa"}]}
SCENARIO = {"channels": {"tc": {"value": 812.0, "cj": 28}, "ladle": {"value": 1550, "cj": 30},
                         "flow": {"value": 12.0}, "vib": {"value": 3.0}, "meter": {"flow": 2.5, "p": 101.3}}}
BAD = [{"name": "a", "driver": "max31855"}, {"name": "b", "driver": "max31855"}, {"name": "c", "driver": "max3185"}]

CONFIGS = {
    "one channel (max31855)": [MAX31855],
    "two channels (max31856, ads1115)": [MAX31856, ADS1115],
    "four drivers (max31856, ads1115, adxl345, modbus_rtu)": [MAX31856, ADS1115, ADXL345, MODBUS],
    "all five drivers": [MAX31855, MAX31856, ADS1115, ADXL345, MODBUS],
    "a bad config.json": BAD,
}


class AckingPeer:
    """A gateway stand-in: verifies each frame and ACKs it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.frames = 0
        self._stop = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop:
            try:
                data, addr = self.sock.recvfrom(2048)
            except OSError:
                continue
            msg = messages.open_from_node(data, lambda kid: KEY, time.time())
            self.frames += 1
            ack = messages.encode_ack([msg.seq], int(time.time() * 1000))
            self.sock.sendto(cose.create(KEY, b"heap", 0, messages.CT_ACK, ack), addr)

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


def config_for(channels: list[dict], port: int) -> dict:
    return {"node_id": "heap", "key": KEY.hex(), "board": "sim", "stable_after_s": 1,
            "transport": {"type": "udp", "gateway": "127.0.0.1", "port": port, "ack_timeout_ms": 300},
            "batch": {"max_records": 16, "max_latency_ms": 1000}, "health": {"period_s": 2},
            "channels": channels}


def runs(image: pathlib.Path, work: pathlib.Path, channels: list[dict], layout: str, heap_k: int,
         seconds: float) -> tuple[bool, str]:
    """Whether the node runs ``seconds`` in ``heap_k`` KiB; and why not."""
    peer = AckingPeer()
    flash = pathlib.Path(tempfile.mkdtemp(dir=work))
    node = SimNode(flash / "flash", image=image, config=config_for(channels, peer.port), scenario=SCENARIO,
                   heap=f"{heap_k}K", layout=layout)
    bad = channels is BAD
    try:
        node.power_on()
        node.wait_console(r"node idle" if bad else r"node \S+ up", 15)
        time.sleep(seconds)
        text = node.console_text()
        if "MemoryError" in text:
            return False, "MemoryError"
        if len(node.boots) != 1 or not node.running:
            return False, "restarted or ended"
        if not bad and peer.frames < seconds / 2:
            return False, f"only {peer.frames} frames"
        return True, ""
    except TimeoutError:
        return False, "did not boot"
    finally:
        node.close()
        peer.close()


def floor(image, work, channels, layout, seconds, low=32, high=192) -> int | None:
    """Lowest heap (KiB, multiple of STEP) in [low, high] that runs."""
    if not runs(image, work, channels, layout, high, seconds)[0]:
        return None
    low -= STEP  # invariant: `low` fails (or is below the range), `high` runs
    while high - low > STEP:
        mid = (low + high) // 2 // STEP * STEP
        if mid <= low:
            mid = low + STEP
        ok, why = runs(image, work, channels, layout, mid, seconds)
        print(f"    {layout} {mid}K: {'runs' if ok else why}", flush=True)
        if ok:
            high = mid
        else:
            low = mid
    return high


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--only", help="configurations whose name contains this")
    parser.add_argument("--layout", choices=("romfs", "files"), action="append")
    args = parser.parse_args()
    layouts = args.layout or ["romfs", "files"]
    results = {}
    with tempfile.TemporaryDirectory(prefix="smemet-heap-") as tmp:
        work = pathlib.Path(tmp)
        image = build_image(work / "image")
        for name, channels in CONFIGS.items():
            if args.only and args.only not in name:
                continue
            results[name] = {}
            for layout in layouts:
                print(f"{name}, {layout} ...", flush=True)
                results[name][layout] = floor(image, work, channels, layout, args.seconds)
    print(f"\nlowest -X heapsize that runs {args.seconds:g} s without MemoryError:")
    print(f"{'configuration':58} " + " ".join(f"{layout:>6}" for layout in layouts))
    for name, by_layout in results.items():
        print(f"{name:58} " + " ".join(f"{str(by_layout[lay]) + 'K' if by_layout[lay] else '>192K':>6}"
                                       for lay in layouts))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "heap.json").write_text(json.dumps({"seconds": args.seconds, "floors_kib": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
