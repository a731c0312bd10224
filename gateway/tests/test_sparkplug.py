"""The Sparkplug B sink against a real Mosquitto, every message decoded by
pysparkplug (an independent implementation), never by the gateway's code.

The first part is the spec-statement checklist: one test per normative
statement of Eclipse Sparkplug 3.0.0 that applies to an edge node, named
after its tck-id, so a reader sees what is covered.  Then the guarantees
the issue adds (history while the primary host is away, nothing lost, no
loss over broker restarts) and the config errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from pathlib import Path

import paho.mqtt.publish as mqtt_publish
import pysparkplug as sp
import pytest

from smemet.gateway.delivery import make_loops, run_loops
from smemet.gateway.errors import ConfigError
from smemet.gateway.sinks import ParseContext, SinkContext, sparkplug
from smemet.gateway.sinks.sparkplug.session import EdgeSession
from smemet.gateway.spine import Measurement
from hil_tests.harness.broker import MosquittoBroker, make_broker, mosquitto_broker
from hil_tests.harness.measurements import OutboxMeasurements, frames
from hil_tests.harness.sparkplug import SparkplugStream

__all__ = ["make_broker", "mosquitto_broker"]  # fixtures, used by name below

GROUP, EDGE = "plant1", "gw-1"
TOPIC = re.compile(r"^spBv1\.0/[^+/#]+/(NBIRTH|NDEATH|DBIRTH|DDEATH|NDATA|DDATA)/[^+/#]+(/[^+/#]+)?$")


@pytest.fixture
def source(tmp_path):
    src = OutboxMeasurements(tmp_path / "outbox.db")
    yield src
    src.close()


def table(broker: MosquittoBroker, **overrides) -> dict:
    doc = {"broker": broker.url, "group_id": GROUP, "edge_node_id": EDGE, "keepalive": 5}
    doc.update(overrides)
    return doc


class Running:
    """One Sparkplug sink under its delivery loop, as the gateway runs it."""

    def __init__(self, doc: dict, source: OutboxMeasurements, tmp: Path) -> None:
        self.config = sparkplug.parse(doc, ParseContext("test.toml", str(tmp), "gw"))
        self.sink = sparkplug.sinks(self.config, SinkContext("gw", source))[0]
        self.source = source
        self.loops = make_loops([self.sink], source)
        self.stop = asyncio.Event()
        self.task: asyncio.Task | None = None

    @property
    def cursor(self) -> int:
        return self.source.load_cursor(self.config.name)

    async def delivered(self, timeout: float = 20.0) -> None:
        """Until the durable cursor reaches the newest measurement."""
        deadline = time.monotonic() + timeout
        while self.cursor < self.source.last_id():
            assert time.monotonic() < deadline, f"cursor {self.cursor} of {self.source.last_id()}"
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(doc: dict, source, tmp: Path):
    run = Running(doc, source, tmp)
    run.task = asyncio.create_task(run_loops(run.loops, run.stop))
    try:
        yield run
    finally:
        run.stop.set()
        await asyncio.wait_for(run.task, 30)


def now_s() -> float:
    return time.time()


def live(nodes=("n1", "n2"), channels=("tc1", "tc2"), count=3, start=None) -> list[Measurement]:
    return frames(list(nodes), list(channels), count, start_time=start if start is not None else now_s() - count)


async def settle(sub, seconds: float = 0.3) -> SparkplugStream:
    await asyncio.sleep(seconds)  # QoS 0 messages have no acknowledgement to wait for
    return SparkplugStream(sub.snapshot())


def set_host(broker: MosquittoBroker, host: str, online: bool, timestamp: int | None = None) -> None:
    """What a primary host publishes: retained STATE, QoS 1 (§6.4.5)."""
    payload = json.dumps({"online": online, "timestamp": timestamp or int(time.time() * 1000)})
    mqtt_publish.single(f"spBv1.0/STATE/{host}", payload, qos=1, retain=True, hostname=broker.host, port=broker.port)


def rebirth_request(broker: MosquittoBroker) -> None:
    """NCMD 'Node Control/Rebirth' = true, encoded by pysparkplug, QoS 0."""
    now = sp.get_current_timestamp()
    payload = sp.NCmd(timestamp=now, metrics=(sp.Metric(timestamp=now, name="Node Control/Rebirth",
                                                        datatype=sp.DataType.BOOLEAN, value=True),))
    mqtt_publish.single(f"spBv1.0/{GROUP}/NCMD/{EDGE}", payload.encode(include_dtypes=True), qos=0,
                        hostname=broker.host, port=broker.port)


async def one_session(broker, source, tmp, doc=None, data=None, wait=True) -> SparkplugStream:
    """Deliver ``data`` (default: live readings of two nodes) and stop cleanly."""
    source.add(data if data is not None else live(), received=now_s())
    with broker.subscriber("spBv1.0/#", persistent=False) as sub:
        async with running(doc or table(broker), source, tmp) as run:
            await run.delivered()
        return await settle(sub)


# ======================================================================
# Spec checklist (Sparkplug 3.0.0), one test per edge-node statement
# ======================================================================


async def test_tck_id_topic_structure_and_namespace_a(mosquitto_broker, source, tmp_path):
    stream = await one_session(mosquitto_broker, source, tmp_path)
    assert stream.messages
    for message in stream.messages:
        assert TOPIC.match(message.topic), message.topic
        assert message.group == GROUP and message.edge_node == EDGE


async def test_tck_id_topic_structure_namespace_valid_device_id(mosquitto_broker, source, tmp_path):
    data = [Measurement(0, "line+1/#a", 1, "t", now_s(), 1.0, "Cel")]
    stream = await one_session(mosquitto_broker, source, tmp_path, data=data)
    devices = {m.device for m in stream.of("DBIRTH", "DDATA")}
    assert devices == {"line_1__a"}


async def test_tck_id_topics_nbirth_mqtt_seq_num_timestamp(mosquitto_broker, source, tmp_path):
    before = int(time.time() * 1000)
    stream = await one_session(mosquitto_broker, source, tmp_path)
    nbirth = stream.of("NBIRTH")[0]
    assert (nbirth.qos, nbirth.retain) == (0, False)
    assert nbirth.seq == 0
    assert before <= nbirth.payload.timestamp <= int(time.time() * 1000)


async def test_tck_id_topics_nbirth_bdseq_included_and_rebirth_metric(mosquitto_broker, source, tmp_path):
    stream = await one_session(mosquitto_broker, source, tmp_path)
    metrics = {m.name: m for m in stream.of("NBIRTH")[0].metrics}
    assert metrics["bdSeq"].value == 0
    rebirth = metrics["Node Control/Rebirth"]
    assert rebirth.datatype == sp.DataType.BOOLEAN and rebirth.value is False


async def test_tck_id_topics_nbirth_bdseq_increment_on_every_connect(make_broker, source, tmp_path):
    """0 first, +1 per MQTT CONNECT -- across a broker restart and across a
    gateway restart (kept in a file beside the outbox)."""
    broker = make_broker()
    source.add(live(), received=now_s())
    with broker.subscriber("spBv1.0/+/NBIRTH/#", client_id="watch-bdseq") as sub:
        async with running(table(broker), source, tmp_path) as run:
            await run.delivered()
            await sub.wait_for(1)
            broker.restart()
            await sub.wait_for(2, timeout=30)
        async with running(table(broker), source, tmp_path):
            await sub.wait_for(3, timeout=30)
        stream = SparkplugStream(sub.snapshot())
    bd_seqs = [next(m.value for m in b.metrics if m.name == "bdSeq") for b in stream.of("NBIRTH")]
    assert bd_seqs[:3] == [0, 1, 2]


def test_tck_id_topics_nbirth_bdseq_wraps_after_255():
    session = EdgeSession(GROUP, EDGE, last_bd_seq=254)
    wills = [sp.NDeath.decode(session.connect(0).payload) for _ in range(3)]
    assert [w.bd_seq_metric.value for w in wills] == [255, 0, 1]


async def test_tck_id_topics_ndeath_payload_seq_and_will_qos_retain(mosquitto_broker, source, tmp_path):
    """The will: QoS 1 (a QoS 1 subscriber gets it at QoS 1), not retained,
    only the bdSeq metric, no seq; its bdSeq is the NBIRTH's."""
    source.add(live(), received=now_s())
    with mosquitto_broker.subscriber("spBv1.0/#", persistent=False) as sub:
        run = Running(table(mosquitto_broker), source, tmp_path)
        run.task = asyncio.create_task(run_loops(run.loops, run.stop))
        await run.delivered()
        run.sink._connection._transport.abort()  # noqa: SLF001 - the TCP connection dies without DISCONNECT
        await sub.wait_for(1, lambda m: "/NDEATH/" in m.topic, timeout=30)
        run.stop.set()
        await asyncio.wait_for(run.task, 30)
        stream = SparkplugStream(sub.snapshot())
    death = stream.of("NDEATH")[0]
    assert (death.qos, death.retain) == (1, False)
    assert death.seq is None and not death.raw.HasField("seq")
    assert [m.name for m in death.raw.metrics] == ["bdSeq"]
    nbirth = stream.of("NBIRTH")[0]
    assert death.payload.bd_seq_metric.value == next(m.value for m in nbirth.metrics if m.name == "bdSeq")


