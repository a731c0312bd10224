"""The OPC UA server against asyncua's own client (the independent checker):
the gateway runs in-process on loopback, simulated nodes send real
COSE_Mac0/SenML frames over UDP, the client browses, reads, subscribes,
reads history and tries what it must not do."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cbor2
import pytest
from asyncua import Client, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from hil_tests.harness.broker import MosquittoBroker
from hil_tests.harness.nodes import SimNode, write_config
from smemet.gateway.config import load_config, parse_config
from smemet.gateway.errors import ConfigError, GatewayError
from smemet.gateway.service import Gateway
from smemet.protocol import cose, messages, senml

NS = "urn:smemet-edge:measurements"
NODES = ["furnace-1", "loop-1", "quiet-1"]
S = ua.StatusCodes
LIMIT_LOW, LIMIT_HIGH = 0x100, 0x200

CHAINS = """
[channels."loop-1/flow_*"]
unit = "m3/h"
steps = [{ type = "current_loop", lrv = 0.0, urv = 16.0 }]

[channels."furnace-1/wall"]
steps = [{ type = "range", min = 0.0, max = 400.0 }]
"""


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Plant:
    """A gateway with [opcua] on loopback and nodes that send to it."""

    def __init__(self, tmp_path: Path, opcua: str = "", extra: str = "") -> None:
        self.tmp_path = tmp_path
        self.port = free_tcp_port()
        self.config_path = write_config(str(tmp_path), NODES,
                                        extra=f"[opcua]\nport = {self.port}\n{opcua}\n{CHAINS}\n{extra}")
        self.nodes = {name: SimNode(name) for name in NODES}
        self.gateway: Gateway | None = None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)

    @property
    def url(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}"

    async def start(self) -> Plant:
        self.gateway = Gateway(load_config(self.config_path))
        await self.gateway.start()
        return self

    async def stop(self) -> None:
        self.sock.close()
        if self.gateway is not None:
            await self.gateway.stop()

    def send(self, node: str, records, status: bool = False) -> int:
        """One frame of ``records`` (name, unit, value, Unix s, quality reason
        or None) from ``node``; returns its sequence number."""
        sim = self.nodes[node]
        builder = senml.PackBuilder(64)
        for name, unit, value, moment, reason in records:
            if status and isinstance(value, str):
                builder.add_text(name, value, int(moment * 1000))
            else:
                builder.add(name, unit, value, int(moment * 1000), reason)
        sim.seq += 1
        content = messages.CT_STATUS if status else messages.CT_SENML
        frame = cose.create(sim.key, sim.kid, sim.seq, content, builder.encode(int(time.time() * 1000), True))
        self.sock.sendto(frame, self.gateway.udp.address[:2])
        return sim.seq

    def send_pack(self, node: str, pack: list[dict]) -> None:
        """A data frame whose SenML pack is written by hand (cbor2): boolean
        (vb) and data (vd) values, which node drivers do not send."""
        sim = self.nodes[node]
        sim.seq += 1
        self.sock.sendto(cose.create(sim.key, sim.kid, sim.seq, messages.CT_SENML, cbor2.dumps(pack)),
                         self.gateway.udp.address[:2])

    def stored(self, node: str, channel: str):
        """What the outbox holds for a channel (the gateway's own record)."""
        out = self.gateway.outbox.read(0, 100_000)
        return [m for m in out if m.node == node and m.channel == channel]


@pytest.fixture
async def plant(tmp_path):
    p = await Plant(tmp_path).start()
    yield p
    await p.stop()


async def eventually(check, timeout: float = 15.0, interval: float = 0.1):
    """Poll ``check`` (async, returns a truthy value when done) until it does."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s; last: {result!r}")
        await asyncio.sleep(interval)


async def read(client: Client, idx: int, nodeid: str) -> ua.DataValue:
    return await client.get_node(ua.NodeId(nodeid, idx)).read_data_value(raise_on_bad_status=False)


def single(x: float) -> float:
    return senml.to_single(x)


# ---------------------------------------------------------------- browse, read


async def test_browse_tree_and_read_values_with_source_timestamps(plant):
    t0 = round(time.time() - 2, 3)
    plant.send("furnace-1", [("tc1", "Cel", 1523.25, t0, None), ("tc1", "Cel", 1524.5, t0 + 1, None)])
    plant.send_pack("furnace-1", [{0: "door", 4: True, 6: t0 + 1}, {0: "tag", 8: b"\x01\xab", 6: t0 + 1}])
    async with Client(plant.url) as client:
        idx = await client.get_namespace_index(NS)
        await eventually(lambda: _good(client, idx, "furnace-1/tc1"))
        gateway = await client.nodes.objects.get_child([f"{idx}:{plant.gateway.config.gateway_id}"])
        assert gateway.nodeid == ua.NodeId(1, idx)
        node = await gateway.get_child([f"{idx}:furnace-1"])
        names = {(await c.read_browse_name()).Name for c in await node.get_children()}
        assert {"tc1", "door", "Diagnostics"} <= names
        tc1 = await node.get_child([f"{idx}:tc1"])
        assert tc1.nodeid == ua.NodeId("furnace-1/tc1", idx)
        dv = await tc1.read_data_value()
        assert dv.Value.Value == 1524.5 and dv.Value.VariantType == ua.VariantType.Double
        assert dv.StatusCode.value == S.Good
        newest = max(plant.stored("furnace-1", "tc1"), key=lambda m: m.time)
        assert newest.time == pytest.approx(t0 + 1, abs=0.001)
        assert dv.SourceTimestamp.timestamp() == pytest.approx(newest.time, abs=1e-6)  # the measurement's own time
        assert dv.ServerTimestamp is not None and dv.ServerTimestamp >= dv.SourceTimestamp
        assert await tc1.read_data_type() == ua.NodeId(ua.ObjectIds.Double)
        assert await tc1.read_type_definition() == ua.NodeId(ua.ObjectIds.BaseAnalogType)
        units = await (await tc1.get_child(["0:EngineeringUnits"])).read_value()
        assert units.UnitId == 0x43454C and units.NamespaceUri == "http://www.opcfoundation.org/UA/units/un/cefact"
        assert units.DisplayName.Text == "°C"
        await eventually(lambda: _good(client, idx, "furnace-1/tag"))
        door = await read(client, idx, "furnace-1/door")
        assert door.Value.Value is True and door.Value.VariantType == ua.VariantType.Boolean
        tag = await read(client, idx, "furnace-1/tag")
        assert tag.Value.Value == "01ab" and tag.Value.VariantType == ua.VariantType.String  # hex, as on MQTT
        access = await tc1.read_attribute(ua.AttributeIds.AccessLevel)
        assert access.Value.Value & ua.AccessLevel.HistoryRead.mask
        assert not access.Value.Value & ua.AccessLevel.CurrentWrite.mask


async def test_a_corrected_value_names_its_calibration_record(tmp_path):
    """``<channel>#Calibration`` (String, a property in the gateway's
    namespace): the id of the record that corrected the newest value, read
    by asyncua's client; the value is the corrected one."""
    import datetime as dt
    import subprocess
    import sys

    plant = await Plant(tmp_path, extra='[channels."furnace-1/tc_s"]\nsteps = [{ type = "calibration" }]\n').start()
    try:
        today = dt.date.today()
        added = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "smemet", "calibration", "add", "furnace-1/tc_s", "--certificate", "S-9",
            "--lab", "Lab", "--date", today.isoformat(), "--due", (today + dt.timedelta(days=180)).isoformat(),
            "--offset", "-1.5", "--uncertainty", "0.8", "--valid-from",
            (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)).isoformat(),
            "--outbox", plant.gateway.config.outbox.path], capture_output=True, text=True, timeout=60)
        assert added.returncode == 0, added.stderr
        t0 = round(time.time() - 1, 3)
        plant.send("furnace-1", [("tc_s", "Cel", 1200.25, t0, None), ("tc_b", "Cel", 1200.25, t0, None)])
        async with Client(plant.url) as client:
            idx = await client.get_namespace_index(NS)
            await eventually(lambda: _good(client, idx, "furnace-1/tc_b"))
            await eventually(lambda: _good(client, idx, "furnace-1/tc_s"))
            tc_s = client.get_node(ua.NodeId("furnace-1/tc_s", idx))
            assert (await tc_s.read_value()) == 1200.25 - 1.5
            prop = await tc_s.get_child([f"{idx}:Calibration"])
            assert await prop.read_value() == "S-9"
            assert await prop.read_type_definition() == ua.NodeId(ua.ObjectIds.PropertyType)
            tc_b = client.get_node(ua.NodeId("furnace-1/tc_b", idx))
            assert (await tc_b.read_value()) == 1200.25
            assert "Calibration" not in {(await c.read_browse_name()).Name for c in await tc_b.get_children()}
    finally:
        await plant.stop()


