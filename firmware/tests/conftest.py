"""The firmware image, built once per session with the real build tool
(tests run the node from it, as a board would)."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))

# The MicroPython test modules in mp/ run inside MicroPython, not under pytest.
collect_ignore_glob = ["mp/*"]


@pytest.fixture(scope="session")
def image(tmp_path_factory):
    sys.path.insert(0, str(REPO / "tools"))
    import firmware_tool

    out = tmp_path_factory.mktemp("image")
    firmware_tool.build(out, romfs=True)
    return out
