"""`smemet firmware build` and what a node does with a bad config."""

import hashlib
import json
import shutil
import subprocess
import sys
import time

import pytest

from fw_testlib import MICROPYTHON, NODE_HEAP_ONE, REPO, ROMFS_HEAP_ONE, romboot

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
    assert result.returncode == 2 and "cannot make /proc/smemet-image" in result.stderr, result.stderr  # the user's --out
    assert result.stderr.startswith("smemet firmware build: error: ") and result.stderr.count("\n") == 1
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


def test_romfs_image_holds_the_code_and_its_manifest(image, tmp_path):
    """The image beside the files: its size and sha256 in manifest.json; mounted
    as a board mounts it, /rom holds every code file with the hash the
    manifest inside it names, checked by MicroPython itself."""
    manifest = json.loads((image / "manifest.json").read_text())
    rom = (image / "firmware.romfs").read_bytes()
    entry = manifest["romfs"]
    assert entry["size"] == len(rom) and entry["sha256"] == hashlib.sha256(rom).hexdigest()
    assert rom[:3] == b"\xd2\xcd\x31"
    code = {p: h for p, h in manifest["files"].items() if p not in ("main.py", "boot.py")}
    assert sorted(entry["files"]) == sorted(list(code) + ["manifest.json"])
    check = tmp_path / "check.py"
    check.write_text(
        "import json, hashlib, binascii\n"
        "m = json.load(open('/rom/manifest.json'))\n"
        "bad = [p for p, h in m['files'].items()\n"
        "       if binascii.hexlify(hashlib.sha256(open('/rom/' + p, 'rb').read()).digest()).decode() != h]\n"
        "print('VERSION', m['version'], 'FILES', len(m['files']), 'BAD', bad)\n")
    result = subprocess.run(romboot(image) + ["-X", "heapsize=256K", str(check)], capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.strip() == "VERSION %s FILES %d BAD []" % (manifest["version"], len(code)), result.stdout + result.stderr


def test_bad_config_in_the_romfs_layout_prints_each_problem_and_idles(image, tmp_path):
    flash = tmp_path / "flash"
    flash.mkdir()
    shutil.copyfile(image / "main.py", flash / "main.py")
    (flash / "config.json").write_text(json.dumps({"node_id": "n1", "channels": [{"name": "c", "driver": "max3185"}]}))
    with open(tmp_path / "out.txt", "w") as out:
        node = subprocess.Popen(romboot(image) + ["-X", "heapsize=" + ROMFS_HEAP_ONE, "main.py"], cwd=flash,
                                stdout=out, stderr=subprocess.STDOUT)
        try:
            time.sleep(1.5)
            assert node.poll() is None, "the node must stay up (idle)"
        finally:
            node.kill()
            node.wait()
    text = (tmp_path / "out.txt").read_text()
    assert "unknown driver 'max3185'" in text and "node idle" in text and "Traceback" not in text, text


def test_romboot_without_an_image_is_one_line_and_exit_2(tmp_path):
    for path, what in ((tmp_path / "nothing.romfs", "cannot open"), (tmp_path, "cannot open")):
        result = subprocess.run([sys.executable, "-m", "smemet.romboot", str(path), "main.py"], capture_output=True,
                                text=True, timeout=30)
        assert result.returncode == 2 and what in result.stderr and result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.stderr