async def _good(client, idx, nodeid):
    dv = await read(client, idx, nodeid)
    return dv.StatusCode.value == S.Good and dv.Value.Value is not None


async def test_status_codes_for_each_quality_case(plant):
    now = round(time.time() - 1, 3)
    plant.send("loop-1", [
        ("flow_ok", "mA", 12.0, now, None),          # 8 m3/h
        ("flow_wire", "mA", 3.0, now, None),         # NE43 <= 3.6 mA: wire break
        ("flow_short", "mA", 21.5, now, None),       # NE43 >= 21 mA: short circuit
        ("flow_under", "mA", 3.9, now, None),        # NE43 3.8..4 mA: measured, below span
    ])
    plant.send("furnace-1", [
        ("tc_k", "Cel", None, now, "open-circuit"),  # the node's converter: thermocouple open
        ("wall", "Cel", 450.0, now, None),           # beyond the range step's max
        ("vib", "m/s2", 3.25, now, "clipped"),       # a suspect reading, value kept
        ("adc", "V", None, now, "no-response"),      # the chip did not answer
    ])
    expected = {
        "loop-1/flow_ok": S.Good,
        "loop-1/flow_wire": S.BadSensorFailure | LIMIT_LOW,
        "loop-1/flow_short": S.BadSensorFailure | LIMIT_HIGH,
        "loop-1/flow_under": S.UncertainEngineeringUnitsExceeded | LIMIT_LOW,
        "furnace-1/tc_k": S.BadSensorFailure,
        "furnace-1/wall": S.BadOutOfRange,
        "furnace-1/vib": S.UncertainSensorNotAccurate,
        "furnace-1/adc": S.BadDeviceFailure,
    }
    async with Client(plant.url) as client:
        idx = await client.get_namespace_index(NS)

        async def all_there():
            values = {key: await read(client, idx, key) for key in expected}
            waiting = (S.BadWaitingForInitialData, S.BadNodeIdUnknown)  # not yet written, or not yet made (a loaded machine)
            return values if all(v.StatusCode.value not in waiting for v in values.values()) else None

        values = await eventually(all_there)
        assert {key: dv.StatusCode.value for key, dv in values.items()} == expected
        assert values["loop-1/flow_ok"].Value.Value == pytest.approx(8.0)
        assert values["furnace-1/vib"].Value.Value == 3.25  # uncertain keeps its value
        for key, dv in values.items():
            if dv.StatusCode.value & 0x80000000:  # Part 4: a bad value is null
                assert dv.Value.Value is None, key
            assert dv.SourceTimestamp.timestamp() == pytest.approx(now, abs=0.005), key
        # the chain's span is the variable's EURange
        loop_range = await (await client.get_node(ua.NodeId("loop-1/flow_ok", idx)).get_child(["0:EURange"])).read_value()
        assert (loop_range.Low, loop_range.High) == (0.0, 16.0)
        wall_range = await (await client.get_node(ua.NodeId("furnace-1/wall", idx)).get_child(["0:EURange"])).read_value()
        assert (wall_range.Low, wall_range.High) == (0.0, 400.0)


