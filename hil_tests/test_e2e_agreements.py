"""Data-sharing agreements end to end: nodes over UDP -> the gateway process
-> a real Mosquitto with passwords and per-partner ACLs -> each partner with
its own credentials.  Three routes of one gateway under three agreements:
the plant's historian (raw, everything), a research institute (2-second
aggregates of the furnace temperatures, furnaces under aliases, no quality
reasons) and the municipal office (the cooling-water flow, 3 s late, no
units).  Every capture is checked by an independent verifier
(harness/chain_oracle.py); restarts and a kill -9 keep each chain
continuous; ``smemet verify`` names a removed message, ``smemet ledger``
exports what was delivered."""

from __future__ import annotations

import hashlib
import json
import math
import socket
import subprocess
import sys
import time
from pathlib import Path

from hil_gateway import GatewayProcess

from hil_tests.harness.chain_oracle import Oracle, link_fields, published_key, route_messages
from hil_tests.harness.nodes import SimNode
from smemet.fieldtest import smemet

PARTIES = [{"name": "Stahlwerk Nord GmbH", "role": "provider"}]
USERS = {"gateway": "gw-pw", "historian": "hist-pw", "institute": "inst-pw", "city": "city-pw"}
ACL = {
    "gateway": ["write plant/#"],
    "historian": ["read plant/historian/#"],
    "institute": ["read plant/institute/#"],
    "city": ["read plant/city/#"],
}


class Nodes:
    """Simulated nodes sending data frames over UDP, each retransmitted until ACKed."""

    def __init__(self, address, channels: dict[str, tuple[str, ...]]) -> None:
        self.address = address
        self.sims = {node: SimNode(node, channels=chans) for node, chans in channels.items()}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(0.3)

    def send(self, seconds: float, rate: float = 5.0) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for sim in self.sims.values():
                n = len(sim.channels)
                frame = sim.data_frame(samples=2 * n, value=lambda i, s=sim.seq: 1500.0 + (s * 7 + i) % 11)
                self._deliver(sim, frame)
            time.sleep(1.0 / rate)

    def _deliver(self, sim: SimNode, frame: bytes) -> None:
        for _ in range(50):
            self.sock.sendto(frame, self.address)
            try:
                while True:
                    (seqs, _ms, status), _ = sim.open_ack(self.sock.recv(2048))
                    if status == 0 and sim.seq in seqs:
                        return
            except (TimeoutError, OSError, AssertionError, ValueError):
                continue
        raise AssertionError(f"{sim.node} seq {sim.seq} never ACKed")

    def close(self) -> None:
        self.sock.close()


def agreement(agreement_id: str, recipient: str, **terms) -> dict:
    return {"id": agreement_id, "version": 1, "purpose": f"data for {recipient}",
            "parties": PARTIES + [{"name": recipient, "role": "recipient"}], **terms}


def route(name: str, broker, fmt: str, terms: dict) -> dict:
    return {"name": name, "broker": broker.url, "topic_prefix": f"plant/{name}", "username": "gateway",
            "password": USERS["gateway"], "format": fmt, "client_id": f"gw-{name}", "agreement": terms}


def data(messages):
    return [m for m in messages if not m.topic.endswith(("/status", "/checkpoint", "/gateway-key"))]


def oracle_clean(messages, prefix):
    result = Oracle(route_messages(messages, prefix), published_key(messages, prefix)).result()
    assert result.clean and result.authentic == set(range(1, result.highest_signed + 1)), result
    return result


