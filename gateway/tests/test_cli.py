"""``smemet gateway …``: user mistakes give one line on stderr and exit 2."""

import os
import subprocess
import sys

import pytest

from smemet.gateway.cli import main
from smemet.gateway.keys import KeyStore
from hil_tests.harness.nodes import write_config


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "smemet.gateway", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "setup, words",
    [
        (lambda d: d / "missing.toml", "config file not found"),
        (lambda d: _config(d, extra="[outbox2]\n"), "outbox2: unknown key; valid keys are"),
        (lambda d: _config(d, key_mode=0o644), "chmod 600"),
        (lambda d: _config(d, extra='[[ingest.serial]]\ndevice = "/dev/ttyNOPE9"\n'), "serial port /dev/ttyNOPE9 does not exist"),
    ],
)
def test_run_user_errors_exit_2_with_one_line(tmp_path, setup, words):
    result = run_cli("run", "--config", str(setup(tmp_path)))
    assert result.returncode == 2, result.stderr
    assert words in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _config(directory, extra="", key_mode=0o600):
    path = write_config(str(directory), ["n1"], extra=extra)
    os.chmod(directory / "keys.toml", key_mode)
    return path


def test_check_config(tmp_path, capsys):
    path = write_config(str(tmp_path), ["n1", "n2"])
    assert main(["check-config", "--config", path]) == 0
    assert "ok (2 nodes" in capsys.readouterr().out


def test_keys_add_and_list(tmp_path, capsys):
    key_file = str(tmp_path / "keys.toml")
    assert main(["keys", "add", "ladle-7", "--key-file", key_file]) == 0
    printed = capsys.readouterr().out.strip()
    assert KeyStore.load(key_file).get(b"ladle-7").hex() == printed
    assert main(["keys", "add", "ladle-7", "--key-file", key_file]) == 2
    assert "already has a key" in capsys.readouterr().err
    assert main(["keys", "list", "--key-file", key_file]) == 0
    assert capsys.readouterr().out.split() == ["ladle-7"]
    assert main(["keys", "add", "x1", "--key-file", key_file, "--key-hex", "nothex"]) == 2