async def test_a_silent_node_goes_stale_and_comes_back(tmp_path):
    plant = await Plant(tmp_path, opcua='stale_min = "1s"\nstale_periods = 2').start()
    try:
        start = time.time() - 1.0
        for k in range(4):  # a 0.1 s period
            plant.send("quiet-1", [("t", "Cel", 20.0 + k, start + 0.1 * k, None),
                                   ("tc", "Cel", None, start + 0.1 * k, "open-circuit")])
        async with Client(plant.url) as client:
            idx = await client.get_namespace_index(NS)

            async def stale():
                dv = await read(client, idx, "quiet-1/t")
                return dv if dv.StatusCode.value == S.UncertainNoCommunicationLastUsableValue else None

            dv = await eventually(stale)
            assert dv.Value.Value == 23.0  # the last usable value stays
            newest = max(m.time for m in plant.stored("quiet-1", "t"))
            assert dv.SourceTimestamp.timestamp() == pytest.approx(newest, abs=1e-6)
            bad = await read(client, idx, "quiet-1/tc")
            assert bad.StatusCode.value == S.BadNoCommunication and bad.Value.Value is None
            assert await eventually(lambda: _diagnostic(client, idx, "quiet-1#Stale", True), timeout=20)


            async def talking():  # the node is back, sending every 0.2 s
                plant.send("quiet-1", [("t", "Cel", 30.0, time.time(), None)])
                return await _good(client, idx, "quiet-1/t") and await _diagnostic(client, idx, "quiet-1#Stale", False)

            assert await eventually(talking, timeout=20, interval=0.2)
            assert (await read(client, idx, "quiet-1/t")).Value.Value == 30.0
    finally:
        await plant.stop()