async def test_tck_id_topics_dbirth_mqtt_seq_timestamp_metrics(mosquitto_broker, source, tmp_path):
    stream = await one_session(mosquitto_broker, source, tmp_path)
    births = stream.of("DBIRTH")
    assert {b.device for b in births} == {"n1", "n2"}
    for birth in births:
        assert (birth.qos, birth.retain) == (0, False)
        assert birth.payload.timestamp > 0
        for metric in birth.metrics:
            assert metric.name in ("tc1", "tc2") and metric.datatype == sp.DataType.DOUBLE
            assert metric.alias is not None
            assert metric.is_null or metric.value is not None  # a value, or explicitly none yet


async def test_tck_id_topics_ddata_mqtt_seq_num_timestamp(mosquitto_broker, source, tmp_path):
    stream = await one_session(mosquitto_broker, source, tmp_path)
    data = stream.of("DDATA")
    assert data
    for message in data:
        assert (message.qos, message.retain) == (0, False)
        assert message.seq is not None and message.payload.timestamp > 0


async def test_tck_id_payloads_sequence_num_incrementing_and_wrapping(mosquitto_broker, source, tmp_path):
    """seq: 0 in NBIRTH, then +1 per message of the edge node, 255 -> 0
    (300 nodes: more than 256 DBIRTH + DDATA)."""
    data = frames([f"n{i:03}" for i in range(300)], ["t"], 1, start_time=now_s())
    stream = await one_session(mosquitto_broker, source, tmp_path, data=data)
    seqs = [m.seq for m in stream.messages if m.kind != "NDEATH"]
    assert seqs[0] == 0 and len(seqs) > 600
    for previous, current in zip(seqs, seqs[1:]):
        assert current == (previous + 1) % 256
    assert seqs.count(0) >= 3  # it wrapped


