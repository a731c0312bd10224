"""Node-side figures, run INSIDE MicroPython (the unix port):

    micropython -X heapsize=64K bench/node_mp.py REPO_ROOT FRAMES

Builds FRAMES data frames of 16 readings the way a node does (PackBuilder +
COSE_Mac0) and prints one JSON line: microseconds per frame, bytes per frame
and per measurement, heap bytes allocated per frame (GC disabled while
measuring), and the high-water mark of live heap (after collection) while
building frames.
"""

import gc
import json
import sys
import time

sys.path.insert(0, sys.argv[1])
FRAMES = int(sys.argv[2]) if len(sys.argv) > 2 else 200

from protocol import cose, messages, senml  # noqa: E402

KEY = bytes(range(32))
KID = b"furnace-1"
READINGS = 16


def build(builder, seq, t0):
    for i in range(READINGS):
        builder.add("tc_s", "Cel", 1500.0 + (seq * READINGS + i) * 0.0078125, t0 + i * 250)
    return cose.create(KEY, KID, seq, messages.CT_SENML, builder.encode(t0 + READINGS * 250, True))


def main():
    builder = senml.PackBuilder(READINGS)
    t0 = 1796000000000
    build(builder, 0, t0)  # warm up: first-call allocations are not steady state
    gc.collect()
    size = 0
    start = time.ticks_us()
    for seq in range(1, FRAMES + 1):
        size = len(build(builder, seq, t0 + seq * 4000))
    elapsed = time.ticks_diff(time.ticks_us(), start)
    # High-water mark of live data: collect after each of a few frames.
    high = 0
    for seq in range(FRAMES + 1, FRAMES + 21):
        frame = build(builder, seq, t0)
        gc.collect()
        high = max(high, gc.mem_alloc())
        del frame
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    build(builder, FRAMES + 1, t0)
    allocated = gc.mem_alloc() - before
    gc.enable()
    print(json.dumps({
        "us_per_frame": elapsed / FRAMES,
        "frame_bytes": size,
        "bytes_per_measurement": size / READINGS,
        "heap_bytes_allocated_per_frame": allocated,
        "heap_live_high_water_bytes": high,
        "heap_total_bytes": gc.mem_alloc() + gc.mem_free(),
    }))


main()