def test_two_partners_get_exactly_their_terms(make_broker, tmp_path):
    broker = make_broker(users=USERS, acl=ACL)
    campaign = math.ceil(time.time()) + 4  # the city's campaign starts while the nodes send
    routes = [
        route("historian", broker, "json", agreement("PLANT-HIST", "Stahlwerk Nord historian", include=["*"])),
        route("institute", broker, "json", agreement(
            "IMT-2026-07", "Institut für Metallurgie", include=["furnace-*/tc*"],
            resolution={"period": "2s", "aggregates": ["mean", "max", "count"], "grace": "1s"},
            pseudonyms={"furnace-1": "site-A", "furnace-2": "site-B"}, fields=["unit"])),
        route("city", broker, "senml", agreement(
            "CITY-EMIS-3", "Stadt Nordhafen, Umweltamt", include=["cooling-*/flow"], delay="3s", fields=[],
            validity={"from": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(campaign))})),
    ]
    gateway = GatewayProcess(tmp_path / "gw", {n: SimNode(n).key for n in ("furnace-1", "furnace-2", "cooling-1")},
                             routes, extra={"ledger": {"checkpoint_interval": "1s"}})
    historian = broker.subscriber("plant/#", username="historian", password=USERS["historian"]).start()
    institute = broker.subscriber("plant/#", username="institute", password=USERS["institute"], mqtt5=True).start()
    city = broker.subscriber("plant/#", username="city", password=USERS["city"]).start()
    snoop = broker.subscriber("plant/city/#", username="institute", password=USERS["institute"]).start()
    nodes = Nodes(None, {"furnace-1": ("tc1", "tc2"), "furnace-2": ("tc1", "tc2"), "cooling-1": ("flow", "valve")})
    try:
        gateway.start()
        nodes.address = gateway.address
        nodes.send(8.0)
        sent_until = time.time()
        time.sleep(6.0)  # the embargo, the last periods' grace, a checkpoint after them
    finally:
        nodes.close()
        for s in (historian, institute, city, snoop):
            s.stop()
        gateway.stop()
    raw = [m.json() for m in data(historian.snapshot())]
    assert {(d["node"], d["channel"]) for d in raw} == {(n, c) for n in ("furnace-1", "furnace-2")
                                                         for c in ("tc1", "tc2")} | {("cooling-1", "flow"),
                                                                                      ("cooling-1", "valve")}
    oracle_clean(historian.snapshot(), "plant/historian")

    # -- the institute: aggregates of the furnace temperatures only, under aliases
    got = institute.snapshot()
    assert got and all(m.topic.startswith("plant/institute/") for m in got), "the broker's ACL isolates partners"
    docs = [m.json() for m in data(got)]
    assert {d["node"] for d in docs} == {"site-A", "site-B"}, "plant node names never leave the plant"
    assert {d["channel"] for d in docs} == {f"{c}.{a}" for c in ("tc1", "tc2") for a in ("mean", "max", "count")}
    assert all(d["time"] % 2 == 0 for d in docs), "no finer resolution than the 2-second periods"
    assert all(d["reason"] is None for d in docs) and all(d["unit"] == "Cel" for d in docs if "count" not in
                                                           d["channel"])
    assert {(d["agreement"], d["agreement_version"]) for d in docs} == {("IMT-2026-07", 1)}
    periods: dict = {}
    for d in raw:
        if d["node"].startswith("furnace-"):
            periods.setdefault((d["node"], d["channel"], math.floor(d["time"] / 2) * 2), []).append(d["value"])
    alias = {"site-A": "furnace-1", "site-B": "furnace-2"}
    delivered = {}
    for d in docs:
        channel, _, aggregate = d["channel"].rpartition(".")
        delivered.setdefault((alias[d["node"]], channel, d["time"]), {})[aggregate] = d["value"]
    assert len(delivered) >= 10
    for key, values in delivered.items():  # recomputed from the historian's raw stream
        inputs = periods[key]
        assert values["count"] == len(inputs), key
        assert values["max"] == max(inputs) and math.isclose(values["mean"], sum(inputs) / len(inputs)), key
    oracle_clean(got, "plant/institute")
    assert all(dict(m.properties["UserProperty"])["agreement"] == "IMT-2026-07" for m in data(got))

    # -- the city: the flow only, never newer than 3 s, no units
    got = city.snapshot()
    assert got and all(m.topic.startswith("plant/city/") for m in got)
    records = [(m, r) for m in data(got) for r in m.json()]
    assert {r["n"] for _, r in records} == {"cooling-1/flow"}
    assert all("u" not in r for _, r in records), "units are not in the city's agreement"
    for m, r in records:
        assert m.at >= r["t"] + 3.0, f"a flow reading taken at {r['t']:.3f} arrived at {m.at:.3f}: inside the embargo"
    flow_taken = sorted({d["time"] for d in raw if d["channel"] == "flow"})
    assert flow_taken[0] < campaign <= sent_until, "readings before and in the campaign were taken"
    assert sorted({r["t"] for _, r in records}) == [t for t in flow_taken if t >= campaign], \
        "every flow reading of the campaign, none from before it (all older than the delay by now)"
    oracle_clean(got, "plant/city")
    assert snoop.count() == 0, "the institute's credentials read the city's topics"