async def _diagnostic(client, idx, nodeid, expected) -> bool:
    dv = await read(client, idx, nodeid)
    return dv.StatusCode.value == S.Good and dv.Value.Value == expected


async def test_node_diagnostics(plant):
    plant.send("furnace-1", [("t", "Cel", 20.0, time.time(), None)])
    plant.send("furnace-1", [("fw", None, "1.4.2", time.time(), None), ("store_depth", None, 17.0, time.time(), None)],
               status=True)
    # a frame with a wrong MAC: a reject counted for the node
    bad = bytearray(plant.nodes["furnace-1"].data_frame(samples=1))
    bad[-1] ^= 0xFF
    plant.sock.sendto(bytes(bad), plant.gateway.udp.address[:2])
    async with Client(plant.url) as client:
        idx = await client.get_namespace_index(NS)

        async def diagnostics():
            try:
                values = {name: await client.get_node(ua.NodeId(f"furnace-1#{name}", idx)).read_value()
                          for name in ("Firmware", "StoreDepth", "LastSeen", "Rejects", "Registered")}
            except ua.UaStatusCodeError:
                return None
            return values if values["Rejects"] else None

        values = await eventually(diagnostics, timeout=20)
        assert values["Firmware"] == "1.4.2" and values["StoreDepth"] == 17.0
        assert values["Registered"] is True and values["Rejects"] == 1
        assert abs(values["LastSeen"].timestamp() - time.time()) < 60
        folder = await client.get_node(ua.NodeId("furnace-1#Diagnostics", idx)).get_children()
        assert {(await n.read_browse_name()).Name for n in folder} >= {"Firmware", "StoreDepth", "LastSeen"}


# ---------------------------------------------------------------- subscribe


class Changes:
    def __init__(self) -> None:
        self.seen: list[ua.DataValue] = []

    def datachange_notification(self, node, value, data) -> None:
        self.seen.append(data.monitored_item.Value)


