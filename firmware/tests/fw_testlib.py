"""Helpers for the firmware tests: run MicroPython on the repo's sources."""

import os
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"
MICROPYTHON = Path(sys.executable).with_name("micropython")
# Running .py sources makes MicroPython compile them in the heap; the built
# image (.mpy) is what the heap figures in docs/firmware.md are about.
SOURCE_HEAP = "512K"
# The heaps the built image runs the node in (figures in docs/firmware.md).
# The ROMFS layout (code executed in place, tools/romboot.py) is what the
# node runs on a board with a ROMFS partition; the files layout (every .mpy
# loaded into the heap) on one without.  Issue 17 asks for 64K; the tests
# run a step above the measured floors.
ROMFS_HEAP_ONE = "72K"  # one or two small channels, a bad config
ROMFS_HEAP = "96K"  # four drivers (max31856, ads1115, adxl345, modbus_rtu)
NODE_HEAP_ONE = "96K"  # files layout: one or two small channels, a bad config
NODE_HEAP = "136K"  # files layout: four drivers


def romboot(image):
    """The command that runs the unix port with ``image``'s ROMFS image
    mapped as the board's ROMFS partition (mounted at /rom)."""
    return [sys.executable, "-m", "smemet.romboot", str(Path(image) / "firmware.romfs")]


def micropython_env():
    env = dict(os.environ)
    env["MICROPYPATH"] = ":".join([".frozen", str(FIRMWARE), str(REPO), str(FIRMWARE / "tests" / "mp")])
    return env


def run_mp(args, cwd, heap=SOURCE_HEAP, timeout=60):
    return subprocess.run([str(MICROPYTHON), "-X", "heapsize=" + heap] + list(args), cwd=cwd,
                          env=micropython_env(), capture_output=True, text=True, timeout=timeout)


