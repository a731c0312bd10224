"""``smemet nodes`` against a real gateway process fed by simulated nodes:
last seen and store depth from its metrics, firmware version from the status
frames in its outbox — also while the gateway is stopped."""

from __future__ import annotations

import json
import os
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