async def test_subscription_receives_data_changes(plant):
    plant.send("furnace-1", [("tc1", "Cel", 1000.0, time.time() - 1, None)])
    async with Client(plant.url) as client:
        idx = await client.get_namespace_index(NS)
        await eventually(lambda: _good(client, idx, "furnace-1/tc1"))
        handler = Changes()
        subscription = await client.create_subscription(50, handler)
        await subscription.subscribe_data_change(client.get_node(ua.NodeId("furnace-1/tc1", idx)))
        await eventually(lambda: _async(len(handler.seen) >= 1))  # the initial value
        sent = []
        for k in range(5):
            moment = round(time.time(), 3)
            plant.send("furnace-1", [("tc1", "Cel", 1100.0 + k, moment, None)])
            sent.append((1100.0 + k, moment))
            await eventually(lambda k=k: _async(any(dv.Value.Value == 1100.0 + k for dv in handler.seen)))
        got = [(dv.Value.Value, dv.SourceTimestamp.timestamp()) for dv in handler.seen if dv.Value.Value >= 1100]
        assert [v for v, _ in got] == [v for v, _ in sent]
        stored = {m.value: m.time for m in plant.stored("furnace-1", "tc1")}
        assert [t for _, t in got] == pytest.approx([stored[v] for v, _ in sent], abs=1e-6)
        await subscription.delete()


async def _async(value):
    return value


# ---------------------------------------------------------------- history


async def test_history_after_an_outage_is_exactly_the_stored_measurements_and_the_mqtt_values(tmp_path):
    with MosquittoBroker(tmp_path / "broker") as broker:
        route = (f'[[routes]]\nname = "mes"\nbroker = "{broker.url}"\ntopic_prefix = "plant"\ninclude = ["*"]\n'
                 'format = "json"\n')
        (tmp_path / "gw").mkdir()
        plant = await Plant(tmp_path / "gw", extra=route).start()
        try:
            with broker.subscriber("plant/loop-1/flow_a") as mqtt:
                before = datetime.now(timezone.utc) - timedelta(seconds=30)
                async with Client(plant.url) as client:
                    idx = await client.get_namespace_index(NS)
                    plant.send("loop-1", [("flow_a", "mA", 8.0, time.time() - 20, None)])
                    await eventually(lambda: _good(client, idx, "loop-1/flow_a"))
                # the client is away: 40 frames of 3 readings, some faulty, one repeated time
                base = time.time() - 15
                for k in range(40):
                    current = {0: 2.0, 1: 3.9}.get(k % 7, 4.0 + (k % 16))  # wire breaks and under-range among them
                    plant.send("loop-1", [("flow_a", "mA", current, base + 0.25 * k, None),
                                          ("flow_a", "mA", current + 0.5, base + 0.25 * k + 0.1, None),
                                          ("flow_b", "mA", 10.0, base + 0.25 * k, None)])
                messages = await mqtt.wait_for(81, timeout=30)
                stored = await eventually(lambda: _async(len(plant.stored("loop-1", "flow_a")) == 81 and
                                                         plant.stored("loop-1", "flow_a")))
                async with Client(plant.url) as client:
                    node = client.get_node(ua.NodeId("loop-1/flow_a", await client.get_namespace_index(NS)))
                    history = await node.read_raw_history(before, datetime.now(timezone.utc) + timedelta(seconds=1),
                                                          return_bounds=False)
                    paged = await _read_in_pages(client, node.nodeid, before, 7)
        finally:
            await plant.stop()
    stored.sort(key=lambda m: (m.time, m.id))
    assert len(history) == len(stored) == 81
    assert [dv.SourceTimestamp.timestamp() for dv in history] == pytest.approx([m.time for m in stored], abs=1e-6)
    assert [dv.Value.Value for dv in history] == [m.value if m.quality != "bad" else None for m in stored]
    # the same measurements as the MQTT json route delivered
    docs = sorted((m.json() for m in messages), key=lambda d: d["time"])
    assert len(docs) == 81
    assert [dv.Value.Value for dv in history] == [d["value"] if d["quality"] != "bad" else None for d in docs]
    assert [dv.SourceTimestamp.timestamp() for dv in history] == pytest.approx([d["time"] for d in docs], abs=1e-6)
    codes = {dv.StatusCode.value for dv in history}
    assert {S.Good, S.BadSensorFailure | LIMIT_LOW, S.UncertainEngineeringUnitsExceeded | LIMIT_LOW} <= codes
    assert [(dv.SourceTimestamp, dv.Value.Value) for dv in paged] == [(dv.SourceTimestamp, dv.Value.Value)
                                                                      for dv in history]


