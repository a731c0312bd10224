"""Config as a real site gets it wrong: files from Windows editors, a key
file that is empty or too open, a config that works in one directory and
not another, and check-config saying ok where run would fail.  Each
mistake: one line naming the file (and line), what to do, exit 2."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from smemet.gateway.config import load_config
from hil_tests.harness.nodes import write_config, write_keys


def smemet(*args, cwd=None, user=None):
    command = [sys.executable, "-m", "smemet", *args]
    if user is not None:  # the tests run as root, who may write anywhere
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=cwd, stdin=subprocess.DEVNULL)


def one_line_error(result, *words):
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def site(tmp_path):
    path = Path(write_config(str(tmp_path), ["n1"]))
    return path


def test_a_windows_1252_comment_names_the_line_the_byte_and_the_encoding(site):
    text = site.read_text()
    site.write_bytes(text.encode() + "# Gießerei Ofen 3 – 1200 °C\n".encode("cp1252"))
    line = text.count("\n") + 1
    error = one_line_error(smemet("gateway", "check-config", "--config", str(site)),
                           f"line {line}, column 6", "byte 0xdf is not UTF-8", "Windows-1252", "'ß'", "save the file as UTF-8")
    assert error.startswith("smemet gateway check-config: error: ")
    one_line_error(smemet("gateway", "run", "--config", str(site)), "byte 0xdf is not UTF-8")


def test_a_utf8_bom_from_notepad_is_accepted_in_config_and_key_file(site):
    site.write_bytes(b"\xef\xbb\xbf" + site.read_bytes())
    keys = site.parent / "keys.toml"
    keys.write_bytes(b"\xef\xbb\xbf" + keys.read_bytes())
    result = smemet("gateway", "check-config", "--config", str(site))
    assert result.returncode == 0, result.stderr
    assert "ok (1 node," in result.stdout


def test_a_windows_1252_key_file(site):
    keys = site.parent / "keys.toml"
    keys.write_bytes(keys.read_bytes() + "# Schlüssel\n".encode("cp1252"))
    one_line_error(smemet("gateway", "check-config", "--config", str(site)), "keys.toml: line 2, column 7",
                   "byte 0xfc is not UTF-8")
    one_line_error(smemet("gateway", "keys", "list", "--key-file", str(keys)), "byte 0xfc is not UTF-8")


def test_an_empty_key_file_is_ok_with_a_warning(site):
    keys = site.parent / "keys.toml"
    keys.write_text("")
    result = smemet("gateway", "check-config", "--config", str(site))
    assert result.returncode == 0
    assert "ok (0 nodes" in result.stdout
    assert "warning" in result.stderr and "lists no node" in result.stderr


def test_a_key_file_readable_by_its_group_is_called_that(site):
    keys = site.parent / "keys.toml"
    keys.chmod(0o640)
    one_line_error(smemet("gateway", "check-config", "--config", str(site)),
                   "readable by its group (mode 0640)", "chmod 600")
    keys.chmod(0o604)
    one_line_error(smemet("gateway", "check-config", "--config", str(site)), "readable by others (mode 0604)")


def test_route_files_and_ids_follow_the_config_file_and_the_gateway_id(tmp_path, monkeypatch):
    site = tmp_path / "etc"
    site.mkdir()
    write_keys(str(site / "keys.toml"), ["n1"])
    (site / "partner-a.password").write_text("s3cret\n")
    (site / "partner-a.password").chmod(0o600)
    (site / "gateway.toml").write_text(
        '[gateway]\nid = "plant1-gw"\n[keys]\nfile = "keys.toml"\n[outbox]\npath = "outbox.sqlite"\n'
        '[[routes]]\nname = "partner-a"\nbroker = "mqtt://127.0.0.1:1883"\ninclude = ["*"]\n'
        'username = "a"\npassword_file = "partner-a.password"\n')
    monkeypatch.chdir("/")  # as systemd runs it (restored after: later tests start children from the checkout)
    config = load_config(str(site / "gateway.toml"))
    route = config.routes[0]
    assert route.password == "s3cret"
    assert route.client_id == "smemet-plant1-gw-partner-a" and route.gateway_id == "plant1-gw"
    assert config.keys_file == str(site / "keys.toml") and config.outbox.path == str(site / "outbox.sqlite")


# -- check-config checks what run needs ----------------------------------------


@pytest.fixture
def shared_site():
    """A site in a folder other users may enter (tmp_path is root's own)."""
    directory = Path(tempfile.mkdtemp(prefix="smemet-site-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_an_outbox_folder_that_is_not_writable(shared_site):
    nobody = 65534
    path = Path(write_config(str(shared_site), ["n1"]))
    os.chown(shared_site / "keys.toml", nobody, nobody)
    os.chmod(path, 0o644)
    checked = one_line_error(smemet("gateway", "check-config", "--config", str(path), user=nobody),
                             "not writable by this user (permission denied)", f"chown smemet: {shared_site}")
    ran = one_line_error(smemet("gateway", "run", "--config", str(path), user=nobody), "permission denied", "chown")
    assert checked.split("error: ", 1)[1] == ran.split("error: ", 1)[1], "check-config says what run would say"


def test_a_read_only_outbox_folder(tmp_path):
    from hil_tests.harness.disks import small_tmpfs

    with small_tmpfs(tmp_path / "ro", "1m") as disk:
        path = Path(write_config(str(disk.path), ["n1"]))
        subprocess.run(["mount", "-o", "remount,ro", str(disk.path)], check=True)
        one_line_error(smemet("gateway", "check-config", "--config", str(path)), "read-only file system")


def test_a_missing_serial_device(site):
    site.write_text(site.read_text() + '\n[[ingest.serial]]\ndevice = "/dev/ttyUSB-nope"\n')
    one_line_error(smemet("gateway", "check-config", "--config", str(site)), "/dev/ttyUSB-nope does not exist")


def test_a_udp_port_in_use(site):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        site.write_text(site.read_text().replace("port = 0", f"port = {port}", 1))
        checked = one_line_error(smemet("gateway", "check-config", "--config", str(site)),
                                 f"port {port} is in use by another program", "ingest.udp")
        ran = one_line_error(smemet("gateway", "run", "--config", str(site)), f"port {port} is in use")
        assert "another gateway running, or" not in ran
        del checked


def test_permission_denied_on_a_udp_port_is_not_blamed_on_another_gateway(shared_site):
    nobody = 65534
    path = Path(write_config(str(shared_site), ["n1"]))
    path.write_text(path.read_text().replace("port = 0", "port = 47", 1))
    os.chown(shared_site / "keys.toml", nobody, nobody)
    os.chown(shared_site, nobody, nobody)
    error = one_line_error(smemet("gateway", "check-config", "--config", str(path), user=nobody),
                           "permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE")
    assert "another" not in error


def test_a_metrics_port_in_use(site):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        site.write_text(site.read_text().replace("[metrics]\nport = 0", f"[metrics]\nport = {port}"))
        one_line_error(smemet("gateway", "check-config", "--config", str(site)), "metrics", f"port {port} is in use")


def test_every_problem_is_listed_not_only_the_first(site):
    site.write_text(site.read_text() + '\n[[ingest.serial]]\ndevice = "/dev/ttyUSB-nope"\n')
    (site.parent / "keys.toml").chmod(0o644)
    result = smemet("gateway", "check-config", "--config", str(site))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 2 and "chmod 600" in result.stderr and "ttyUSB-nope" in result.stderr
