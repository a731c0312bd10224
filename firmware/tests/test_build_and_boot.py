"""`smemet firmware build` and what a node does with a bad config."""

import hashlib
import json
import shutil
import subprocess
import sys
import time

import pytest

from fw_testlib import MICROPYTHON, NODE_HEAP_ONE, REPO

sys.path.insert(0, str(REPO / "tools"))
import firmware_tool  # noqa: E402


def test_image_manifest(image):
    manifest = json.loads((image / "manifest.json").read_text())
    assert manifest["version"] == firmware_tool.firmware_version()
    files = manifest["files"]
    assert "main.py" in files and "boot.py" in files and "lib/protocol/cose.mpy" in files
    assert "drivers/max31856/__init__.mpy" in files and "drivers/max31856/sim.mpy" in files
    assert not [f for f in files if "test_" in f or f.endswith(".py") and f not in ("main.py", "boot.py")]
    for path, digest in files.items():
        assert hashlib.sha256((image / path).read_bytes()).hexdigest() == digest, path


def test_a_module_that_does_not_compile_is_a_clear_error(tmp_path, monkeypatch):
    fw = tmp_path / "firmware"
    shutil.copytree(REPO / "firmware", fw, ignore=shutil.ignore_patterns("tests"))
    (fw / "node" / "broken.py").write_text("def f(:\n")
    monkeypatch.setattr(firmware_tool, "FIRMWARE", fw)
    with pytest.raises(firmware_tool.BuildError, match="node/broken.py"):
        firmware_tool.build(tmp_path / "out")


def test_build_replaces_an_earlier_image_but_never_other_files(tmp_path):
    out = tmp_path / "out"
    firmware_tool.build(out)
    (out / "stale.mpy").write_bytes(b"old")
    firmware_tool.build(out)  # an earlier image: rebuilt from scratch
    assert not (out / "stale.mpy").exists() and (out / "manifest.json").is_file()
    home = tmp_path / "home"  # e.g. `--out ~` by mistake
    (home / "work").mkdir(parents=True)
    (home / "work" / "report.txt").write_text("keep me")
    with pytest.raises(firmware_tool.BuildError, match="not a firmware image"):
        firmware_tool.build(home)
    assert (home / "work" / "report.txt").read_text() == "keep me"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(firmware_tool.BuildError, match="is a file"):
        firmware_tool.build(tmp_path / "afile")
    result = subprocess.run([sys.executable, "-m", "smemet", "firmware", "build", "--out", "/proc/smemet-image"],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "cannot make /proc/smemet-image" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "mpy-cross" not in result.stderr


def test_bad_config_prints_each_problem_and_idles(image, tmp_path):
    flash = tmp_path / "flash"
    shutil.copytree(image, flash)
    (flash / "config.json").write_text(json.dumps({
        "node_id": "n1", "key": "00" * 32, "transport": {"type": "udp", "gateway": "127.0.0.1"},
        "channels": [{"name": "a", "driver": "max31855"}, {"name": "b", "driver": "max31855"},
                     {"name": "c", "driver": "max3185"}]}))
    log = tmp_path / "out.txt"
    with open(log, "w") as out:
        node = subprocess.Popen([str(MICROPYTHON), "-X", "heapsize=" + NODE_HEAP_ONE, "main.py"], cwd=flash, stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            time.sleep(1.5)
            assert node.poll() is None, "the node must stay up (idle), not exit into a restart loop"
        finally:
            node.kill()
            node.wait()
    text = log.read_text()
    assert "config.json: channels[2].driver: unknown driver 'max3185', known: ads1115, adxl345, max31855" in text
    assert "node idle" in text and "Traceback" not in text, text