async def _read_in_pages(client: Client, nodeid: ua.NodeId, start: datetime, per_page: int) -> list[ua.DataValue]:
    """HistoryRead with a small NumValuesPerNode, following continuation points."""
    details = ua.ReadRawModifiedDetails(IsReadModified=False, StartTime=start,
                                        EndTime=datetime.now(timezone.utc) + timedelta(seconds=1),
                                        NumValuesPerNode=per_page, ReturnBounds=False)
    out, point, pages = [], None, 0
    while True:
        result = await client.get_node(nodeid).history_read(details, point)
        result.StatusCode.check()
        values = result.HistoryData.DataValues
        assert len(values) <= per_page
        out += values
        pages += 1
        point = result.ContinuationPoint
        if not point:
            break
    assert pages > 1
    return out


async def test_history_backwards_and_invalid_requests(plant):
    base = round(time.time() - 10, 3)
    plant.send("furnace-1", [("tc1", "Cel", 100.0 + k, base + k, None) for k in range(5)])
    async with Client(plant.url) as client:
        idx = await client.get_namespace_index(NS)
        node = client.get_node(ua.NodeId("furnace-1/tc1", idx))
        await eventually(lambda: _good(client, idx, "furnace-1/tc1"))
        times = sorted(m.time for m in plant.stored("furnace-1", "tc1"))
        start, end = datetime.fromtimestamp(times[1], timezone.utc), datetime.fromtimestamp(times[4], timezone.utc)
        forward = await node.read_raw_history(start, end, return_bounds=False)
        assert [dv.Value.Value for dv in forward] == [101.0, 102.0, 103.0]  # end excluded
        backward = await node.read_raw_history(end, start, return_bounds=False)
        assert [dv.Value.Value for dv in backward] == [104.0, 103.0, 102.0]
        assert [dv.Value.Value for dv in await node.read_raw_history(start, None, 2, return_bounds=False)] == [101.0, 102.0]
        with pytest.raises(ua.UaStatusCodeError):
            await node.read_raw_history(None, None, 10)  # only one of the three given
        diagnostics = client.get_node(ua.NodeId("furnace-1#Diagnostics", idx))
        with pytest.raises(ua.UaStatusCodeError):
            await diagnostics.read_raw_history(start, end)


# ---------------------------------------------------------------- security


async def test_writes_and_node_management_are_refused(plant):
    plant.send("furnace-1", [("tc1", "Cel", 1000.0, time.time(), None)])
    async with Client(plant.url) as client:
        idx = await client.get_namespace_index(NS)
        await eventually(lambda: _good(client, idx, "furnace-1/tc1"))
        node = client.get_node(ua.NodeId("furnace-1/tc1", idx))
        with pytest.raises(ua.uaerrors.BadNotWritable):
            await node.write_value(ua.DataValue(ua.Variant(1.0, ua.VariantType.Double)))
        with pytest.raises(ua.uaerrors.BadNotWritable):
            await node.write_attribute(ua.AttributeIds.DisplayName,
                                       ua.DataValue(ua.Variant(ua.LocalizedText("x"), ua.VariantType.LocalizedText)))
        with pytest.raises(ua.UaStatusCodeError):
            await client.nodes.objects.add_object(idx, "intruder")
        with pytest.raises(ua.UaStatusCodeError):
            await node.delete()
        assert (await node.read_value()) == 1000.0


