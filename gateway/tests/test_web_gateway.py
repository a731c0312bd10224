"""The web console as part of the gateway: its [web] table's errors (one
line naming the key, exit 2 from the command line), refusing a network
address without a login, a port in use, TLS, the users file written by
``smemet gateway web-user``, and Modbus devices on the page."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import pytest

from smemet.gateway.config import parse_config
from smemet.gateway.errors import ConfigError
from smemet.gateway.service import Gateway
from smemet.gateway.sinks.web.passwords import PasswordHash, hash_password, read_users_file
from smemet.gateway.modbus.simulate import flow_meter, start_tcp
from hil_tests.harness.nodes import write_config, write_keys

PASSWORD = "plant-wifi-2024!"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_with(tmp_path, web: dict | str, **extra):
    write_keys(str(tmp_path / "keys.toml"), ["n1"])
    data = {"keys": {"file": "keys.toml"}, "outbox": {"path": "outbox.sqlite"}, "metrics": {"port": 0},
            "ingest": {"udp": {"bind": "127.0.0.1", "port": 0}}, "web": web, **extra}
    return parse_config(data, str(tmp_path / "gateway.toml"))


def smemet(*args, stdin: str | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smemet", *args], input=stdin, capture_output=True, text=True,
                          timeout=60, cwd=cwd)


# -- the [web] table ------------------------------------------------------

def test_the_console_is_off_with_port_zero(tmp_path):
    assert config_with(tmp_path, {"port": 0}).sinks["web"] is None


def test_defaults(tmp_path):
    web = config_with(tmp_path, {}).sinks["web"]
    assert (web.bind, web.port, web.users, web.tls, web.session_ttl) == ("127.0.0.1", 8470, {}, None, 8 * 3600.0)
    assert web.loopback and not web.login_required


@pytest.mark.parametrize("web, where, message", [
    ({"bind": "0.0.0.0"}, "web.bind", "0.0.0.0 is reachable from the network, so the console needs a login"),
    ({"bind": "192.168.1.20"}, "web.bind", "smemet gateway web-user add NAME"),
    ({"bind": "plant.local"}, "web.bind", "must be an IPv4 or IPv6 address"),
    ({"port": 70000}, "web.port", "out of range"),
    ({"colour": "red"}, "web.colour", "unknown key; valid keys are bind, port, users"),
    ({"users": {"anna": "secret"}}, "web.users.anna", "is not a password hash of the form scrypt$"),
    ({"users": {"an na": hash_password("x" * 8)}}, "web.users.an na", "user names are"),
    ({"users": "anna"}, "web.users", "must be a table of name"),
    ({"refresh": "0.01s"}, "web.refresh", "out of range"),
    ({"users_file": "missing-users"}, "web.users_file", "does not exist"),
    ({"tls": {"cert": "c.pem"}}, "web.tls.key", "is missing"),
])
def test_mistakes_name_the_key(tmp_path, web, where, message):
    with pytest.raises(ConfigError) as caught:
        config_with(tmp_path, web)
    assert caught.value.where.endswith(where)
    assert message in caught.value.message


def test_users_file_must_be_owner_only_and_hold_hashes(tmp_path):
    users = tmp_path / "web-users"
    users.write_text(f"anna:{hash_password(PASSWORD)}\n")
    users.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by its group, readable by others .mode 0644.; run chmod 600"):
        config_with(tmp_path, {"users_file": "web-users"})
    users.chmod(0o600)
    assert set(config_with(tmp_path, {"bind": "0.0.0.0", "users_file": "web-users"}).sinks["web"].users) == {"anna"}
    users.write_text("anna:not-a-hash\n")
    with pytest.raises(ConfigError, match="line 1 .anna.: the hash is not a password hash"):
        config_with(tmp_path, {"users_file": "web-users"})


def test_cli_refuses_a_network_address_without_users_in_one_line(tmp_path):
    path = write_config(str(tmp_path), ["n1"], extra='[web]\nbind = "0.0.0.0"\n')
    result = smemet("gateway", "run", "--config", path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "web.bind: 0.0.0.0 is reachable from the network" in lines[0]
    assert "Traceback" not in result.stderr


def test_cli_port_in_use_is_a_start_error_in_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = write_config(str(tmp_path), ["n1"], extra=f"[web]\nport = {port}\n")
        result = smemet("gateway", "run", "--config", path)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and f"web.port: cannot listen on 127.0.0.1:{port}" in errors[0]
    assert "in use by another program" in errors[0] and "choose another port" in errors[0]
    assert "Traceback" not in result.stderr


# -- smemet gateway web-user ------------------------------------------------

def test_web_user_writes_an_owner_only_file_the_gateway_accepts(tmp_path):
    config = tmp_path / "gateway.toml"
    write_config(str(tmp_path), ["n1"], extra='[web]\nbind = "0.0.0.0"\nusers_file = "web-users"\n')
    result = smemet("gateway", "web-user", "add", "anna", "--config", str(config), "--password-stdin",
                    stdin=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    users_path = tmp_path / "web-users"
    assert os.stat(users_path).st_mode & 0o777 == 0o600
    stored = read_users_file(str(users_path))
    assert PasswordHash.parse(stored["anna"]).matches(PASSWORD) and PASSWORD not in users_path.read_text()
    smemet("gateway", "web-user", "add", "ben", "--users-file", str(users_path), "--password-stdin",
           stdin="another-password\n")
    assert smemet("gateway", "web-user", "list", "--config", str(config)).stdout.split() == ["anna", "ben"]
    assert json.loads(smemet("gateway", "web-user", "list", "--config", str(config), "--json").stdout) == ["anna", "ben"]
    assert smemet("gateway", "check-config", "--config", str(config)).returncode == 0
    assert smemet("gateway", "web-user", "remove", "ben", "--config", str(config)).returncode == 0
    assert list(read_users_file(str(users_path))) == ["anna"]


@pytest.mark.parametrize("args, stdin, message", [
    (["add", "anna"], "short\n", "at least 8 characters"),
    (["add", "an na"], PASSWORD + "\n", "not a valid user name"),
    (["remove", "nobody"], None, "has no user 'nobody'"),
])
def test_web_user_mistakes_are_one_line(tmp_path, args, stdin, message):
    users = tmp_path / "web-users"
    smemet("gateway", "web-user", "add", "anna", "--users-file", str(users), "--password-stdin", stdin=PASSWORD + "\n")
    extra = ["--password-stdin"] if args[0] == "add" else []
    result = smemet("gateway", "web-user", *args, "--users-file", str(users), *extra, stdin=stdin)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


# -- TLS and logins over the network ------------------------------------------

def _certificate(directory) -> tuple[str, str]:
    from hil_tests.harness.broker import make_pki

    pki = make_pki(directory / "pki", hostname="localhost")
    os.chmod(pki.server_key, 0o600)
    return str(pki.ca), str(pki.server_cert), str(pki.server_key)


async def test_tls_console_with_a_login(tmp_path):
    ca, cert, key = _certificate(tmp_path)
    port = free_port()
    users = tmp_path / "web-users"
    users.write_text(f"anna:{hash_password(PASSWORD)}\n")
    users.chmod(0o600)
    web = {"bind": "127.0.0.1", "port": port, "users_file": str(users), "tls": {"cert": cert, "key": key}}
    gateway = Gateway(config_with(tmp_path, web))
    await gateway.start()
    try:
        context = ssl.create_default_context(cafile=ca)

        def login() -> tuple[int, str]:
            form = urllib.parse.urlencode({"user": "anna", "password": PASSWORD}).encode()
            request = urllib.request.Request(f"https://localhost:{port}/login", data=form,
                                             headers={"Accept": "application/json"})
            with urllib.request.urlopen(request, context=context, timeout=10) as answer:
                return answer.status, answer.headers["Set-Cookie"], answer.headers["Strict-Transport-Security"]

        status, cookie, hsts = await asyncio.to_thread(login)
        assert status == 200 and "Secure" in cookie and "HttpOnly" in cookie and hsts

        def gateway_doc():
            request = urllib.request.Request(f"https://localhost:{port}/api/v1/gateway",
                                             headers={"Cookie": cookie.split(";")[0]})
            with urllib.request.urlopen(request, context=context, timeout=10) as answer:
                return json.loads(answer.read())

        assert (await asyncio.to_thread(gateway_doc))["console"]["login"] is True
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):  # an untrusting client gets nothing
            await asyncio.to_thread(urllib.request.urlopen, f"https://localhost:{port}/healthz",
                                    context=ssl.create_default_context(), timeout=10)
    finally:
        await gateway.stop()


# -- Modbus devices -------------------------------------------------------------

async def test_modbus_devices_show_polled_or_failing(tmp_path):
    meter = flow_meter(2)
    device_port = free_port()
    server = await start_tcp([meter], device_port)
    port = free_port()
    link = {"transport": "tcp", "host": "127.0.0.1", "period": 0.2, "timeout": 0.3, "retries": 0}
    devices = [meter.config("flow-1", port=device_port, **link),
               meter.config("gone-2", port=free_port(), **link)]  # nothing listens there
    gateway = Gateway(config_with(tmp_path, {"port": port}, modbus={"devices": devices}))
    await gateway.start()

    def get(path):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return json.loads(answer.read())

    try:
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            devices = {d["name"]: d for d in (await asyncio.to_thread(get, "/api/v1/modbus"))["devices"]}
            if devices["flow-1"]["polls"] >= 2 and devices["gone-2"]["polls"] >= 2:
                break
            assert asyncio.get_running_loop().time() < deadline, devices
            await asyncio.sleep(0.1)
        assert devices["flow-1"]["state"] == "ok" and devices["flow-1"]["last_error"] == ""
        assert devices["gone-2"]["state"] == "failing" and devices["gone-2"]["last_error"] == "disconnected"
        assert devices["flow-1"]["address"] == f"127.0.0.1:{device_port}"
        node = await asyncio.to_thread(get, "/api/v1/node/flow-1")
        assert node["node"]["link"] == {"kind": "modbus", "peer": f"127.0.0.1:{device_port}"}
        assert {c["channel"] for c in node["channels"]} == {"total", "flow"}
        assert node["node"]["state"] == "ok"
    finally:
        await gateway.stop()
        await server.shutdown()