def test_restarts_keep_the_chain_and_verify_names_a_removed_message(make_broker, tmp_path):
    broker = make_broker(users=USERS, acl=ACL)
    terms = agreement("IMT-2026-07", "Institut für Metallurgie", include=["*/tc*"],
                      pseudonyms={"furnace-1": "site-A"})
    gateway = GatewayProcess(tmp_path / "gw", {"furnace-1": SimNode("furnace-1").key},
                             [route("institute", broker, "json", terms)], extra={"ledger": {"checkpoint_interval": "1s"}})
    capture = tmp_path / "capture.txt"
    with open(capture, "w") as out:  # the partner's own tool, with a persistent session
        mosquitto_sub = subprocess.Popen(
            ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-u", "institute", "-P", USERS["institute"],
             "-t", "plant/institute/#", "-q", "1", "-c", "-i", "institute-capture", "-F", "%t %x"], stdout=out)
    nodes = Nodes(None, {"furnace-1": ("tc1", "tc2")})
    try:
        time.sleep(0.5)
        gateway.start()
        nodes.address = gateway.address
        nodes.send(3.0)
        gateway.stop()  # a clean restart
        gateway.start()
        nodes.send(3.0)
        gateway.kill()  # a crash
        gateway.start()
        # the operator gives the partner the fingerprint; the partner checks live, joining mid-stream
        shown = smemet("gateway", "signing-key", "show", "--config", str(gateway.config_path))
        assert shown.returncode == 0, shown.stderr
        fingerprint = next(line.split(":", 1)[1].strip() for line in shown.stdout.splitlines()
                           if line.startswith("fingerprint:"))
        password = tmp_path / "institute.pw"
        password.write_text(USERS["institute"] + "\n")
        live = subprocess.Popen([sys.executable, "-m", "smemet", "verify", "--broker", broker.url, "--topic",
                                 "plant/institute/#", "--username", "institute", "--password-file", str(password),
                                 "--duration", "4", "--fingerprint", fingerprint],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        nodes.send(3.0)
        time.sleep(2.5)  # a checkpoint after the last message
        live_out, live_err = live.communicate(timeout=30)
        gateway.stop()
        time.sleep(0.5)
    finally:
        nodes.close()
        mosquitto_sub.terminate()
        mosquitto_sub.wait(10)
    lines = capture.read_text().splitlines()
    messages = [(line.rsplit(" ", 1)[0], bytes.fromhex(line.rsplit(" ", 1)[1])) for line in lines if line]
    public = next(p for t, p in messages if t.endswith("/gateway-key"))
    from hil_tests.harness.chain_oracle import cose_key_public

    public = cose_key_public(public)
    result = Oracle(messages, public).result()
    assert result.clean and result.authentic == set(range(1, result.highest_signed + 1)), result
    assert result.highest_signed >= 50
    sent = {(json.loads(p)["node"], json.loads(p)["seq"], json.loads(p)["channel"], json.loads(p)["time"])
            for t, p in messages if not t.endswith(("/status", "/checkpoint", "/gateway-key"))}
    assert {node for node, *_ in sent} == {"site-A"}

    assert fingerprint.replace(" ", "") == hashlib.sha256(public).hexdigest()
    assert live.returncode == 0, live_out + live_err
    assert "COMPLETE: every message up to seq" in live_out, live_out  # (from where it joined the stream)
    ok = smemet("verify", "--capture", str(capture), "--fingerprint", fingerprint)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"COMPLETE: every message up to seq {result.highest_signed} is here and authentic" in ok.stdout
    assert "verdict: complete and authentic" in ok.stdout

    removed_seq = result.highest_signed // 2
    kept = [line for line in lines if not (line and not line.rsplit(" ", 1)[0].endswith(
        ("/status", "/checkpoint", "/gateway-key")) and link_fields(bytes.fromhex(line.rsplit(" ", 1)[1]))
        ["link_seq"] == removed_seq)]
    assert len(kept) < len(lines)
    holed = tmp_path / "holed.txt"
    holed.write_text("\n".join(kept) + "\n")
    bad = smemet("verify", "--capture", str(holed), "--fingerprint", fingerprint)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"MISSING: seq {removed_seq} (1 messages)" in bad.stdout and "verdict: PROBLEMS FOUND" in bad.stdout
    wrong = smemet("verify", "--capture", str(capture), "--fingerprint", "00" * 32)
    assert wrong.returncode == 1 and "is NOT the one you pinned" in wrong.stdout

    # the gateway's ledger: exactly the numbers the partner has, with the same links
    exported = smemet("ledger", "institute", "--config", str(gateway.config_path), "--csv")
    assert exported.returncode == 0, exported.stderr
    rows = [line.split(",") for line in exported.stdout.splitlines()[1:]]
    links = {}
    for t, p in messages:
        if not t.endswith(("/status", "/checkpoint", "/gateway-key")):
            f = link_fields(p)
            links[f["link_seq"]] = hashlib.sha256(bytes.fromhex(f["link_prev"]) + f["link_seq"].to_bytes(8, "big")
                                                  + hashlib.sha256(p).digest()).hexdigest()
    assert [int(r[1]) for r in rows] == sorted(links)
    assert all(r[2] == links[int(r[1])] and r[3:5] == ["IMT-2026-07", "1"] for r in rows)
    listing = smemet("agreements", "list", "--config", str(gateway.config_path))
    assert listing.returncode == 0 and "IMT-2026-07 v1" in listing.stdout and "in force" in listing.stdout
    shown = smemet("agreements", "show", "institute", "--config", str(gateway.config_path))
    assert shown.returncode == 0, shown.stderr
    assert "channels:    site-A/tc*" in shown.stdout and "furnace-1" not in shown.stdout, shown.stdout
    assert "history:     IMT-2026-07 version 1 since" in shown.stdout