async def test_tck_id_payloads_alias_uniqueness_and_data_uses_aliases(mosquitto_broker, source, tmp_path):
    stream = await one_session(mosquitto_broker, source, tmp_path)
    aliases = [(m.alias, b.device, m.name) for b in stream.of("DBIRTH") for m in b.metrics]
    assert len({a for a, _, _ in aliases}) == len(aliases), "an alias names one metric of the edge node"
    for message in stream.of("DDATA"):
        assert all(not m.HasField("name") and m.HasField("alias") for m in message.raw.metrics)
    # resolvable from the births alone (SparkplugStream resolves them so)
    assert {(p.device, p.name) for p in stream.measurements()} == {(d, c) for d in ("n1", "n2") for c in ("tc1", "tc2")}


async def test_tck_id_operational_behavior_data_publish_dbirth_order(mosquitto_broker, source, tmp_path):
    """Live metrics of a DDATA in chronological order, even when storage
    order is not (a node's clock went back)."""
    t = now_s()
    data = [Measurement(0, "n1", 1, "t", t, 1.0, "Cel"), Measurement(0, "n1", 2, "t", t - 5, 2.0, "Cel"),
            Measurement(0, "n1", 3, "t", t - 2, 3.0, "Cel")]
    stream = await one_session(mosquitto_broker, source, tmp_path, data=data)
    stamps = [m.timestamp for d in stream.of("DDATA") for m in d.metrics]
    assert stamps == sorted(stamps) and len(stamps) == 3


