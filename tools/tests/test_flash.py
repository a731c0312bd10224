"""``smemet flash`` against a fresh SimNode over its PTY, as against a board
on /dev/ttyUSB0: copy, verify on the device, restart; and its mistakes."""

from __future__ import annotations

import grp
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from smemet import errors, serial_port
from smemet.fieldtest import smemet
from smemet.firmware_tool import build
from smemet.simnode import FILES_HEAP, SimNode


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    out = tmp_path_factory.mktemp("image") / "firmware"
    build(out, romfs=True)
    return out


@pytest.fixture
def fresh_node(tmp_path):
    node = SimNode(tmp_path / "flash", heap=FILES_HEAP)  # an empty board at its REPL, with a ROMFS partition
    node.power_on()
    node.wait_console(r">>> ")
    yield node
    node.close()


def test_flash_builds_copies_verifies_and_restarts_a_fresh_node(fresh_node, tmp_path):
    scratch = tmp_path / "tmp"  # where the image is built, and removed after
    scratch.mkdir()
    result = smemet("flash", "--port", fresh_node.console_path, env={**os.environ, "TMPDIR": str(scratch)})
    assert result.returncode == 0, result.stderr
    assert not list(scratch.iterdir())
    manifest = json.loads((fresh_node.flash / "manifest.json").read_text())
    files = sorted(manifest["files"]) + ["manifest.json"]
    assert [line[2:] for line in result.stdout.splitlines() if line.startswith("✓ ")] == files
    assert "✗" not in result.stdout
    assert f"[{len(files)}/{len(files)}] manifest.json" in result.stderr  # progress per file
    for path in manifest["files"]:  # what the device holds is what was built
        assert hashlib.sha256((fresh_node.flash / path).read_bytes()).hexdigest() == manifest["files"][path], path
    # restarted: main.py ran and, with no config yet, says so
    fresh_node.wait_console(r"config\.json: not found", timeout=15)


def test_a_file_that_differs_on_the_device_is_reported(fresh_node, image, tmp_path):
    tampered = tmp_path / "tampered"
    import shutil

    shutil.copytree(image, tampered)
    with open(tampered / "node" / "app.mpy", "ab") as f:
        f.write(b"\0")  # the manifest still names the original hash
    result = smemet("flash", "--port", fresh_node.console_path, "--image", str(tampered), "--no-restart")
    assert result.returncode == 1, result.stdout
    assert "✗ node/app.mpy (differs from the image)" in result.stdout
    assert "✓ node/store.mpy" in result.stdout
    assert "did not verify" in result.stderr


def test_stale_firmware_code_is_removed_and_the_nodes_data_kept(fresh_node, image):
    flash = fresh_node.flash
    stale = {  # an older firmware's driver, and a source copied by hand that would shadow node/app.mpy
        "drivers/max6675/__init__.mpy": b"M\x06old",
        "node/app.py": b"print('STALE FIRMWARE')\n",
    }
    data = {  # what the node keeps: none of it may go
        "store/00000001.seg": bytes(range(256)),
        "config.json": b'{"node_id": "x"}',
        "seq.a": b"\x01\x02",
        "notes/commissioning.txt": b"installed 2026-11-02",
    }
    for path, content in {**stale, **data}.items():
        (flash / path).parent.mkdir(parents=True, exist_ok=True)
        (flash / path).write_bytes(content)
    result = smemet("flash", "--port", fresh_node.console_path, "--image", str(image))
    assert result.returncode == 0, result.stderr
    for path in stale:
        assert not (flash / path).exists(), path
        assert f"removed {path} (not in this firmware)" in result.stderr
    assert not (flash / "drivers" / "max6675").exists()  # left empty: removed too
    for path, content in data.items():
        assert (flash / path).read_bytes() == content, path
    fresh_node.wait_console(r"config\.json: ", timeout=15)  # the new firmware checks the config
    assert "STALE FIRMWARE" not in fresh_node.console_text()


