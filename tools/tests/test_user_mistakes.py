"""Every command, every file argument: missing, a directory, unreadable,
unwritable, in a folder that does not exist or cannot be written.  Each is a
user's mistake: one ``smemet COMMAND: error:`` line naming the file, exit 2,
never a traceback.  And the conventions of the command line itself (help,
version, completion, closed pipes, ASCII terminals, exit codes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from hil_tests.harness.nodes import write_config, write_keys

NOBODY = 65534
FRAME = "d18443a10104a1"  # a truncated frame: decode gets that far only with a readable key file
HEX_KEY = "ab" * 32


def smemet(*args, user=None, stdin=None, env=None, cwd=None, timeout=60):
    command = [sys.executable, "-m", "smemet", *map(str, args)]
    if user is not None:  # the tests run as root, who may read and write anything
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, input=stdin,
                          env=env, cwd=cwd)


@pytest.fixture(scope="module")
def site():
    """Files in a folder others may enter (pytest's tmp_path is root's alone):
    a valid config and key file, a file and a folder only root may read, a
    folder only root may write."""
    root = Path(tempfile.mkdtemp(prefix="smemet-mistakes-"))
    root.chmod(0o755)
    config = Path(write_config(str(root), ["n1"]))
    secret = root / "root-only.toml"
    secret.write_text("x = 1\n")
    secret.chmod(0o600)
    locked = root / "locked"
    locked.mkdir(mode=0o700)
    closed = root / "read-only-folder"
    closed.mkdir(mode=0o755)
    (root / "a-folder").mkdir()
    yield {"root": root, "config": config, "keys": root / "keys.toml", "secret": secret, "locked": locked,
           "closed": closed, "folder": root / "a-folder", "missing": root / "missing" / "nothing.toml"}
    shutil.rmtree(root, ignore_errors=True)


def assert_one_line(result, *words):
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("smemet "), errors[0]
    for word in words:
        assert str(word) in errors[0], errors[0]


# (command with {} for the file, what the file should be)
READ = [
    ("decode --key {key} @{}", "file"),
    ("decode --keys {} {frame}", "file"),
    ("gateway run --config {}", "file"),
    ("gateway check-config --config {}", "file"),
    ("gateway keys list --key-file {}", "file"),
    ("gateway keys list --config {}", "file"),
    ("gateway opcua-user list --users-file {}", "file"),
    ("gateway opcua-user list --config {}", "file"),
    ("gateway web-user list --users-file {}", "file"),
    ("gateway web-user list --config {}", "file"),
    ("nodes --gateway-config {}", "file"),
    ("nodes --keys {}", "file"),
    ("sim --gateway-config {} --duration 1", "file"),
    ("sim --keys {} --duration 1", "file"),
    ("monitor --password-file {} --duration 1", "file"),
    ("monitor --broker mqtts://127.0.0.1:1 --ca {} --duration 1", "file"),
    ("monitor --gateway-config {} --duration 1", "file"),
    ("commission --port {port} --node-id n1 --gateway 127.0.0.1 --keys {keys} --template {}", "file"),
    ("commission --port {port} --node-id n1 --gateway 127.0.0.1 --gateway-config {}", "file"),
    ("flash --port {port} --image {}", "dir"),
    ("sim --keys {keys} --image {} --duration 1", "dir"),
    ("new-driver tmp117 --bus i2c --firmware-dir {}", "dir"),
]


def _args(template: str, path, site, port):
    return template.format(path, key=HEX_KEY, frame=FRAME, keys=site["keys"], port=port).split()


@pytest.fixture(scope="module")
def port():
    master, slave = os.openpty()
    yield os.ttyname(slave)
    os.close(master)
    os.close(slave)


@pytest.mark.parametrize("template, kind", READ, ids=[t.split(" {")[0] + " " + t.split()[-1 if t.endswith("{}") else -3]
                                                      for t, _ in READ])
def test_a_missing_input(site, port, template, kind):
    assert_one_line(smemet(*_args(template, site["missing"], site, port)))


@pytest.mark.parametrize("template, kind", [case for case in READ if case[1] == "file"],
                         ids=[t for t, k in READ if k == "file"])
def test_a_directory_where_a_file_is_wanted(site, port, template, kind):
    assert_one_line(smemet(*_args(template, site["folder"], site, port)))


@pytest.mark.parametrize("template, kind", [case for case in READ if case[1] == "dir"],
                         ids=[t for t, k in READ if k == "dir"])
def test_a_file_where_a_folder_is_wanted(site, port, template, kind):
    assert_one_line(smemet(*_args(template, site["config"], site, port)))


UNREADABLE = [
    "decode --key {key} @{}", "decode --keys {} {frame}", "gateway check-config --config {}",
    "gateway keys list --key-file {}", "gateway opcua-user list --users-file {}", "gateway web-user list --users-file {}",
    "nodes --gateway-config {}", "monitor --password-file {} --duration 1",
]


@pytest.mark.parametrize("template", UNREADABLE)
def test_an_unreadable_input(site, port, template):
    assert_one_line(smemet(*_args(template, site["secret"], site, port), user=NOBODY), site["secret"])


WRITE = [
    ("gateway keys add n9 --key-file {}/keys.toml", None),
    ("gateway opcua-user add mes --password-stdin --users-file {}/users.toml", "a-long-password\n"),
    ("gateway web-user add ops --password-stdin --users-file {}/web-users", "a-long-password\n"),
    ("firmware build --out {}/image", None),
    ("sim --keys {}/keys.toml --duration 1", None),
    ("sim --blank --flash-dir {}/boards --duration 1", None),
    ("demo --keep {}/demo --duration 1", None),
]


@pytest.mark.parametrize("template, stdin", WRITE, ids=[t.split(" {")[0] for t, _ in WRITE])
def test_an_output_in_a_folder_that_cannot_be_written(site, template, stdin):
    assert_one_line(smemet(*template.format(site["closed"]).split(), user=NOBODY, stdin=stdin), site["closed"])


@pytest.mark.parametrize("template, stdin", WRITE[:3], ids=[t.split(" {")[0] for t, _ in WRITE[:3]])
def test_an_output_in_a_folder_that_does_not_exist(site, template, stdin):
    assert_one_line(smemet(*template.format(site["root"] / "no" / "such").split(), stdin=stdin), "does not exist")


def test_new_driver_into_a_read_only_firmware_tree(site):
    tree = site["root"] / "firmware-copy"
    (tree / "drivers").mkdir(parents=True, exist_ok=True)
    (tree / "drivers" / "__init__.py").write_text("")
    assert_one_line(smemet("new-driver", "tmp117", "--bus", "i2c", "--firmware-dir", tree, user=NOBODY),
                    tree / "drivers")


def test_commission_into_a_key_store_it_cannot_write(site, port):
    keys = site["closed"] / "keys.toml"
    write_keys(str(keys), ["n1"])
    os.chown(keys, NOBODY, NOBODY)
    os.chown(port, NOBODY, NOBODY)  # the port is the user's: the key store is the mistake
    result = smemet("commission", "--port", port, "--node-id", "new-1", "--gateway", "127.0.0.1", "--keys", keys,
                    "--metrics", "http://127.0.0.1:1/metrics", user=NOBODY)
    assert_one_line(result, "cannot add a key to", "not writable")
    assert "✓" not in result.stdout, "nothing is done before the mistake is found"


# -- the command line's own conventions ------------------------------------------------


def test_smemet_alone_prints_help_and_succeeds():
    result = smemet()
    assert result.returncode == 0 and "usage: smemet" in result.stdout and "COMMAND" in result.stdout


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag):
    from smemet import __version__

    result = smemet(flag)
    assert result.returncode == 0 and result.stdout.strip() == f"smemet {__version__}"


def test_help_command_shows_the_commands_usage():
    result = smemet("help", "gateway", "keys", "add")
    assert result.returncode == 0 and result.stdout.startswith("usage: smemet gateway keys add")
    assert_one_line(smemet("help", "gateway", "nosuch"), "no command 'gateway nosuch'", "check-config")


def test_a_mistyped_option_shows_that_commands_usage():
    result = smemet("gateway", "keys", "list", "--key-flie", "k.toml")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("usage: smemet gateway keys list")
    assert "smemet gateway keys list: error: " in result.stderr


def test_global_options_work_after_the_command_too(site):
    quiet = smemet("nodes", "--keys", site["keys"], "--metrics", "http://127.0.0.1:1/metrics", "-q")
    assert quiet.returncode == 2  # no gateway, no outbox: a clear error still shows under --quiet
    assert_one_line(quiet)


def test_bash_completion_offers_commands_options_and_choices(tmp_path):
    script = tmp_path / "smemet.bash"
    result = smemet("completion", "bash")
    assert result.returncode == 0
    script.write_text(result.stdout)

    def complete(*words):
        line = " ".join(f"'{w}'" for w in words)
        probe = (f"source {script}; COMP_WORDS=(smemet {line}); COMP_CWORD={len(words)}; _smemet; "
                 'printf "%s\\n" "${COMPREPLY[@]}"')
        done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("ga") == ["gateway"]
    assert complete("gateway", "keys", "") == ["add", "list"] or set(complete("gateway", "keys", "")) >= {"add", "list"}
    assert "--key-file" in complete("gateway", "keys", "add", "n1", "--")
    assert complete("new-driver", "x", "--bus", "") == ["i2c", "spi", "uart", "adc"]
    assert complete("nodes", "--gateway-config", "") == [], "a file argument: the shell completes file names"


def test_zsh_completion_loads_and_offers_the_same_words(tmp_path):
    if not shutil.which("zsh"):
        pytest.fail("zsh is not installed (.ci/bootstrap.sh installs it)")
    script = tmp_path / "_smemet"
    script.write_text(smemet("completion", "zsh").stdout)
    # zsh's own matching filters the words later; compgen -F shows what the script offers
    probe = (f"autoload -U compinit && compinit -u; source {script}; words=(smemet new-driver x --bus ''); "
             "CURRENT=5; COMP_WORDS=(smemet new-driver x --bus ''); COMP_CWORD=4; compgen -F _smemet -- ''")
    done = subprocess.run(["zsh", "-c", probe], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["i2c", "spi", "uart", "adc"]


def _closed_pipe(*args):
    """Run smemet with its output read by a reader that leaves early
    (``smemet ... | head -1``)."""
    process = subprocess.Popen([sys.executable, "-m", "smemet", *map(str, args)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    os.read(process.stdout.fileno(), 100)  # a few bytes: --json output is one long line
    process.stdout.close()  # head exits
    _, err = process.communicate(timeout=60)
    return process.returncode, err.decode()


def test_a_closed_pipe_is_not_an_error(tmp_path):
    keys = tmp_path / "keys.toml"
    keys.write_text("".join(f'"node-{i}" = "{HEX_KEY}"\n' for i in range(20000)))
    keys.chmod(0o600)
    code, err = _closed_pipe("gateway", "keys", "list", "--key-file", keys)
    assert code == 141 and err == "", err
    code, err = _closed_pipe("gateway", "keys", "list", "--key-file", keys, "--json")
    assert code == 141 and err == "", err
    code, err = _closed_pipe("completion", "bash")
    assert code in (0, 141) and err == "", err


def test_decode_into_a_closed_pipe(tmp_path):
    import json

    vector = json.loads((Path(__file__).parents[2] / "protocol" / "vectors" / "data-1ch-16-samples.json").read_text())
    frame = tmp_path / "frame.hex"
    frame.write_text(vector["frame_hex"])
    code, err = _closed_pipe("decode", "--key", vector["key_hex"], f"@{frame}")
    assert code in (0, 141) and err == "", err


def test_an_ascii_terminal_gets_ascii_not_a_traceback(site):
    env = dict(os.environ, PYTHONIOENCODING="ascii")
    from smemet.gateway.outbox import Outbox

    outbox = site["root"] / "outbox-ascii.sqlite"
    Outbox(str(outbox), 2**20).close()
    result = smemet("nodes", "--keys", site["keys"], "--outbox", outbox, "--metrics", "http://127.0.0.1:1/metrics",
                    env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "UnicodeEncodeError" not in result.stderr
    assert "n1" in result.stdout and "-" in result.stdout
    assert "warning" in result.stderr  # the unreachable gateway, said in ASCII


def test_an_internal_error_is_one_line_and_exit_1_with_the_traceback_under_verbose(monkeypatch, capsys):
    from smemet import cli, nodes

    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(nodes, "run", broken)
    assert cli.main(["nodes", "--keys", "k"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("smemet nodes: internal error: ZeroDivisionError: a bug") and "Traceback" not in err
    assert cli.main(["nodes", "--keys", "k", "--verbose"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_nodes_and_commission_against_a_web_page_instead_of_metrics(site, port):
    import http.server
    import threading

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html><body>router login</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/"
        assert_one_line(smemet("nodes", "--keys", site["keys"], "--metrics", url), "a web page", "metrics endpoint")
        assert_one_line(smemet("commission", "--port", port, "--node-id", "n1", "--gateway", "127.0.0.1",
                               "--keys", site["keys"], "--metrics", url), "a web page")
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("kind", ["opcua-user", "web-user"])
def test_user_lists_print_json_too(tmp_path, kind):
    users = tmp_path / "users"
    for name in ("mes", "anna"):
        added = smemet("gateway", kind, "add", name, "--users-file", users, "--password-stdin", stdin="a-long-password\n")
        assert added.returncode == 0, added.stderr
    import json

    listed = smemet("gateway", kind, "list", "--users-file", users, "--json")
    assert listed.returncode == 0 and sorted(json.loads(listed.stdout)) == ["anna", "mes"], listed.stderr