async def test_tck_id_message_flow_edge_node_birth_publish_connect_clean_session(mosquitto_broker, source,
                                                                                 tmp_path):
    """Clean session/clean start on every CONNECT, read from Mosquitto's
    own log ("c1")."""
    for version in ("3.1.1", "5"):
        await one_session(mosquitto_broker, source, tmp_path, doc=table(mosquitto_broker, mqtt_version=version),
                          data=live(count=1))
    log = (mosquitto_broker.log_path).read_text()
    lines = [line for line in log.splitlines() if "as smemet-gw-sparkplug-gw-1" in line and "New client" in line]
    assert {re.search(r"\(p(\d)", line).group(1) for line in lines} == {"2", "5"}  # Mosquitto names 3.1.1 "p2"
    assert all(", c1," in line for line in lines), lines


async def test_tck_id_operational_behavior_edge_node_intentional_disconnect_ndeath_and_packet(
        mosquitto_broker, source, tmp_path):
    """A clean stop publishes NDEATH then DISCONNECTs: exactly one NDEATH
    (the broker drops the will), with the session's bdSeq."""
    stream = await one_session(mosquitto_broker, source, tmp_path)
    await asyncio.sleep(1.0)
    deaths = stream.of("NDEATH")
    assert len(deaths) == 1 and deaths[0].payload.bd_seq_metric.value == 0
    log = mosquitto_broker.log_path.read_text()
    assert re.search(r"Client smemet-gw-sparkplug-gw-1 disconnected\.", log), "a DISCONNECT, not a dropped socket"


async def test_tck_id_operational_behavior_data_commands_rebirth(mosquitto_broker, source, tmp_path):
    """NCMD 'Node Control/Rebirth' (subscribed: tck-id-message-flow-edge-node-ncmd-subscribe):
    data stops, NBIRTH with the same bdSeq (action-3) and seq 0, a DBIRTH
    for every live device (action-2), then data goes on."""
    source.add(live(), received=now_s())
    with mosquitto_broker.subscriber("spBv1.0/#", persistent=False) as sub:
        async with running(table(mosquitto_broker), source, tmp_path) as run:
            await run.delivered()
            rebirth_request(mosquitto_broker)
            await sub.wait_for(2, lambda m: "/NBIRTH/" in m.topic, timeout=10)
            await asyncio.sleep(0.3)
            source.add(live(count=1, start=now_s()), received=now_s())
            await run.delivered()
            stream = await settle(sub)
    kinds = [(m.kind, m.device) for m in stream.messages]
    second = [i for i, (kind, _) in enumerate(kinds) if kind == "NBIRTH"][1]
    nbirths = stream.of("NBIRTH")
    bd = [next(m.value for m in b.metrics if m.name == "bdSeq") for b in nbirths]
    assert bd[0] == bd[1]
    assert stream.messages[second].seq == 0
    assert kinds[second + 1:second + 3] == [("DBIRTH", "n1"), ("DBIRTH", "n2")]
    assert [k for k, _ in kinds[second + 3:]].count("DDATA") == 2


