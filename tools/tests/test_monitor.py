"""``smemet monitor`` against a real Mosquitto."""

import json
import subprocess
import sys

import paho.mqtt.client as mqtt

from hil_tests.harness.broker import MosquittoBroker
from smemet.monitor import Table, sparkline


def test_table_keeps_last_value_quality_and_history():
    table = Table()
    for i, value in enumerate([1500.0, 1510.0, 1520.0]):
        table.feed(json.dumps({"node": "ladle-7", "channel": "tc_s", "seq": i, "time": 1.0 * i, "value": value,
                               "unit": "Cel", "quality": "good", "reason": None}).encode(), now=100.0 + i)
    table.feed(json.dumps({"node": "ladle-7", "channel": "loop", "seq": 3, "time": 3.0, "value": None,
                           "unit": None, "quality": "bad", "reason": "wire-break"}).encode(), now=103.0)
    table.feed(b"not json", now=104.0)
    text = table.render(now=104.0)
    assert "1520" in text and "Cel" in text and "bad:wire-break" in text
    assert "4 messages, 2 channels, 1 unreadable" in text
    assert "bad:wire-break" in text
    assert sparkline([0.0, 1.0]) == "▁█"


def test_monitor_shows_what_arrives_on_the_broker(tmp_path):
    with MosquittoBroker(tmp_path) as broker:
        proc = subprocess.Popen([sys.executable, "-m", "smemet", "monitor", "--broker", broker.url,
                                 "--prefix", "plant", "--duration", "4", "--plain"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert "monitoring plant/+/+" in proc.stderr.readline()  # subscribed
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        for i in range(5):
            payload = {"node": "furnace-1", "channel": "tc_b", "seq": i, "time": 1796000000.0 + i,
                       "value": 1580.0 + i, "unit": "Cel", "quality": "good", "reason": None}
            client.publish("plant/furnace-1/tc_b", json.dumps(payload), qos=1).wait_for_publish(5)
        client.loop_stop()
        client.disconnect()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "furnace-1" in out and "tc_b" in out and "1584" in out
    assert "5 messages, 1 channel" in out


def test_unreachable_broker_is_one_clear_line():
    result = subprocess.run([sys.executable, "-m", "smemet", "monitor", "--broker", "mqtt://127.0.0.1:1",
                             "--duration", "1", "--plain"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "cannot reach the broker" in result.stderr and "Traceback" not in result.stderr


def _doc(node, channel, value, quality="good", reason=None):
    return json.dumps({"node": node, "channel": channel, "seq": 1, "time": 1.0, "value": value, "unit": "Cel",
                       "quality": quality, "reason": reason}).encode()


def test_a_node_that_stopped_sending_is_stale_not_good():
    table = Table()
    for i in range(5):
        table.feed(_doc("furnace-1", "tc_s", 1500.0 + i), now=100.0 + i)
        table.feed(_doc("flowloop-2", "flow", 3.0), now=100.0 + i)
    table.feed(_doc("flowloop-2", "flow", 3.1), now=125.0)
    text = table.render(now=125.5)
    furnace = next(line for line in text.splitlines() if line.startswith("furnace-1"))
    flow = next(line for line in text.splitlines() if line.startswith("flowloop-2"))
    assert "stale" in furnace and " 22s" in furnace, furnace
    assert "good" in flow and "stale" not in flow and " 0s" in flow, flow
    assert table.snapshot(125.5)["rows"][1]["stale"] is True


def test_the_table_fits_a_60_column_terminal_and_colours_only_when_asked():
    table = Table()
    table.feed(_doc("converter-furnace-12", "thermocouple_s_long", 1534.25), now=100.0)
    table.feed(_doc("converter-furnace-12", "loop", None, "bad", "namur-fail-low"), now=100.0)
    table.feed(_doc("converter-furnace-12", "tc_b", 1.5, "uncertain", "out-of-range"), now=100.0)
    for width in (60, 80, 120):
        text = table.render(now=101.0, width=width)
        assert all(len(line) <= width for line in text.splitlines()), (width, text)
    assert "\x1b[" not in table.render(now=101.0, width=60)
    coloured = table.render(now=101.0, width=60, color=True)
    assert "\x1b[31m" in next(line for line in coloured.splitlines() if "loop" in line)  # bad: red
    assert "\x1b[33m" in next(line for line in coloured.splitlines() if "tc_b" in line)  # uncertain: yellow


def test_no_color_and_dumb_terminals_get_no_colour(monkeypatch):
    from smemet import term

    class Tty:
        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert term.color_enabled(Tty())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not term.color_enabled(Tty())
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert not term.color_enabled(Tty())


def _publish(port, topic, payload, retain=False, **login):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    if login:
        client.username_pw_set(login["username"], login["password"])
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def test_monitor_reconnects_when_the_broker_drops_and_shows_the_gateway_state(tmp_path):
    import time

    with MosquittoBroker(tmp_path) as broker:
        _publish(broker.port, "plant/status", json.dumps({"state": "online", "gateway": "plant1-gw", "route": "a"}),
                 retain=True)
        proc = subprocess.Popen([sys.executable, "-m", "smemet", "monitor", "--broker", broker.url, "--prefix", "plant",
                                 "--duration", "14", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert "monitoring plant/+/+" in proc.stderr.readline()
        _publish(broker.port, "plant/furnace-1/tc_b", _doc("furnace-1", "tc_b", 1580.0))
        broker.stop()
        assert "reconnecting" in proc.stderr.readline()
        time.sleep(2)
        broker.start()
        assert "connected again" in proc.stderr.readline()
        _publish(broker.port, "plant/furnace-1/tc_s", _doc("furnace-1", "tc_s", 1490.5))
        out, err = proc.communicate(timeout=40)
    assert proc.returncode == 0, err
    state = json.loads(out)
    assert {row["channel"]: row["value"] for row in state["rows"]} == {"tc_b": 1580.0, "tc_s": 1490.5}
    assert state["gateway"]["state"] == "online" and state["gateway"]["gateway"] == "plant1-gw"
    assert "Traceback" not in err


def test_the_header_says_when_the_gateway_is_offline():
    table = Table()
    table.link.state, table.link.broker, table.link.topics = "connected", "mqtt://b:1883", "plant/+/+"
    table.status(json.dumps({"state": "offline", "gateway": "plant1-gw"}).encode())
    assert table.render(now=1.0).splitlines()[0].startswith("gateway plant1-gw: offline | plant/+/+ on mqtt://b:1883")


def test_a_wrong_password_is_said_as_such(tmp_path):
    password = tmp_path / "pw"
    password.write_text("wrong\n")
    with MosquittoBroker(tmp_path / "b", users={"a": "right-pw"}) as broker:
        result = subprocess.run([sys.executable, "-m", "smemet", "monitor", "--broker", broker.url, "--username", "a",
                                 "--password-file", str(password), "--duration", "3"],
                                capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "refused the login (not authorized)" in result.stderr and "cannot reach" not in result.stderr


def test_broker_prefix_and_login_from_a_route_in_gateway_toml(tmp_path):
    from hil_tests.harness.nodes import write_config

    with MosquittoBroker(tmp_path / "b", users={"partner-a": "pw-a"}) as broker:
        (tmp_path / "partner-a.password").write_text("pw-a\n")
        (tmp_path / "partner-a.password").chmod(0o600)
        config = write_config(str(tmp_path), ["n1"], extra=(
            f'[[routes]]\nname = "partner-a"\nbroker = "{broker.url}"\ntopic_prefix = "plant1/a"\n'
            'include = ["*"]\nusername = "partner-a"\npassword_file = "partner-a.password"\n'))
        proc = subprocess.Popen([sys.executable, "-m", "smemet", "monitor", "--gateway-config", config, "--route",
                                 "partner-a", "--duration", "4", "--json"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd="/")
        assert "monitoring plant1/a/+/+" in proc.stderr.readline()
        _publish(broker.port, "plant1/a/n1/t", _doc("n1", "t", 21.5), username="partner-a", password="pw-a")
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert json.loads(out)["rows"][0]["value"] == 21.5


def test_a_wildcard_prefix_is_one_clear_line():
    result = subprocess.run([sys.executable, "-m", "smemet", "monitor", "--prefix", "plant1/#", "--duration", "1"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "without wildcards" in result.stderr
