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
    assert "5 messages, 1 channels" in out


def test_unreachable_broker_is_one_clear_line():
    result = subprocess.run([sys.executable, "-m", "smemet", "monitor", "--broker", "mqtt://127.0.0.1:1",
                             "--duration", "1", "--plain"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "cannot reach the broker" in result.stderr and "Traceback" not in result.stderr
