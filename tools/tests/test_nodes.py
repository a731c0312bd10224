"""``smemet nodes`` against a real gateway process fed by simulated nodes:
last seen and store depth from its metrics, firmware version from the status
frames in its outbox — also while the gateway is stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import pytest

from smemet import sim_fleet
from smemet.fieldtest import SupervisedGateway, smemet
from smemet.firmware_tool import build
from hil_tests.harness.nodes import SimNode


@pytest.fixture
def running(tmp_path):
    keys = {"furnace-1": os.urandom(32), "flowloop-2": os.urandom(32), "spare-3": os.urandom(32)}
    gw = SupervisedGateway(tmp_path / "gw", keys=keys).start()
    image = tmp_path / "image"
    build(image, romfs=True)
    fleet = sim_fleet.Fleet(tmp_path / "nodes", image)
    for name, story in (("furnace-1", "furnace_heatup"), ("flowloop-2", "wire_break")):
        s = sim_fleet.scenario(story)
        fleet.add(name, sim_fleet.node_config(name, keys[name], s, ("127.0.0.1", gw.udp_port)), s.sim_json())
    fleet.start()
    yield gw, fleet
    fleet.close()
    gw.stop()


def _wait_for_status(gw, nodes, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        state = json.loads(smemet("nodes", "--gateway-config", str(gw.config), "--json").stdout)
        rows = {r["node"]: r for r in state["nodes"]}
        if all(rows[n]["fw"] for n in nodes):
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.5)


def test_lists_registered_nodes_with_last_seen_store_depth_and_firmware(running):
    gw, fleet = running
    state = _wait_for_status(gw, ["furnace-1", "flowloop-2"])
    rows = {r["node"]: r for r in state["nodes"]}
    assert sorted(rows) == ["flowloop-2", "furnace-1", "spare-3"]
    assert state["gateway"] == "running" and state["rejects"] == {}
    for name in ("furnace-1", "flowloop-2"):
        row = rows[name]
        assert row["fw"] == "0.1.0" and row["reset_cause"] == "power-on"
        assert 0 <= row["last_seen_age_s"] < 10 and isinstance(row["store_depth"], int)
    assert rows["spare-3"]["last_seen"] is None and rows["spare-3"]["fw"] is None

    table = smemet("nodes", "--gateway-config", str(gw.config))
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["node", "last", "seen"]
    furnace = next(line for line in lines if line.startswith("furnace-1"))
    assert "0.1.0" in furnace and "ago" in furnace and "power-on" in furnace
    assert "never" in next(line for line in lines if line.startswith("spare-3"))
    assert "3 nodes; gateway running; rejects since gateway start: none" in table.stdout


def test_shows_rejects_of_a_node_with_the_wrong_key(running):
    gw, _fleet = running
    impostor = SimNode("spare-3", key=os.urandom(32))  # flashed with another key
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(2):
            sock.sendto(impostor.data_frame(samples=2), ("127.0.0.1", gw.udp_port))
    deadline = time.monotonic() + 10
    while True:
        state = json.loads(smemet("nodes", "--gateway-config", str(gw.config), "--json").stdout)
        spare = next(r for r in state["nodes"] if r["node"] == "spare-3")
        if spare["rejects"] or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert spare["rejects"] == {"bad-mac": 2}
    table = smemet("nodes", "--gateway-config", str(gw.config)).stdout
    assert "bad-mac 2" in next(line for line in table.splitlines() if line.startswith("spare-3"))


def test_with_the_gateway_stopped_the_outbox_still_tells(running):
    gw, fleet = running
    _wait_for_status(gw, ["furnace-1"])
    fleet.close()
    gw.stop()
    result = smemet("nodes", "--gateway-config", str(gw.config), "--json")
    assert result.returncode == 0, result.stderr
    assert "does not answer" in result.stderr  # said once, on stderr
    rows = {r["node"]: r for r in json.loads(result.stdout)["nodes"]}
    assert rows["furnace-1"]["fw"] == "0.1.0" and rows["furnace-1"]["last_seen"] is not None


def test_mistakes(tmp_path):
    missing = smemet("nodes", "--gateway-config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "config file not found" in missing.stderr
    keys = tmp_path / "keys.toml"
    keys.write_text('"a-1" = "' + "ab" * 32 + '"\n')
    keys.chmod(0o644)
    open_keys = smemet("nodes", "--keys", str(keys))
    assert open_keys.returncode == 2 and "chmod 600" in open_keys.stderr


def test_shows_the_sensors_that_need_calibration_attention(tmp_path):
    """Records added with ``smemet calibration add``: one due within the
    warning, one overdue, one fine; the gateway is stopped (only the outbox
    tells)."""
    import datetime as dt

    from smemet.gateway.outbox import Outbox

    keys = tmp_path / "keys.toml"
    keys.write_text('"furnace-1" = "' + "ab" * 32 + '"\n"ladle-2" = "' + "cd" * 32 + '"\n')
    keys.chmod(0o600)
    outbox = tmp_path / "outbox.sqlite"
    Outbox(str(outbox), 1 << 26).close()
    today = dt.date.today()
    for sensor, certificate, due in (("furnace-1/tc_s", "K-1", today + dt.timedelta(days=10)),
                                     ("furnace-1/tc_b", "K-2", today - dt.timedelta(days=3)),
                                     ("ladle-2/t", "K-3", today + dt.timedelta(days=200))):
        added = smemet("calibration", "add", sensor, "--certificate", certificate, "--lab", "Lab",
                       "--date", (today - dt.timedelta(days=300)).isoformat(), "--due", due.isoformat(),
                       "--offset", "0.5", "--uncertainty", "1.0", "--outbox", str(outbox))
        assert added.returncode == 0, added.stderr
    from smemet.fieldtest import free_port

    dead = f"http://127.0.0.1:{free_port()}/metrics"  # the gateway is stopped
    result = smemet("nodes", "--keys", str(keys), "--outbox", str(outbox), "--metrics", dead, "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["node"]: r for r in json.loads(result.stdout)["nodes"]}
    furnace = {item["sensor"]: item for item in rows["furnace-1"]["calibration"]}
    assert sorted(furnace) == ["furnace-1/tc_b", "furnace-1/tc_s"]
    assert furnace["furnace-1/tc_s"]["state"] == "due-soon" and furnace["furnace-1/tc_s"]["record"] == "K-1"
    assert 9 < furnace["furnace-1/tc_s"]["due_in_days"] <= 11
    assert furnace["furnace-1/tc_b"]["state"] == "overdue" and furnace["furnace-1/tc_b"]["due_in_days"] < -1
    assert rows["ladle-2"]["calibration"] == []  # due in 200 days: nothing to say
    table = smemet("nodes", "--keys", str(keys), "--outbox", str(outbox), "--metrics", dead).stdout
    line = next(line for line in table.splitlines() if line.startswith("furnace-1"))
    assert "tc_b overdue" in line and "tc_s due in" in line
    assert next(line for line in table.splitlines() if line.startswith("ladle-2")).rstrip().endswith("—")


def _nodes_json(gw, **kwargs):
    result = smemet("nodes", "--gateway-config", str(gw.config), "--json", **kwargs)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_key_added_but_not_loaded_is_named_until_the_gateway_reloads(tmp_path):
    with SupervisedGateway(tmp_path / "gw", keys={"furnace-1": os.urandom(32)}) as gw:
        added = smemet("gateway", "keys", "add", "ladle-9", "--config", str(gw.config))
        assert added.returncode == 0, added.stderr
        assert "systemctl reload smemet-gateway" in added.stderr, "keys add says the gateway must reload"
        node = SimNode("ladle-9", key=bytes.fromhex(added.stdout.strip()))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(3):
                sock.sendto(node.data_frame(samples=2), ("127.0.0.1", gw.udp_port))
        deadline = time.monotonic() + 10
        while True:
            row = next(r for r in _nodes_json(gw)["nodes"] if r["node"] == "ladle-9")
            if row["rejects"] or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert row["key_loaded"] is False and row["rejects"] == {"unknown-node": 3}
        table = smemet("nodes", "--gateway-config", str(gw.config)).stdout
        assert "key added, gateway not reloaded: run `systemctl reload smemet-gateway`" in table
        assert "unknown-node 3" in next(line for line in table.splitlines() if line.startswith("ladle-9"))
        furnace = next(r for r in _nodes_json(gw)["nodes"] if r["node"] == "furnace-1")
        assert furnace["key_loaded"] is True and furnace["note"] is None

        os.kill(gw.pid, signal.SIGHUP)  # what systemctl reload does
        deadline = time.monotonic() + 10
        while next(r for r in _nodes_json(gw)["nodes"] if r["node"] == "ladle-9")["key_loaded"] is not True:
            assert time.monotonic() < deadline, "the reloaded key is not shown as loaded"
            time.sleep(0.2)
        assert "not reloaded" not in smemet("nodes", "--gateway-config", str(gw.config)).stdout


def test_a_full_outbox_is_said_in_nodes_and_healthz(tmp_path):
    key = os.urandom(32)
    with SupervisedGateway(tmp_path / "gw", keys={"furnace-1": key},
                           outbox={"max_bytes": "64KiB", "commit_max_delay": 0}) as gw:
        node = SimNode("furnace-1", key=key)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            full = 0
            for _ in range(2000):
                sock.sendto(node.data_frame(samples=48), ("127.0.0.1", gw.udp_port))
                (_seqs, _ms, status), _ = node.open_ack(sock.recv(4096))
                full += status == 1
                if full >= 5:
                    break
        assert full >= 5, "the 64 KiB outbox never said full"
        deadline = time.monotonic() + 10
        while not (state := _nodes_json(gw))["storage"]["reason"]:  # /healthz is refreshed every second
            assert time.monotonic() < deadline, state
            time.sleep(0.2)
        assert state["storage"]["full"] is True and state["storage"]["refused_frames"] >= 5
        assert "max_bytes" in state["storage"]["reason"] and state["health"] == "failing"
        table = smemet("nodes", "--gateway-config", str(gw.config)).stdout
        assert "OUTBOX FULL: the gateway refuses frames" in table and "refused since gateway start" in table
        assert "rejects since gateway start: none" in table
        import urllib.error
        import urllib.request
        try:
            urllib.request.urlopen(gw.metrics_url.replace("/metrics", "/healthz"), timeout=5)
            raise AssertionError("a full outbox is 503 at /healthz")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
            health = json.loads(exc.read())
        assert health["status"] == "failing" and health["storage"]["full"] is True
        assert health["problems"][0].startswith("outbox full, frames refused")


def test_nodes_from_another_directory_needs_no_partner_password(tmp_path):
    site = tmp_path / "etc"
    with SupervisedGateway(site, keys={"furnace-1": os.urandom(32)}) as gw:
        config = gw.config.read_text() + (
            '\n[[routes]]\nname = "partner-a"\nbroker = "mqtt://127.0.0.1:1"\ninclude = ["*"]\n'
            'username = "a"\npassword_file = "partner-a.password"\n')
        gw.config.write_text(config.replace(str(gw.keys_file), "keys.toml"))  # relative: to the config file
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        result = smemet("nodes", "--gateway-config", os.path.relpath(gw.config, elsewhere), "--json", cwd=elsewhere)
        assert result.returncode == 0, result.stderr
        assert [r["node"] for r in json.loads(result.stdout)["nodes"]] == ["furnace-1"]
        checked = smemet("gateway", "check-config", "--config", str(gw.config), "--no-ports", cwd=elsewhere)
        assert checked.returncode == 2 and "partner-a.password does not exist" in checked.stderr, \
            "the gateway itself still needs the password file"
        assert str(site / "partner-a.password") in checked.stderr, "relative to the config file, not the cwd"