def _users(tmp_path: Path, **users: str) -> Path:
    path = tmp_path / "opcua-users.toml"
    for name, password in users.items():
        result = subprocess.run([sys.executable, "-m", "smemet.gateway", "opcua-user", "add", name, "--users-file",
                                 str(path), "--password-stdin"], input=password + "\n", capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return path


async def test_users_anonymous_and_wrong_password_are_refused(tmp_path):
    users = _users(tmp_path, mes="historian-pw-1")
    plant = await Plant(tmp_path, opcua=f'users_file = "{users}"\nallow_anonymous = false').start()
    try:
        with pytest.raises(ua.uaerrors.BadIdentityTokenRejected):  # no anonymous token offered at all
            async with Client(plant.url):
                pass
        wrong = Client(plant.url)
        wrong.set_user("mes")
        wrong.set_password("not-the-password")
        with pytest.raises(ua.uaerrors.BadUserAccessDenied):
            async with wrong:
                pass
        right = Client(plant.url)
        right.set_user("mes")
        right.set_password("historian-pw-1")
        async with right:
            assert await right.get_namespace_index(NS) > 0
        assert plant.gateway.sinks[-1].users.refused == 1  # the wrong password
    finally:
        await plant.stop()


async def test_sign_and_encrypt_with_a_generated_client_certificate_and_the_trust_list(tmp_path):
    users = _users(tmp_path, mes="historian-pw-1")
    plant = await Plant(tmp_path, opcua=f'users_file = "{users}"\nsecurity_policies = ["Basic256Sha256"]\n'
                                        'allow_anonymous = false').start()
    try:
        server_cert = tmp_path / "opcua" / "server-cert.pem"
        server_key = tmp_path / "opcua" / "server-key.pem"
        assert stat.S_IMODE(server_key.stat().st_mode) == 0o600  # generated at first start
        certificate = x509.load_pem_x509_certificate(server_cert.read_bytes())
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert f"urn:smemet-edge:gateway:{plant.gateway.config.gateway_id}" in \
            san.get_values_for_type(x509.UniformResourceIdentifier)
        client_dir = tmp_path / "client"
        client_dir.mkdir()
        cert, key, uri = client_dir / "cert.der", client_dir / "key.pem", "urn:test:historian"
        await setup_self_signed_certificate(key, cert, uri, "localhost", [ExtendedKeyUsageOID.CLIENT_AUTH],
                                            {"commonName": "historian"})

        def client() -> Client:
            c = Client(plant.url)
            c.application_uri = uri
            c.set_user("mes")
            c.set_password("historian-pw-1")
            return c

        c = client()
        await c.set_security(SecurityPolicyBasic256Sha256, str(cert), str(key), server_certificate=str(server_cert),
                             mode=ua.MessageSecurityMode.SignAndEncrypt)
        with pytest.raises(ua.UaStatusCodeError) as refused:  # not trusted yet
            async with c:
                pass
        assert refused.value.code == S.BadCertificateUntrusted
        rejected = list((tmp_path / "opcua" / "pki" / "rejected").iterdir())
        assert len(rejected) == 1  # kept for the operator to trust
        shutil.move(rejected[0], tmp_path / "opcua" / "pki" / "trusted" / rejected[0].name)
        plant.send("furnace-1", [("tc1", "Cel", 1234.5, time.time(), None)])
        c = client()
        await c.set_security(SecurityPolicyBasic256Sha256, str(cert), str(key), server_certificate=str(server_cert),
                             mode=ua.MessageSecurityMode.SignAndEncrypt)
        async with c:
            idx = await c.get_namespace_index(NS)
            await eventually(lambda: _good(c, idx, "furnace-1/tc1"))
            assert (await read(c, idx, "furnace-1/tc1")).Value.Value == 1234.5
        plain = Client(plant.url)  # the None policy is not offered
        plain.set_user("mes")
        plain.set_password("historian-pw-1")
        with pytest.raises(Exception):  # noqa: B017 - asyncua reports the missing endpoint in several ways
            async with plain:
                pass
        endpoints = await Client(plant.url).connect_and_get_server_endpoints()
        assert {e.SecurityMode for e in endpoints} == {ua.MessageSecurityMode.SignAndEncrypt}
        assert all(e.SecurityPolicyUri.endswith("Basic256Sha256") for e in endpoints)
        assert {t.TokenType for e in endpoints for t in e.UserIdentityTokens} == {ua.UserTokenType.UserName}
    finally:
        await plant.stop()


# ---------------------------------------------------------------- config and start errors


def _parse(tmp_path: Path, table: dict):
    data = {"keys": {"file": "keys.toml"}, "outbox": {"path": "o.sqlite"}, "opcua": table}
    return parse_config(data, str(tmp_path / "gateway.toml"))


def test_defaults_and_what_a_public_address_refuses(tmp_path):
    local = _parse(tmp_path, {}).sinks["opcua"]
    assert (local.bind, local.port, local.allow_anonymous) == ("127.0.0.1", 4840, True)
    assert "None" in local.security_policies
    assert local.application_uri.startswith("urn:smemet-edge:gateway:")
    with pytest.raises(ConfigError, match="opcua.users_file: is missing"):
        _parse(tmp_path, {"bind": "0.0.0.0"})  # no anonymous there by default, so users are needed
    users = _users(tmp_path, mes="historian-pw-1")
    public = _parse(tmp_path, {"bind": "0.0.0.0", "users_file": str(users)}).sinks["opcua"]
    assert public.allow_anonymous is False and "None" not in public.security_policies
    explicit = _parse(tmp_path, {"bind": "0.0.0.0", "users_file": str(users), "allow_anonymous": True,
                                 "security_policies": ["None", "Basic256Sha256"]}).sinks["opcua"]
    assert explicit.allow_anonymous and "None" in explicit.security_policies
    assert _parse(tmp_path, {"port": 0}).sinks["opcua"] is None


@pytest.mark.parametrize("table, message", [
    ({"port": 70000}, "opcua.port: 70000 is out of range"),
    ({"prot": 4840}, "opcua.prot: unknown key"),
    ({"security_policies": ["Basic128Rsa15"]}, r"opcua.security_policies\[0\]: 'Basic128Rsa15' is not a policy"),
    ({"users_file": "nope.toml"}, "opcua.users_file: .*nope.toml does not exist"),
    ({"history": "forever"}, "opcua.history: must be a duration"),
])
def test_config_errors_name_the_key(tmp_path, table, message):
    with pytest.raises(ConfigError, match=message):
        _parse(tmp_path, table)


async def test_port_in_use_is_one_line_and_exit_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(str(tmp_path), NODES, extra=f"[opcua]\nport = {port}\n")
        gateway = Gateway(load_config(config))
        with pytest.raises(GatewayError, match=f"opcua: cannot listen on 127.0.0.1:{port}"):
            try:
                await gateway.start()
            finally:
                await gateway.stop()
        result = subprocess.run([sys.executable, "-m", "smemet.gateway", "run", "--config", config],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot listen on" in lines[0] and "Traceback" not in result.stderr


async def test_open_key_and_users_files_are_refused(tmp_path):
    users = _users(tmp_path, mes="historian-pw-1")
    os.chmod(users, 0o644)
    plant = Plant(tmp_path, opcua=f'users_file = "{users}"')
    with pytest.raises(ConfigError, match="accessible by group or others"):
        try:
            await plant.start()
        finally:
            await plant.stop()
    os.chmod(users, 0o600)
    plant = Plant(tmp_path, opcua=f'users_file = "{users}"')
    await plant.start()  # makes the certificate and key
    await plant.stop()
    key = tmp_path / "opcua" / "server-key.pem"
    os.chmod(key, 0o644)
    plant = Plant(tmp_path, opcua=f'users_file = "{users}"')
    with pytest.raises(ConfigError, match="server-key.pem is accessible by group or others"):
        try:
            await plant.start()
        finally:
            await plant.stop()


async def test_the_certificate_is_kept_across_restarts(tmp_path):
    plant = await Plant(tmp_path).start()
    first = (tmp_path / "opcua" / "server-cert.pem").read_bytes()
    await plant.stop()
    plant = await Plant(tmp_path).start()
    try:
        assert (tmp_path / "opcua" / "server-cert.pem").read_bytes() == first
        endpoints = await Client(plant.url).connect_and_get_server_endpoints()
        assert {e.Server.ApplicationUri for e in endpoints} == {
            f"urn:smemet-edge:gateway:{plant.gateway.config.gateway_id}"}
    finally:
        await plant.stop()
