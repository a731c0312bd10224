"""``smemet new-driver``: each bus's scaffold, in a temporary copy of
firmware/, passes its own test inside MicroPython (the firmware test
runner), builds with ``smemet firmware build``, and runs from config.json on
a simulated node whose frames carry its readings."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from smemet import firmware_tool
from smemet.fieldtest import smemet
from smemet.gateway import opener
from smemet.sim_fleet import SIM_HEAP
from smemet.simnode import SimNode, micropython_path, read_store

REPO = Path(firmware_tool.__file__).resolve().parent.parent
BUSES = ("i2c", "spi", "uart", "adc")


@pytest.fixture(scope="module")
def firmware(tmp_path_factory):
    """A copy of firmware/ with one scaffolded driver per bus."""
    copy = tmp_path_factory.mktemp("tree") / "firmware"
    shutil.copytree(REPO / "firmware", copy, ignore=shutil.ignore_patterns("__pycache__"))
    for bus in BUSES:
        result = smemet("new-driver", f"my_{bus}", "--bus", bus, "--firmware-dir", str(copy))
        assert result.returncode == 0, result.stderr
    return copy


def run_in_micropython(firmware: Path, module: str, cwd: Path) -> subprocess.CompletedProcess:
    """As firmware/tests/test_micropython_suite.py runs a driver's test."""
    env = dict(os.environ, MICROPYPATH=":".join([".frozen", str(firmware), str(REPO), str(firmware / "tests" / "mp")]))
    return subprocess.run([micropython_path(), "-X", "heapsize=512K", str(firmware / "tests" / "mp" / "mptest.py"), module],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("bus", BUSES)
def test_scaffold_has_the_conventional_files_and_its_test_passes(firmware, bus, tmp_path):
    folder = firmware / "drivers" / f"my_{bus}"
    assert sorted(p.name for p in folder.iterdir()) == sorted(["__init__.py", "schema.py", "sim.py", f"test_my_{bus}.py", "README.md"])
    assert f'BUS = "{bus}"' in (folder / "schema.py").read_text()
    result = run_in_micropython(firmware, f"drivers.my_{bus}.test_my_{bus}", tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "RESULT ok" in output and "FAIL" not in output, output


def test_scaffold_builds_and_runs_from_config_json(firmware, tmp_path, monkeypatch):
    monkeypatch.setattr(firmware_tool, "FIRMWARE", firmware)  # build the copy, as `smemet firmware build` does the tree
    image = tmp_path / "image"
    manifest = firmware_tool.build(image, romfs=True)
    for bus in BUSES:
        assert f"drivers/my_{bus}/__init__.mpy" in manifest["files"] and f"drivers/my_{bus}/sim.mpy" in manifest["files"]
        assert not any("test_my_" in path for path in manifest["files"])

    key = os.urandom(32)
    channels = [{"name": f"c_{bus}", "driver": f"my_{bus}", "period_ms": 200} for bus in BUSES]
    config = {"node_id": "scaffold-1", "key": key.hex(), "board": "sim",
              "transport": {"type": "udp", "gateway": "127.0.0.1", "port": 9},  # nobody answers: frames stay in flash
              "batch": {"max_records": 8, "max_latency_ms": 300}, "sim": {"time_scale": 1.0}, "watchdog_ms": 0,
              "channels": channels}
    scenario = {"channels": {"c_i2c": {"value": 21.5}, "c_spi": {"value": -3.25}, "c_uart": {"value": 7.5},
                             "c_adc": {"value": 1.75}}}
    node = SimNode(tmp_path / "flash", image=image, config=config, scenario=scenario, heap=SIM_HEAP)
    try:
        node.power_on()
        boot = node.wait_up(15)
        assert boot.node == "scaffold-1"
        deadline = time.monotonic() + 15
        readings = {}
        while set(readings) < {c["name"] for c in channels}:
            assert time.monotonic() < deadline, (readings, node.console_text()[-600:])
            time.sleep(0.3)
            for stored in read_store(node.flash)[0]:
                opened = opener.decode(stored.frame, opener.read_header(stored.frame), time.time())
                if opened.content_type == 112:
                    for name, value, reason in zip(opened.names, opened.values, opened.reasons):
                        readings[name] = (value, reason)
        assert node.memory_errors == 0
    finally:
        node.close()
    assert readings["c_i2c"] == (21.5, None)
    assert readings["c_spi"] == (-3.25, None)
    assert readings["c_uart"] == (7.5, None)
    assert abs(readings["c_adc"][0] - 50.0) < 1e-6 and readings["c_adc"][1] is None


def test_refuses_to_overwrite_and_bad_names(firmware):
    driver = firmware / "drivers" / "my_i2c" / "__init__.py"
    before = driver.read_text()
    again = smemet("new-driver", "my_i2c", "--bus", "spi", "--firmware-dir", str(firmware))
    assert again.returncode == 2 and "already exists" in again.stderr and again.stderr.count("\n") == 1
    assert driver.read_text() == before
    for bad in ("MyChip", "9lives", "x", "with-dash", "class"):
        result = smemet("new-driver", bad, "--bus", "i2c", "--firmware-dir", str(firmware))
        assert result.returncode == 2 and not (firmware / "drivers" / bad).exists(), bad
    reserved = smemet("new-driver", "health", "--bus", "i2c", "--firmware-dir", str(firmware))
    assert reserved.returncode == 2 and "reserved" in reserved.stderr
    not_firmware = smemet("new-driver", "fine_name", "--bus", "adc", "--firmware-dir", str(firmware / "node"))
    assert not_firmware.returncode == 2 and "not a firmware tree" in not_firmware.stderr


def test_the_hints_for_another_tree_run_its_test_and_build_include_it(firmware, tmp_path):
    """--firmware-dir: the printed test command passes from any folder and
    the printed build command builds that tree, with the new driver in it."""
    result = smemet("new-driver", "my_hint", "--bus", "i2c", "--firmware-dir", str(firmware))
    assert result.returncode == 0, result.stderr
    test = next(line for line in result.stderr.splitlines() if "run its test" in line).split("run its test", 1)[1].strip()
    assert "pytest firmware/tests" not in result.stderr
    ran = subprocess.run(["bash", "-c", test], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0 and "RESULT ok" in ran.stdout + ran.stderr, (test, ran.stdout, ran.stderr)
    build_line = next(line for line in result.stderr.splitlines() if "build it" in line).split("build it", 1)[1].strip()
    assert build_line == f"smemet firmware build --firmware-dir {firmware.resolve()}"
    image = tmp_path / "image"
    built = smemet(*build_line.split()[1:], "--out", str(image))
    assert built.returncode == 0, built.stderr
    manifest = json.loads((image / "manifest.json").read_text())
    assert "drivers/my_hint/__init__.mpy" in manifest["files"]


def test_firmware_build_of_something_not_a_firmware_tree_is_one_line(tmp_path):
    result = smemet("firmware", "build", "--firmware-dir", str(tmp_path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("smemet firmware build: error: ") and "not a firmware tree" in result.stderr
