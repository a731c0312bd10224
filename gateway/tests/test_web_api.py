"""The web console's HTTP API against an in-process gateway on loopback:
each endpoint's JSON checked against its published JSON Schema (by the
independent ``jsonschema`` validator), fetched with the standard library's
HTTP client (not the server's own library); login when not open, no secret
in any response, clean 400/401/404/405 answers, the live stream."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
import urllib.parse
from importlib import resources

import jsonschema
import pytest

from smemet.gateway.config import load_config
from smemet.gateway.service import Gateway
from smemet.gateway.sinks.web.passwords import hash_password
from hil_tests.harness.nodes import SimNode, node_key, write_config
from smemet.protocol import cose, messages, senml

NODES = ["furnace-1", "flow-2", "spare-3"]
PASSWORD = "correct horse battery"
ROUTE_PASSWORD = "route-secret-XYZ-123"
ROUTE_USER = "gw-broker-login-7f3a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def schema(name: str) -> dict:
    return json.loads(resources.files("smemet.gateway.sinks.web").joinpath("schema", f"{name}.json").read_text())


class Client:
    """Blocking stdlib HTTP, run in a thread so the gateway's loop keeps serving."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.port = port
        self.host = host
        self.cookie: str | None = None

    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        headers = dict(headers or {})
        if self.cookie:
            headers["Cookie"] = self.cookie
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        connection.close()
        return response.status, dict(response.getheaders()), data

    async def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        return await asyncio.to_thread(self._request, method, path, body, headers)

    async def get(self, path: str, headers: dict | None = None):
        return await self.request("GET", path, headers=headers)

    async def json(self, path: str, expect: int = 200):
        status, headers, data = await self.get(path)
        assert status == expect, (path, status, data)
        assert headers["Content-Type"].startswith("application/json")
        return json.loads(data)

    async def login(self, user: str, password: str):
        form = urllib.parse.urlencode({"user": user, "password": password}).encode()
        status, headers, data = await self.request("POST", "/login", form, {
            "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
        if status == 200:
            self.cookie = headers["Set-Cookie"].split(";")[0]
        return status, headers, data

    def _events(self, path: str, count: int) -> list[tuple[str, dict]]:
        """The first ``count`` events of a Server-Sent Events stream."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        connection.request("GET", path, headers={"Cookie": self.cookie} if self.cookie else {})
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream"
        events, name, data = [], None, []
        while len(events) < count:
            line = response.fp.readline().decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "" and name is not None:
                events.append((name, json.loads("\n".join(data))))
                name, data = None, []
        connection.close()
        return events

    async def events(self, path: str, count: int):
        return await asyncio.to_thread(self._events, path, count)


def fault_frame(node: str, seq: int, reason: str) -> bytes:
    now_ms = int(time.time() * 1000)
    builder = senml.PackBuilder(4)
    builder.add("loop", "mA", None, now_ms - 10, reason)
    return cose.create(node_key(node), node.encode(), seq, messages.CT_SENML, builder.encode(now_ms, True))


def health_frame(node: str, seq: int) -> bytes:
    now_ms = int(time.time() * 1000)
    builder = senml.PackBuilder(8)
    builder.add("uptime", "s", 7200, now_ms)
    builder.add("store_depth", None, 4, now_ms)
    builder.add_text("reset_cause", "brownout", now_ms)
    builder.add_text("fw", "2.0.1", now_ms)
    return cose.create(node_key(node), node.encode(), seq, messages.CT_STATUS, builder.encode(now_ms, True))


async def start(tmp_path, web: str, extra: str = ""):
    port = free_port()
    web_table = f"[web]\nport = {port}\nhistory = \"60s\"\n{web}\n"
    chains = ('[channels."furnace-1/t"]\nunit = "Cel"\n'
              'steps = [{ type = "range", min = 0.0, max = 1800.0 }, { type = "ema", alpha = 0.5 }]\n')
    config = load_config(write_config(str(tmp_path), NODES, extra=web_table + chains + extra))
    gateway = Gateway(config)
    await gateway.start()
    return gateway, Client(port)


async def feed(gateway) -> None:
    """Frames from two nodes (data, a wire break, health) and one with a wrong key."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    address = gateway.udp.address[:2]
    furnace = SimNode("furnace-1", channels=("t", "cj"))
    for _ in range(3):
        sock.sendto(furnace.data_frame(samples=8, value=lambda i: 1400.0 + i), address)
        await asyncio.sleep(0.05)
    furnace.seq += 1
    sock.sendto(health_frame("furnace-1", furnace.seq), address)
    sock.sendto(fault_frame("flow-2", 1, "wire-break"), address)
    sock.sendto(SimNode("spare-3", key=b"\x02" * 32).data_frame(samples=2), address)  # wrong key: bad-mac
    sock.sendto(SimNode("stranger", key=b"\x03" * 32).data_frame(samples=2), address)  # no key at all
    sock.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        view = gateway.sinks[-1].console
        if view.node("furnace-1") and view.node("furnace-1").health and view.node("flow-2"):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the console did not receive the frames")


@pytest.fixture
async def open_console(tmp_path):
    gateway, client = await start(tmp_path, 'bind = "127.0.0.1"')
    await feed(gateway)
    yield gateway, client
    await gateway.stop()


async def test_every_endpoint_matches_its_schema(open_console):
    gateway, client = open_console
    for path, name in [("/api/v1/gateway", "gateway"), ("/api/v1/nodes", "nodes"), ("/api/v1/node/furnace-1", "node"),
                       ("/api/v1/node/spare-3", "node"), ("/api/v1/routes", "routes"), ("/api/v1/rejects", "rejects"),
                       ("/api/v1/modbus", "modbus"), ("/api/v1/session", "session"), ("/healthz", "healthz")]:
        jsonschema.validate(await client.json(path), schema(name))
    status, _, data = await client.get("/api/v1/node/nobody")
    assert status == 404
    jsonschema.validate(json.loads(data), schema("error"))


async def test_documents_say_what_the_gateway_saw(open_console):
    gateway, client = open_console
    summary = await client.json("/api/v1/gateway")
    assert summary["id"] == gateway.config.gateway_id and summary["implementation"] in ("cython", "pure")
    assert summary["storage"]["max_bytes"] == gateway.config.outbox.max_bytes
    assert summary["storage"]["room_bytes"] == summary["storage"]["max_bytes"] - summary["storage"]["bytes"]
    assert summary["rejects"]["since_start"] == {"bad-mac": 1, "unknown-node": 1}
    assert summary["nodes"] == {"total": 3, "ok": 2, "late": 0, "silent": 0, "waiting": 1}

    furnace = await client.json("/api/v1/node/furnace-1")
    row = furnace["node"]
    assert (row["state"], row["fw"], row["reset_cause"], row["store_depth"]) == ("ok", "2.0.1", "brownout", 4)
    assert row["uptime_s"] >= 7200 and row["clock_synced"] is True and row["link"]["kind"] == "udp"
    t = next(c for c in furnace["channels"] if c["channel"] == "t")
    assert t["unit"] == "Cel" and t["quality"] == "good" and t["value"] == pytest.approx(1407.0, abs=5)
    assert [s["type"] for s in t["chain"]] == ["range", "ema"] and t["chain"][0]["parameters"] == {"min": 0.0, "max": 1800.0}
    assert len(t["history"]["t"]) >= 1
    cj = next(c for c in furnace["channels"] if c["channel"] == "cj")
    assert cj["chain"] == []

    flow = await client.json("/api/v1/node/flow-2")
    loop = flow["channels"][0]
    assert (loop["quality"], loop["reason"], loop["value"]) == ("bad", "wire-break", None)
    assert flow["node"]["quality"] == "bad"

    spare = await client.json("/api/v1/node/spare-3")
    assert spare["node"]["state"] == "waiting" and spare["node"]["rejects"] == {"bad-mac": 1}
    assert "wrong key" in spare["rejects"][0]["title"]
    assert any("wrong key" in check for check in spare["checks"])

    rejects = await client.json("/api/v1/rejects")
    assert {r["reason"]: r["count"] for r in rejects["since_start"]} == {"bad-mac": 1, "unknown-node": 1}
    assert rejects["per_node"] == {"spare-3": {"bad-mac": 1}}  # an unregistered sender is not a node
    routes = await client.json("/api/v1/routes")
    assert routes["routes"] == []  # the console does not list itself


async def test_node_list_filters_sorts_and_pages_on_the_server(tmp_path):
    names = [f"node-{i:04d}" for i in range(1000)]
    port = free_port()
    config = load_config(write_config(str(tmp_path), names, extra=f"[web]\nport = {port}\n"))
    gateway = Gateway(config)
    await gateway.start()
    client = Client(port)
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.sendto(SimNode("node-0500").data_frame(samples=2), gateway.udp.address[:2])
        sock.close()
        await asyncio.sleep(0.3)
        page = await client.json("/api/v1/nodes?limit=100&offset=100&sort=node")
        assert (page["total"], page["matched"], len(page["nodes"])) == (1000, 1000, 100)
        assert [n["node"] for n in page["nodes"]][:2] == ["node-0100", "node-0101"]
        assert page["counts"] == {"ok": 1, "late": 0, "silent": 0, "waiting": 999}
        found = await client.json("/api/v1/nodes?q=NODE-050&sort=node&order=desc")
        assert [n["node"] for n in found["nodes"]] == [f"node-{i:04d}" for i in range(509, 499, -1)]
        ok = await client.json("/api/v1/nodes?state=ok")
        assert [n["node"] for n in ok["nodes"]] == ["node-0500"] and ok["matched"] == 1
        worst_first = await client.json("/api/v1/nodes?limit=1")
        assert worst_first["nodes"][0]["state"] == "waiting"
        best_first = await client.json("/api/v1/nodes?limit=1&order=desc")
        assert best_first["nodes"][0]["node"] == "node-0500"
    finally:
        await gateway.stop()


@pytest.mark.parametrize("query, message", [
    ("limit=0", "limit must be an integer 1..500, not 0"),
    ("limit=abc", "limit must be an integer 1..500, not 'abc'"),
    ("offset=-1", "offset must be an integer"),
    ("sort=colour", "sort must be one of state, node, age"),
    ("order=up", "order must be asc or desc"),
    ("state=happy", "state must be one or more of ok, late, silent, waiting"),
])
async def test_bad_queries_are_answered_400_with_the_reason(open_console, query, message):
    _, client = open_console
    status, headers, data = await client.get(f"/api/v1/nodes?{query}")
    assert status == 400 and headers["Content-Type"].startswith("application/json")
    assert message in json.loads(data)["error"]


async def test_unknown_paths_and_methods_are_answered_cleanly(open_console):
    _, client = open_console
    status, headers, data = await client.get("/api/v1/nothing")
    assert status == 404 and json.loads(data) == {"error": "no such page: /api/v1/nothing"}
    status, headers, data = await client.request("DELETE", "/api/v1/nodes")
    assert status == 405 and "GET" in headers["Allow"] and "read-only" in json.loads(data)["error"]
    status, _, data = await client.request("POST", "/api/v1/gateway", b"{}")
    assert status == 405
    status, _, data = await client.get("/nowhere")
    assert status == 404 and data == b"no such page: /nowhere\n"
    status, _, _ = await client.get("/static/../config.py")
    assert status == 404
    status, _, data = await client.get("/api/v1/events?view=map")
    assert status == 400 and "view must be overview or node" in json.loads(data)["error"]


async def test_pages_carry_a_strict_content_security_policy(open_console):
    _, client = open_console
    status, headers, body = await client.get("/")
    assert status == 200 and b"/static/console.js" in body
    assert "script-src 'self'" in headers["Content-Security-Policy"] and headers["X-Frame-Options"] == "DENY"
    for name in ("console.js", "console.css", "icon.svg"):
        status, headers, body = await client.get(f"/static/{name}")
        assert status == 200 and body and headers["X-Content-Type-Options"] == "nosniff"
    status, _, body = await client.get("/static/console.js")
    assert b"http://" not in body.replace(b'"http://www.w3.org/2000/svg"', b"") and b"https://" not in body  # no CDN


async def test_open_console_answers_loopback_host_names_only(open_console):
    """A web page elsewhere that rebinds its DNS name to 127.0.0.1 gets nothing."""
    _, client = open_console
    status, _, data = await client.get("/api/v1/gateway", {"Host": "attacker.example:8470"})
    assert status == 403 and b"loopback" in data
    for host in ("localhost:8470", "127.0.0.1", "[::1]:8470"):
        status, _, _ = await client.get("/api/v1/gateway", {"Host": host})
        assert status == 200, host


async def test_live_stream_sends_the_same_documents(open_console):
    gateway, client = open_console
    events = await client.events("/api/v1/events?view=overview&state=waiting", 5)
    names = [name for name, _ in events]
    assert names == ["gateway", "nodes", "waiting", "routes", "modbus"]
    documents = dict(events)
    jsonschema.validate(documents["gateway"], schema("gateway"))
    jsonschema.validate(documents["nodes"], schema("nodes"))
    assert [n["node"] for n in documents["nodes"]["nodes"]] == ["spare-3"]  # the stream honours the query
    node_events = await client.events("/api/v1/events?view=node&node=flow-2", 4)
    assert [name for name, _ in node_events] == ["gateway", "node", "gateway", "node"]  # it keeps coming
    jsonschema.validate(node_events[1][1], schema("node"))
    assert node_events[1][1]["channels"][0]["reason"] == "wire-break"


async def test_node_going_silent_turns_late_then_silent(tmp_path):
    gateway, client = await start(tmp_path, 'expected_period = "1s"')
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.sendto(SimNode("furnace-1").data_frame(samples=2), gateway.udp.address[:2])
        sock.close()
        states = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "silent" not in states:
            state = (await client.json("/api/v1/node/furnace-1"))["node"]["state"]
            if not states or states[-1] != state:
                states.append(state)
            await asyncio.sleep(0.2)
        assert states == ["ok", "late", "silent"]
    finally:
        await gateway.stop()


# -- logins ---------------------------------------------------------------

@pytest.fixture
async def guarded_console(tmp_path):
    route = (f'[[routes]]\nname = "partner"\nbroker = "mqtt://127.0.0.1:{free_port()}"\n'
             f'include = ["*"]\nusername = "{ROUTE_USER}"\npassword = "{ROUTE_PASSWORD}"\n')
    gateway, client = await start(tmp_path, f'bind = "127.0.0.1"\nsession_ttl = "60s"\n'
                                             f'[web.users]\nanna = "{hash_password(PASSWORD)}"\n', extra=route)
    await feed(gateway)
    yield gateway, client
    await gateway.stop()


async def test_login_is_required_when_users_are_configured(guarded_console):
    gateway, client = guarded_console
    for path in ("/api/v1/gateway", "/api/v1/nodes", "/api/v1/node/furnace-1", "/api/v1/events"):
        status, _, data = await client.get(path)
        assert status == 401 and "login required" in json.loads(data)["error"], path
    status, headers, _ = await client.get("/")
    assert status == 303 and headers["Location"] == "/login"
    status, _, body = await client.get("/login")
    assert status == 200 and b'name="password"' in body
    status, _, data = await client.get("/healthz")  # for monitoring: no login, no detail
    assert status == 200 and set(json.loads(data)) == {"status", "problems"}

    status, _, data = await client.login("anna", "wrong password")
    assert status == 401 and client.cookie is None
    status, _, data = await client.login("nobody", PASSWORD)
    assert status == 401
    status, headers, data = await client.login("anna", PASSWORD)
    assert status == 200 and json.loads(data)["user"] == "anna"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=60" in cookie
    assert (await client.json("/api/v1/session"))["user"] == "anna"
    assert (await client.json("/api/v1/node/furnace-1"))["node"]["fw"] == "2.0.1"

    status, _, _ = await client.request("POST", "/logout", b"", {"Origin": "http://127.0.0.1"})
    assert status == 403  # another origin's form
    status, _, _ = await client.request("POST", "/logout", b"")
    assert status == 303
    status, _, _ = await client.get("/api/v1/gateway")
    assert status == 401  # the session ended on the server, not only in the browser


async def test_sessions_expire(guarded_console):
    gateway, client = guarded_console
    await client.login("anna", PASSWORD)
    sessions = gateway.sinks[-1].server.sessions
    sessions._clock = lambda: time.time() + 61  # noqa: SLF001 - a minute later, without waiting a minute
    status, _, _ = await client.get("/api/v1/gateway")
    assert status == 401


async def test_guessing_is_slowed_down(guarded_console):
    _, client = guarded_console
    for _ in range(5):
        status, _, _ = await client.login("anna", "guess")
        assert status == 401
    status, _, _ = await client.login("anna", "guess")
    assert status == 401
    status, headers, data = await client.login("anna", PASSWORD)  # even the right one must wait now
    assert status == 429 and int(headers["Retry-After"]) >= 1 and "too many wrong logins" in json.loads(data)["error"]


async def test_no_secret_is_ever_served(guarded_console):
    gateway, client = guarded_console
    await client.login("anna", PASSWORD)
    stored_hash = gateway.config.sinks["web"].users["anna"].text()
    secrets = [ROUTE_PASSWORD, PASSWORD, stored_hash.split("$")[4], stored_hash.split("$")[5]]
    secrets += [node_key(n).hex() for n in NODES]
    secrets += [node_key(n).hex().upper() for n in NODES]
    bodies = []
    for path in ("/", "/login", "/static/console.js", "/api/v1/gateway", "/api/v1/nodes", "/api/v1/routes",
                 "/api/v1/rejects", "/api/v1/modbus", "/api/v1/session", "/healthz", *(f"/api/v1/node/{n}" for n in NODES),
                 *(f"/api/v1/schema/{n}.json" for n in ("gateway", "node", "routes"))):
        status, headers, body = await client.get(path)
        assert status == 200, path
        bodies.append(body.decode() + json.dumps(headers))
    for name, document in await client.events("/api/v1/events", 5):
        bodies.append(json.dumps(document))
    everything = "\n".join(bodies)
    for secret in secrets:
        assert secret not in everything
    assert ROUTE_USER not in everything  # the route's broker login neither
    assert "partner" in everything  # (the route itself is shown)


async def test_stopping_the_gateway_ends_open_pages_promptly(tmp_path):
    gateway, client = await start(tmp_path, "")
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(b"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    assert b"200 OK" in await asyncio.wait_for(reader.readline(), 5)
    assert b"event: gateway" in await asyncio.wait_for(reader.readuntil(b"event: gateway"), 5)
    started = time.monotonic()
    await gateway.stop()
    assert time.monotonic() - started < 5  # not aiohttp's 60 s wait for open handlers
    rest = await asyncio.wait_for(reader.read(), 5)  # the stream ended
    assert isinstance(rest, bytes)
    writer.close()


async def test_a_channel_names_its_calibration_and_when_it_is_due(tmp_path):
    """A record added with ``smemet calibration add`` while the gateway
    runs: the node document shows the corrected value, the record that
    corrected it and its due date (schema-checked)."""
    import datetime as dt
    import subprocess
    import sys

    gateway, client = await start(tmp_path, 'bind = "127.0.0.1"',
                                  extra='[channels."furnace-1/cj"]\nsteps = [{ type = "calibration" }]\n')
    try:
        today = dt.date.today()
        added = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "smemet", "calibration", "add", "furnace-1/cj", "--certificate", "CJ-77",
            "--lab", "Lab", "--date", (today - dt.timedelta(days=360)).isoformat(),
            "--due", (today + dt.timedelta(days=5)).isoformat(), "--offset", "2.5", "--uncertainty", "0.5",
            "--valid-from", (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)).isoformat(),
            "--outbox", gateway.config.outbox.path], capture_output=True, text=True, timeout=60)
        assert added.returncode == 0, added.stderr
        await feed(gateway)
        document = await client.json("/api/v1/node/furnace-1")
        jsonschema.validate(document, schema("node"))
        channels = {c["channel"]: c for c in document["channels"]}
        cj, t = channels["cj"], channels["t"]
        assert cj["value"] == 1407.0 + 2.5 and cj["calibration"] == "CJ-77"  # the last reading of a frame: 1400 + 7
        status = cj["calibration_status"]
        assert (status["state"], status["record"], status["usage_exceeded"]) == ("due-soon", "CJ-77", False)
        assert status["due"] == (today + dt.timedelta(days=5)).isoformat() and 4 < status["due_in_days"] <= 6
        assert t["calibration"] is None and t["calibration_status"] is None  # no record, no step
    finally:
        await gateway.stop()


async def test_an_unprocessed_binary32_reading_is_shown_at_binary32(open_console):
    """furnace-1/cj has no chain: 0.1 travelled as binary32
    (0.10000000149011612 in binary64) and is shown as 0.1, in the value and
    the history; t has a chain and shows what it computed."""
    gateway, client = open_console
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    furnace = SimNode("furnace-1", channels=("t", "cj"))
    furnace.seq = 100
    sock.sendto(furnace.data_frame(samples=2, value=lambda i: 0.1), gateway.udp.address[:2])
    sock.close()
    deadline = time.monotonic() + 5
    while True:
        status, _, data = await client.get("/api/v1/node/furnace-1")
        cj = next(c for c in json.loads(data)["channels"] if c["channel"] == "cj")
        if cj["seq"] == 101 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert cj["seq"] == 101 and cj["chain"] == []
    text = data.decode()
    start = text.index('"channel":"cj"')
    assert '"value":0.1,' in text[start:start + 200], text[start:start + 200]
    assert "0.10000000149011612" not in text[start:], "the binary64 expansion of a binary32 reading"