async def test_tck_id_operational_behavior_device_ddeath_and_rebirth(mosquitto_broker, source, tmp_path):
    """A node silent past device_timeout: DDEATH (QoS 0, seq: tck-id-topics-ddeath-mqtt,
    -seq-num); when it sends again: DBIRTH before its data."""
    source.add(live(nodes=("n1",)), received=now_s())
    with mosquitto_broker.subscriber("spBv1.0/#", persistent=False) as sub:
        async with running(table(mosquitto_broker, device_timeout="2s"), source, tmp_path) as run:
            await run.delivered()
            await sub.wait_for(1, lambda m: "/DDEATH/" in m.topic, timeout=15)
            source.add(live(nodes=("n1",), count=1, start=now_s()), received=now_s())
            await run.delivered()
            stream = await settle(sub)
    kinds = [m.kind for m in stream.messages if m.device == "n1"]
    death = kinds.index("DDEATH")
    assert kinds[:death] == ["DBIRTH", "DDATA"]
    assert kinds[death + 1:death + 3] == ["DBIRTH", "DDATA"]
    ddeath = stream.of("DDEATH")[0]
    assert (ddeath.qos, ddeath.retain) == (0, False) and ddeath.seq is not None


async def test_tck_id_operational_behavior_data_publish_dbirth_new_channel(mosquitto_broker, source, tmp_path):
    """A DBIRTH declares every metric the device publishes in the session: a
    new channel brings a new DBIRTH with all of them, old aliases kept."""
    t = now_s()
    data = [Measurement(0, "n1", 1, "a", t, 1.0, "Cel"), Measurement(0, "n1", 2, "a", t + 1, 2.0, "Cel"),
            Measurement(0, "n1", 2, "b", t + 1, 5, "Pa")]
    stream = await one_session(mosquitto_broker, source, tmp_path, data=data)
    births = stream.of("DBIRTH")
    assert [sorted(m.name for m in b.metrics) for b in births] == [["a"], ["a", "b"]]
    alias_a = [next(m.alias for m in b.metrics if m.name == "a") for b in births]
    assert alias_a[0] == alias_a[1]
    b_metric = next(m for m in births[1].metrics if m.name == "b")
    assert b_metric.datatype == sp.DataType.INT64
    kinds = [m.kind for m in stream.of("DBIRTH", "DDATA")]
    assert kinds == ["DBIRTH", "DDATA", "DBIRTH", "DDATA"]


async def test_tck_id_message_flow_edge_node_birth_publish_phid_wait(mosquitto_broker, source, tmp_path):
    """With a primary host configured: no NBIRTH (nothing at all) before its
    STATE says online (tck-id-operational-behavior-edge-node-birth-sequence-wait)."""
    set_host(mosquitto_broker, "scada", False)
    source.add(live(), received=now_s())
    with mosquitto_broker.subscriber("spBv1.0/#", persistent=False) as sub:
        async with running(table(mosquitto_broker, primary_host_id="scada"), source, tmp_path) as run:
            await asyncio.sleep(2.0)
            assert not [m for m in sub.snapshot() if not m.topic.startswith("spBv1.0/STATE/")]
            assert run.cursor == 0
            set_host(mosquitto_broker, "scada", True)
            await run.delivered()
        stream = await settle(sub)
    assert stream.of("NBIRTH")


async def test_tck_id_operational_behavior_primary_application_state_offline_ends_session(
        mosquitto_broker, source, tmp_path):
    """The primary host goes offline: NDEATH, disconnect, nothing more until
    it is back; then a new session (bdSeq + 1)."""
    set_host(mosquitto_broker, "scada", True)
    source.add(live(), received=now_s())
    with mosquitto_broker.subscriber("spBv1.0/#", persistent=False) as sub:
        async with running(table(mosquitto_broker, primary_host_id="scada"), source, tmp_path) as run:
            await run.delivered()
            set_host(mosquitto_broker, "scada", False)
            await sub.wait_for(1, lambda m: "/NDEATH/" in m.topic, timeout=10)
            count = len(sub.snapshot())
            source.add(live(count=2, start=now_s()), received=now_s())
            await asyncio.sleep(2.0)
            assert len(sub.snapshot()) == count, "published while the primary host was offline"
            set_host(mosquitto_broker, "scada", True)
            await run.delivered()
        stream = await settle(sub)
    nbirths = stream.of("NBIRTH")
    assert [next(m.value for m in b.metrics if m.name == "bdSeq") for b in nbirths] == [0, 1]


