"""Runs the MicroPython test modules inside the unix port (not CPython)."""

import pytest

from fw_testlib import FIRMWARE, run_mp

MODULES = sorted(
    [p.stem for p in (FIRMWARE / "tests" / "mp").glob("test_*.py")]
    + ["drivers.%s.%s" % (p.parent.name, p.stem) for p in FIRMWARE.glob("drivers/*/test_*.py")]
)


def test_every_driver_has_a_test_sim_and_readme():
    for folder in FIRMWARE.glob("drivers/*/"):
        if not (folder / "__init__.py").exists():
            continue
        assert (folder / "README.md").exists(), folder
        if folder.name != "health":
            assert (folder / "sim.py").exists() and list(folder.glob("test_*.py")), folder


@pytest.mark.parametrize("module", MODULES)
def test_in_micropython(module, tmp_path):
    result = run_mp([str(FIRMWARE / "tests" / "mp" / "mptest.py"), module], cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "RESULT ok" in output, output
