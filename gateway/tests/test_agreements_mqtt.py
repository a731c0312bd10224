"""Signed deliveries through a real Mosquitto, checked by an independent
verifier (hil_tests/harness/chain_oracle.py: cbor2 + cryptography from the
RFCs, and pycose): every message is a link of the route's chain, the
checkpoints are valid COSE_Sign1 signatures of the acknowledged head, and
the chain stays continuous across a broker outage and a gateway crash."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from hil_tests.harness.broker import MosquittoBroker, Received, make_broker, mosquitto_broker
from hil_tests.harness.chain_oracle import Oracle, link_fields, pycose_verifies, published_key, route_messages
from hil_tests.harness.measurements import OutboxMeasurements, frames
from smemet.gateway.errors import GatewayError
from smemet.gateway.ledger import LedgerView
from smemet.gateway.ledger.verify import Captured, verify_capture
from smemet.gateway.sinks.mqtt import parse_routes, run_routes
from smemet.gateway.spine import Measurement

__all__ = ["make_broker", "mosquitto_broker"]  # fixtures, used by name below

AGREEMENT = {
    "id": "IMT-2026-07", "version": 1, "purpose": "ladle heat losses",
    "parties": [{"name": "Stahlwerk Nord", "role": "provider"}, {"name": "IMT", "role": "recipient"}],
    "include": ["*"],
}


@pytest.fixture
def source(tmp_path):
    src = OutboxMeasurements(tmp_path / "outbox.db")
    yield src
    src.close()


@contextlib.asynccontextmanager
async def running(routes, source):
    stop = asyncio.Event()
    task = asyncio.create_task(run_routes(routes, source, stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def agreed(broker: MosquittoBroker, name: str, agreement: dict = AGREEMENT, **overrides) -> dict:
    """A route table under ``agreement`` (its channels replace the route's include)."""
    table = broker.route_table(name, **overrides)
    del table["include"]
    table["agreement"] = agreement
    return table


def is_online(m: Received) -> bool:
    return m.topic.endswith("/status") and m.json()["state"] == "online"


def is_data(m: Received) -> bool:
    return not m.topic.endswith(("/status", "/checkpoint", "/gateway-key"))


def signed_upto(messages: list[Received], prefix: str) -> int:
    """The highest head any valid checkpoint in ``messages`` signs (0: none yet)."""
    found = route_messages(messages, prefix)
    if not any(t == f"{prefix}/gateway-key" for t, _ in found):
        return 0
    return Oracle(found, published_key(messages, prefix)).result().highest_signed


def key_file_public(path: Path) -> bytes:
    """The public half of the gateway's key file, read with cryptography alone."""
    private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


async def wait_signed(sub, prefix: str, seq: int, timeout: float = 30.0) -> list[Received]:
    return await sub.wait_until(lambda msgs: signed_upto(msgs, prefix) >= seq, timeout=timeout)


async def test_every_message_is_a_link_and_checkpoints_sign_the_chain(mosquitto_broker, source, tmp_path):
    measurements = frames(["furnace-1", "furnace-2"], ["tc1", "tc2"], 25)  # 100 json messages
    source.add(measurements)
    table = agreed(mosquitto_broker, "imt")
    routes = parse_routes([table], "test.toml")
    ledger = {"checkpoint_interval": 0.5}
    from smemet.gateway.ledger import parse_ledger

    with mosquitto_broker.subscriber("test/imt/#", mqtt5=True) as sub:
        async with running_with(routes, source, parse_ledger(ledger, "test.toml", str(tmp_path))):
            got = await wait_signed(sub, "test/imt", 100)
    public = published_key(got, "test/imt")
    assert public == key_file_public(tmp_path / "signing.key"), "the published key is the gateway's key file"
    result = Oracle(route_messages(got, "test/imt"), public).result()
    assert result.clean and result.authentic == set(range(1, 101)), result
    assert result.repeated == [] and result.out_of_order == []
    checkpoints = [m for m in got if m.topic == "test/imt/checkpoint"]
    assert len(checkpoints) >= 2 and all(pycose_verifies(m.payload, public) for m in checkpoints)
    # a partner subscribing later gets the key and the newest checkpoint at once (retained)
    with mosquitto_broker.subscriber(["test/imt/checkpoint", "test/imt/gateway-key"], persistent=False) as late:
        retained = await late.wait_for(2)
    assert all(m.retain for m in retained)
    last = next(m for m in retained if m.topic.endswith("/checkpoint"))
    assert pycose_verifies(last.payload, published_key(retained, "test/imt"))
    newest = max(result.checkpoints, key=lambda c: c["seq"])
    assert (newest["route"], newest["agreement"], newest["version"]) == ("imt", "IMT-2026-07", 1)
    # MQTT 5: the link fields again as user properties, the payload's own fields unchanged
    data = [m for m in got if is_data(m)]
    for m in data:
        props = dict(m.properties["UserProperty"])
        fields = link_fields(m.payload)
        assert props == {"agreement": "IMT-2026-07", "agreement_version": "1", "link_seq": str(fields["link_seq"]),
                         "link_prev": fields["link_prev"]}
        assert m.properties["ContentType"] == "application/json"
        doc = m.json()
        assert (doc["agreement"], doc["agreement_version"]) == ("IMT-2026-07", 1)
        assert {"node", "seq", "channel", "time", "value", "unit", "quality"} <= set(doc)
    # the ledger holds exactly what was acknowledged: same numbers, same links
    view = LedgerView.open(str(tmp_path / "ledger.sqlite"))
    try:
        entries = list(view.entries("imt"))
    finally:
        view.close()
    links = {seq: hashlib.sha256(bytes.fromhex(link_fields(m.payload)["link_prev"]) + seq.to_bytes(8, "big")
                                 + hashlib.sha256(m.payload).digest()).digest()
             for m in data for seq in [link_fields(m.payload)["link_seq"]]}
    assert [e.seq for e in entries] == list(range(1, 101))
    assert all(e.hash == links[e.seq] and (e.agreement, e.version) == ("IMT-2026-07", 1) for e in entries)
    import sqlite3

    outbox = sqlite3.connect(str(tmp_path / "outbox.db"))
    try:  # the ledger is its own database: it never takes the outbox's room
        assert not outbox.execute("SELECT name FROM sqlite_master WHERE name LIKE 'ledger%'").fetchall()
    finally:
        outbox.close()


@contextlib.asynccontextmanager
async def running_with(routes, source, ledger):
    stop = asyncio.Event()
    task = asyncio.create_task(run_routes(routes, source, stop, ledger=ledger))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_senml_under_mqtt_3_1_1_carries_the_links_in_the_payload(mosquitto_broker, source):
    source.add(frames(["n1", "n2"], ["tc1", "tc2", "tc3"], 10))  # 20 packs
    routes = parse_routes([mosquitto_broker.route_table("s", format="senml", mqtt_version="3.1.1")], "test.toml")
    with mosquitto_broker.subscriber("test/s/#") as sub:
        async with running(routes, source):
            got = await wait_signed(sub, "test/s", 20)
    result = Oracle(route_messages(got, "test/s"), published_key(got, "test/s")).result()
    assert result.clean and result.authentic == set(range(1, 21))
    for m in (m for m in got if is_data(m)):
        pack = m.json()
        assert all("link_seq" not in r for r in pack[:-1]), "only the last record carries the link"
        assert "agreement" not in pack[-1], "a route without an agreement stamps none"
        assert m.properties == {}


def tamper(messages: list[tuple[str, bytes]]) -> tuple[list[tuple[str, bytes]], dict]:
    """Drop link 10, alter link 20's value, swap 30 and 31, replay 5 at the end."""
    data = [m for m in messages if not m[0].endswith(("/checkpoint", "/gateway-key", "/status"))]
    control = [m for m in messages if m not in data]
    by_seq = {link_fields(p)["link_seq"]: (t, p) for t, p in data}
    order = sorted(by_seq)
    out = []
    for seq in order:
        topic, payload = by_seq[seq]
        if seq == 10:
            continue
        if seq == 20:
            payload = payload.replace(b'"value":', b'"value":1', 1)
        out.append((topic, payload))
    i = next(k for k, (t, p) in enumerate(out) if link_fields(p)["link_seq"] == 30)
    out[i], out[i + 1] = out[i + 1], out[i]
    out.append(by_seq[5])
    return control + out, {"missing": [10], "altered": [20], "out_of_order": [30], "repeated": [5]}


async def test_dropped_altered_reordered_and_replayed_are_named(mosquitto_broker, source):
    source.add(frames(["n1"], ["tc1", "tc2"], 20))  # 40 messages
    routes = parse_routes([agreed(mosquitto_broker, "t")], "test.toml")
    with mosquitto_broker.subscriber("test/t/#") as sub:
        async with running(routes, source):
            got = await wait_signed(sub, "test/t", 40)
    public = published_key(got, "test/t")
    clean = route_messages(got, "test/t")
    assert Oracle(clean, public).result().clean
    tampered, expected = tamper(clean)
    oracle = Oracle(tampered, public).result()
    assert oracle.missing == expected["missing"]
    assert oracle.altered == expected["altered"]
    assert oracle.out_of_order == expected["out_of_order"]
    assert oracle.repeated == expected["repeated"]
    # the gateway's own verifier (smemet verify) names the same messages
    pinned = hashlib.sha256(public).hexdigest()
    report = verify_capture([Captured(t, p) for t, p in tampered], pinned=pinned)
    route = report.routes[0]
    assert not report.complete
    assert route.missing == [10] and route.altered == [20], route
    assert (30, 31) in route.out_of_order and list(route.repeated) == [5]
    # below a gap or an altered link, down to the previous checkpoint, nothing can be vouched for
    assert set(route.unverifiable) <= set(range(1, 10)) | set(range(11, 20))
    assert set(range(21, 41)) <= set(route.authentic)
    assert verify_capture([Captured(t, p) for t, p in clean], pinned=pinned).complete
    # a forged checkpoint (another key) is refused by both
    from smemet.gateway.ledger import Checkpoint, SigningKey
    from smemet.gateway.ledger.checkpoint import sign
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    forged = sign(SigningKey("forger", Ed25519PrivateKey.generate()), Checkpoint("t", "x", 40, bytes(32), 0.0))
    with_forgery = clean + [("test/t/checkpoint", forged)]
    assert Oracle(with_forgery, public).result().bad_checkpoints == 1
    assert verify_capture([Captured(t, p) for t, p in with_forgery], pinned=pinned).routes[0].invalid_checkpoints


async def test_broker_outage_keeps_the_chain_continuous(make_broker, source, tmp_path):
    broker = make_broker()
    first = frames(["n1", "n2"], ["tc1"], 300)  # 600 before the outage
    source.add(first)
    routes = parse_routes([agreed(broker, "r", max_in_flight=50)], "test.toml")
    sub = broker.subscriber("test/r/#", client_id="partner-r").start()  # persistent session
    try:
        async with running(routes, source):
            await sub.wait_for(150, is_data)
            broker.stop()  # mid-stream
            second = [Measurement(0, m.node, m.seq + 300, m.channel, m.time + 300, m.value, m.unit)
                      for m in frames(["n1", "n2"], ["tc1"], 100)]
            source.add(second)
            await asyncio.sleep(1.5)
            broker.start()
            got = await wait_signed(sub, "test/r", 800, timeout=60)
    finally:
        sub.stop()
    result = Oracle(route_messages(got, "test/r"), published_key(got, "test/r")).result()
    assert result.missing == [] and result.altered == [] and result.bad_checkpoints == 0
    assert result.authentic == set(range(1, 801)), "one continuous chain across the outage"
    # what was in flight at the outage came again: identical copies, not new links
    assert len([m for m in got if is_data(m)]) == 800 + len(result.repeated)
    view = LedgerView.open(str(tmp_path / "ledger.sqlite"))
    try:
        assert [e.seq for e in view.entries("r")] == list(range(1, 801)), "each link recorded once"
    finally:
        view.close()


CHILD = textwrap.dedent(
    """
    import asyncio, signal, sys
    from smemet.gateway.sinks.mqtt import parse_routes, run_routes
    from hil_tests.harness.measurements import OutboxMeasurements

    async def main():
        source = OutboxMeasurements(sys.argv[1])
        routes = parse_routes([{"name": "child", "broker": sys.argv[2], "topic_prefix": "test/child",
                                "gateway_id": "gw-1", "max_in_flight": 20,
                                "agreement": {"id": "A-1", "version": 1, "purpose": "test", "include": ["*"],
                                              "parties": [{"name": "p", "role": "provider"},
                                                          {"name": "r", "role": "recipient"}]}}], "child.toml")
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await run_routes(routes, source, stop)

    asyncio.run(main())
    """
)


def start_child(db: Path, broker: MosquittoBroker) -> subprocess.Popen:
    with open(db.with_suffix(".log"), "ab") as log:
        return subprocess.Popen([sys.executable, "-c", CHILD, str(db), broker.url], stderr=log)


async def test_gateway_crash_and_restart_keep_the_chain_continuous(mosquitto_broker, tmp_path, source):
    db = tmp_path / "outbox.db"
    source.add(frames(["n1", "n2"], ["tc1"], 2000))  # 4,000 messages
    with mosquitto_broker.subscriber("test/child/#", client_id="partner-child") as sub:
        child = start_child(db, mosquitto_broker)
        try:
            await sub.wait_for(800, is_data, timeout=30)
            child.send_signal(signal.SIGKILL)  # crash mid-stream
            child.wait()
            online = sub.count(is_online)
            child = start_child(db, mosquitto_broker)
            await sub.wait_for(online + 1, is_online, timeout=60)  # the new process is connected (and stoppable)
            child.send_signal(signal.SIGTERM)  # and a clean restart
            assert child.wait(20) == 0, db.with_suffix(".log").read_text()
            online = sub.count(is_online)
            child = start_child(db, mosquitto_broker)
            await sub.wait_for(online + 1, is_online, timeout=60)
            got = await sub.wait_until(lambda msgs: signed_upto(msgs, "test/child") >= 4000
                                       and len({link_fields(m.payload)["link_seq"] for m in msgs if is_data(m)})
                                       >= 4000, timeout=90)
            child.send_signal(signal.SIGTERM)
            assert child.wait(20) == 0, db.with_suffix(".log").read_text()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    result = Oracle(route_messages(got, "test/child"), published_key(got, "test/child")).result()
    assert result.missing == [] and result.altered == [] and result.bad_checkpoints == 0, result
    top = result.highest_signed
    assert top >= 4000 and result.authentic == set(range(1, top + 1))
    measurements = {(m.json()["node"], m.json()["seq"]) for m in got if is_data(m)}
    assert len(measurements) == 4000, "every measurement delivered (resends are new links or identical copies)"


async def test_changed_terms_need_a_new_version(mosquitto_broker, source, tmp_path):
    source.add(frames(["n1"], ["tc1"], 5))
    first = parse_routes([agreed(mosquitto_broker, "v")], "test.toml")
    async with running(first, source):
        deadline = asyncio.get_running_loop().time() + 20
        while source.load_cursor("v") < source.last_id():
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
    changed = dict(AGREEMENT, include=["n1/tc1"], delay="1h")  # new terms, same version 1
    routes = parse_routes([agreed(mosquitto_broker, "v", changed)], "test.toml")
    with pytest.raises(GatewayError, match=r"terms of agreement IMT-2026-07 version 1 differ .*set version = 2"):
        await asyncio.wait_for(run_routes(routes, source, asyncio.Event()), 10)  # never runs
    older = parse_routes([agreed(mosquitto_broker, "v", dict(AGREEMENT))], "test.toml")
    source.add([Measurement(0, "n1", 6, "tc1", 1.8e9, 1.0, "Cel")])
    newer = parse_routes([agreed(mosquitto_broker, "v", dict(changed, version=2, delay=0))],
                         "test.toml")
    with mosquitto_broker.subscriber("test/v/#") as sub:
        async with running(newer, source):
            got = await sub.wait_for(1, is_data)
    assert got[0].json()["agreement_version"] == 2
    with pytest.raises(GatewayError, match="version 1 is older than version 2"):
        await asyncio.wait_for(run_routes(older, source, asyncio.Event()), 10)
    view = LedgerView.open(str(tmp_path / "ledger.sqlite"))
    try:
        assert [(h.agreement, h.version) for h in view.history("v")] == [("IMT-2026-07", 1), ("IMT-2026-07", 2)]
    finally:
        view.close()