def test_flash_romfs_writes_the_partition_and_verifies_it_on_the_device(fresh_node, image):
    (fresh_node.flash / "node").mkdir()
    (fresh_node.flash / "node" / "app.mpy").write_bytes(b"M\x06old")  # an earlier files-layout install
    (fresh_node.flash / "config.json").write_bytes(b'{"node_id": "x"}')  # the node's own: kept
    result = smemet("flash", "--port", fresh_node.console_path, "--romfs", "--image", str(image))
    assert result.returncode == 0, result.stderr
    manifest = json.loads((image / "manifest.json").read_text())
    rom = (image / "firmware.romfs").read_bytes()
    assert f"✓ ROMFS partition: firmware.romfs ({len(rom)} bytes)" in result.stdout
    assert "romfs layout" in result.stdout and "✗" not in result.stdout
    assert fresh_node.rom.read_bytes()[:len(rom)] == rom and hashlib.sha256(rom).hexdigest() == manifest["romfs"]["sha256"]
    assert sorted(p.name for p in fresh_node.flash.iterdir()) == ["boot.py", "config.json", "main.py", "manifest.json"]
    assert "removed node/app.mpy (the code now runs from the ROMFS partition)" in result.stderr
    fresh_node.wait_console(r"config\.json: ", timeout=15)  # restarted: the code from /rom checks the config
    out = subprocess.run([str(Path(sys.executable).with_name("mpremote")), "connect", fresh_node.console_path, "resume",
                          "exec", "import json; print(json.load(open('/rom/manifest.json'))['files']['node/app.mpy'])"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == manifest["files"]["node/app.mpy"], out.stdout + out.stderr


def test_flash_romfs_on_a_board_without_a_partition_says_so_and_copies_files(tmp_path, image):
    with SimNode(tmp_path / "flash", heap=FILES_HEAP, rom_partition=False) as node:
        node.wait_console(r">>> ")
        result = smemet("flash", "--port", node.console_path, "--romfs", "--image", str(image), "--no-restart")
        assert result.returncode == 0, result.stderr
        assert "has no ROMFS partition (mpremote romfs query: ROMFS is not enabled on this device)" in result.stderr
        assert "files layout" in result.stdout and (node.flash / "node" / "app.mpy").is_file()


def test_romfs_with_an_image_built_without_it_is_one_line(fresh_node, tmp_path):
    plain = tmp_path / "plain"
    build(plain)
    result = smemet("flash", "--port", fresh_node.console_path, "--romfs", "--image", str(plain))
    assert result.returncode == 2 and "has no ROMFS image" in result.stderr and "--romfs" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_such_port_is_one_line_and_exit_2(tmp_path):
    result = smemet("flash", "--port", str(tmp_path / "ttyUSB9"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "no such port" in result.stderr and "ls /dev/serial/by-id/" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_regular_file_is_not_a_port(tmp_path):
    fake = tmp_path / "ttyUSB0"
    fake.write_text("")
    result = smemet("flash", "--port", str(fake))
    assert result.returncode == 2 and "is not a serial device" in result.stderr


def _check_port_as_nobody(port: str) -> str:
    """check_port's refusal as an ordinary user sees it (root may open any device)."""
    probe = ("import sys\nfrom smemet import serial_port, errors\ntry:\n    serial_port.check_port(sys.argv[1])\n"
             "except errors.UserError as exc:\n    print(exc)\n")
    done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", probe,
                           port], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def pty_port():
    master, slave = os.openpty()
    yield os.ttyname(slave)
    os.close(master)
    os.close(slave)


def test_no_permission_on_the_port_says_which_group(pty_port):
    os.chown(pty_port, 0, grp.getgrnam("dialout").gr_gid)
    os.chmod(pty_port, 0o660)
    said = _check_port_as_nobody(pty_port)
    assert "no permission" in said and "usermod -aG dialout" in said, said


def test_a_port_of_group_root_gets_a_udev_rule_not_group_root(pty_port):
    os.chown(pty_port, 0, 0)
    os.chmod(pty_port, 0o600)
    said = _check_port_as_nobody(pty_port)
    assert "no permission" in said and "udev rule" in said and 'GROUP="dialout"' in said, said
    assert "group root" not in said and "-aG root" not in said, said


def test_an_image_without_manifest_is_refused(fresh_node, tmp_path):
    result = smemet("flash", "--port", fresh_node.console_path, "--image", str(tmp_path))
    assert result.returncode == 2 and "not a firmware image" in result.stderr
    assert not os.listdir(fresh_node.flash), "nothing may be copied from a broken image"