def test_tck_id_host_state_older_timestamp_is_ignored():
    """A late will of the host (older timestamp) must not take it offline."""
    session = EdgeSession(GROUP, EDGE)
    assert session.host_state(b'{"online": true, "timestamp": 2000}') is True
    assert session.host_state(b'{"online": false, "timestamp": 1000}') is None
    assert session.host_state(b'{"online": false, "timestamp": 3000}') is False
    assert session.host_state(b"not json") is None


# ======================================================================
# What the issue adds: properties, history, no loss
# ======================================================================


async def test_units_and_quality_properties(mosquitto_broker, source, tmp_path):
    t = now_s()
    data = [Measurement(0, "n1", 1, "tc", t, 1500.5, "Cel"),
            Measurement(0, "n1", 2, "tc", t + 1, None, "Cel", "bad", "wire-break"),
            Measurement(0, "n1", 3, "tc", t + 2, 1490.0, "Cel", "uncertain", "spike-replaced"),
            Measurement(0, "n1", 4, "tc", t + 3, 1491.0, "Cel")]
    stream = await one_session(mosquitto_broker, source, tmp_path, data=data)
    birth = stream.of("DBIRTH")[0]
    from hil_tests.harness.sparkplug import properties_of
    assert properties_of(birth.raw.metrics[0])["engUnit"] == "Cel"
    points = sorted(stream.measurements(), key=lambda p: p.timestamp)
    assert [p.value for p in points] == [1500.5, None, 1490.0, 1491.0]
    assert points[0].properties == {}
    assert points[1].properties == {"Quality": -2147483648, "qualityReason": "wire-break"}
    assert points[2].properties == {"Quality": 1073741824, "qualityReason": "spike-replaced"}
    assert points[3].properties == {"Quality": 192}, "good again is said once"


async def test_a_corrected_value_names_its_calibration_record(mosquitto_broker, source, tmp_path):
    """``calibration`` (String) on exactly the values a record corrected,
    beside the quality properties; decoded by pysparkplug."""
    t = now_s()
    data = [Measurement(0, "n1", 1, "tc", t, 1500.5, "Cel"),
            Measurement(0, "n1", 2, "tc", t + 1, 1502.0, "Cel", calibration="K-2025-117"),
            Measurement(0, "n1", 3, "tc", t + 2, 1490.0, "Cel", "uncertain", "calibration-due", calibration="K-2025-117"),
            Measurement(0, "n1", 4, "tc", t + 3, 1491.0, "Cel")]
    stream = await one_session(mosquitto_broker, source, tmp_path, data=data)
    points = sorted(stream.measurements(), key=lambda p: p.timestamp)
    assert [p.value for p in points] == [1500.5, 1502.0, 1490.0, 1491.0]
    assert points[0].properties == {}
    assert points[1].properties == {"calibration": "K-2025-117"}
    assert points[2].properties == {"Quality": 1073741824, "qualityReason": "calibration-due",
                                    "calibration": "K-2025-117"}
    assert points[3].properties == {"Quality": 192}


async def test_history_while_primary_host_offline_arrives_flagged_oldest_first(mosquitto_broker, source, tmp_path):
    set_host(mosquitto_broker, "scada", True)
    with mosquitto_broker.subscriber("spBv1.0/#", persistent=False) as sub:
        async with running(table(mosquitto_broker, primary_host_id="scada"), source, tmp_path) as run:
            source.add(live(count=2), received=now_s())
            await run.delivered()
            set_host(mosquitto_broker, "scada", False)
            await sub.wait_for(1, lambda m: "/NDEATH/" in m.topic, timeout=10)
            held_from = now_s()
            held = frames(["n1", "n2"], ["tc1", "tc2"], 20, start_time=held_from)
            held = [Measurement(0, m.node, m.seq + 100, m.channel, m.time, m.value, m.unit) for m in held]
            source.add(held, received=now_s())
            await asyncio.sleep(1.0)
            assert run.cursor < source.last_id(), "the cursor must not pass what the host did not get"
            set_host(mosquitto_broker, "scada", True)
            await run.delivered()
            source.add(live(count=1, start=now_s() + 60), received=now_s())
            await run.delivered()
        stream = await settle(sub)
    points = stream.measurements()
    history = [p for p in points if p.historical]
    assert {(p.device, p.name, p.timestamp) for p in history} >= {
        (m.node, m.channel, int(round(m.time * 1000))) for m in held}
    assert [p.value for p in history if p.device == "n1" and p.name == "tc1"][-20:] == \
        [m.value for m in held if m.node == "n1" and m.channel == "tc1"], "oldest first, values kept"
    newest = [p for p in points if p.timestamp >= int((now_s() + 30) * 1000)]
    assert newest and not any(p.historical for p in newest), "live data after the history is live"


async def test_every_measurement_exactly_once_after_dedup_over_broker_restart(make_broker, source, tmp_path):
    broker = make_broker()
    first = frames(["n1", "n2", "n3"], ["tc1", "tc2"], 300, start_time=now_s() - 1000)
    source.add(first, received=now_s())
    with broker.subscriber("spBv1.0/#", client_id="historian") as sub:  # persistent session
        async with running(table(broker), source, tmp_path) as run:
            await sub.wait_for(5, lambda m: "/DDATA/" in m.topic)
            broker.stop()
            second = frames(["n1", "n2", "n3"], ["tc1", "tc2"], 100, start_time=now_s() - 300)
            second = [Measurement(0, m.node, m.seq + 300, m.channel, m.time, m.value, m.unit) for m in second]
            source.add(second, received=now_s())
            await asyncio.sleep(1.0)
            broker.start()
            await run.delivered(timeout=60)
        stream = await settle(sub, 1.0)
    expected = {(m.node, m.channel, int(round(m.time * 1000))): m.value for m in first + second}
    unique = stream.unique()
    assert {key: p.value for key, p in unique.items()} == expected


async def test_cursor_waits_for_the_puback_that_follows_the_data(mosquitto_broker, source, tmp_path):
    """A broker that stops answering: QoS 0 data written to the socket is
    not counted delivered; only a PUBACK after it moves the cursor."""
    source.add(live(count=2), received=now_s())
    async with running(table(mosquitto_broker), source, tmp_path) as run:
        await run.delivered()
        done = run.cursor
        mosquitto_broker.process.send_signal(__import__("signal").SIGSTOP)  # alive, silent: no PUBACK
        try:
            source.add(live(count=2, start=now_s()), received=now_s())
            await asyncio.sleep(1.5)
            assert run.cursor == done
        finally:
            mosquitto_broker.process.send_signal(__import__("signal").SIGCONT)
        await run.delivered()


def test_config_errors_name_the_key(tmp_path):
    context = ParseContext("gateway.toml", str(tmp_path), "gw")
    cases = [
        ({"group_id": "g"}, "gateway.toml: sparkplug.broker: is missing"),
        ({"broker": "mqtt://h:1883"}, "gateway.toml: sparkplug.group_id: is missing"),
        ({"broker": "mqtt://h:1883", "group_id": "a/b"}, "gateway.toml: sparkplug.group_id: 'a/b' contains"),
        ({"broker": "mqtt://h:1883", "group_id": "g", "edge_node_id": "x+"}, "sparkplug.edge_node_id"),
        ({"broker": "mqtt://h:1883", "group_id": "g", "device_timeout": "soon"}, "sparkplug.device_timeout"),
        ({"broker": "mqtt://h:1883", "group_id": "g", "confirm_topic": "spBv1.0/x"}, "sparkplug.confirm_topic"),
        ({"broker": "http://h", "group_id": "g"}, "sparkplug.broker"),
        ({"broker": "mqtt://h:1883", "group_id": "g", "qos": 1}, "sparkplug.qos: unknown key"),
    ]
    for doc, expected in cases:
        with pytest.raises(ConfigError) as err:
            sparkplug.parse(doc, context)
        assert expected in str(err.value), str(err.value)
    config = sparkplug.parse({"broker": "mqtt://h:1883", "group_id": "g"}, context)
    assert (config.edge_node_id, config.name) == ("gw", "sparkplug:g/gw")
