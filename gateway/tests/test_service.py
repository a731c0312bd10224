"""The gateway in-process on loopback UDP: ACKs, retransmissions, rejects by
reason, group commit, storage full, status frames, shutdown."""

import asyncio
import socket
import time

import pytest

from smemet.gateway.config import load_config
from smemet.gateway.service import Gateway
from hil_tests.harness.nodes import SimNode, node_key, write_config
from smemet.protocol import cose, gateway_side, messages

NODES = [f"node-{i}" for i in range(8)]


class UdpClient:
    def __init__(self, address, family=socket.AF_INET):
        self.address = address
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))

    async def send(self, frame):
        await asyncio.get_running_loop().sock_sendto(self.sock, frame, self.address)

    async def recv(self, timeout=3.0):
        return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(self.sock, 4096), timeout)

    async def nothing(self, wait=0.3):
        """True when no datagram arrives within ``wait`` seconds."""
        try:
            await self.recv(wait)
        except TimeoutError:
            return True
        return False

    def close(self):
        self.sock.close()


def sample(gateway, name, labels=None):
    return gateway.metrics.registry.get_sample_value(name, labels or {}) or 0.0


async def start_gateway(tmp_path, extra="", outbox="", bind="127.0.0.1"):
    config = load_config(write_config(str(tmp_path), NODES, extra=extra, outbox=outbox, bind=bind))
    gateway = Gateway(config)
    await gateway.start()
    return gateway


@pytest.fixture
async def gateway(tmp_path):
    gw = await start_gateway(tmp_path)
    yield gw
    await gw.stop()


@pytest.fixture
async def client(gateway):
    c = UdpClient(gateway.udp.address[:2])
    yield c
    c.close()


def stored(gateway):
    return gateway.outbox._reader.execute("SELECT node, seq FROM frames ORDER BY id").fetchall()


async def test_frame_is_stored_acked_and_processed(gateway, client):
    node = SimNode("node-1")
    before = time.time()
    await client.send(node.data_frame(samples=16))
    (seqs, gateway_ms, status), ack_seq = node.open_ack(await client.recv())
    assert seqs == [1] and status == gateway_side.ACK_OK
    assert before * 1000 - 1 <= gateway_ms <= time.time() * 1000 + 1
    assert stored(gateway) == [("node-1", 1)]
    await gateway.outbox.wait_beyond(0, timeout=3)
    rows = gateway.outbox.read(0, 100)
    assert len(rows) == 16
    assert {(m.node, m.seq, m.channel, m.unit, m.quality) for m in rows} == {("node-1", 1, "t", "Cel", "good")}
    assert sorted(m.value for m in rows) == [20.0 + i * 0.25 for i in range(16)]
    # ACK sequence numbers rise per node
    await client.send(node.data_frame())
    (seqs, _ms, _status), second = node.open_ack(await client.recv())
    assert seqs == [2] and second > ack_seq


async def test_ack_does_not_verify_with_another_key(gateway, client):
    node = SimNode("node-2")
    await client.send(node.data_frame())
    ack = await client.recv()
    with pytest.raises(Exception) as info:
        messages.open_from_gateway(ack, b"node-2", node_key("node-3"))
    assert getattr(info.value, "reason", "") == "bad-mac"


async def test_retransmission_is_reacked_not_stored_twice(gateway, client):
    node = SimNode("node-1")
    frame = node.data_frame()
    await client.send(frame)
    assert node.open_ack(await client.recv())[0][0] == [1]
    for _ in range(3):
        await client.send(frame)
        assert node.open_ack(await client.recv())[0][0] == [1]
    await asyncio.sleep(0.1)
    assert stored(gateway) == [("node-1", 1)]
    assert sample(gateway, "smemet_gateway_frames_duplicate_total") == 3
    await gateway.outbox.wait_beyond(0, timeout=3)
    assert {m.seq for m in gateway.outbox.read(0, 1000)} == {1}
    assert len(gateway.outbox.read(0, 1000)) == 16


async def test_retransmission_below_window_is_reacked_from_the_table(gateway, client):
    node = SimNode("node-1")
    first = node.data_frame(samples=2)
    await client.send(first)
    node.open_ack(await client.recv())
    await client.send(node.data_frame(samples=2, seq=200))  # the window moves past seq 1
    node.open_ack(await client.recv())
    await client.send(first)
    assert node.open_ack(await client.recv())[0][0] == [1]
    # a seq below the window that was never stored is a replay: rejected, no ACK
    await client.send(node.data_frame(samples=2, seq=50))
    assert await client.nothing()
    assert sample(gateway, "smemet_gateway_frames_rejected_total", {"reason": "replayed"}) == 1
    assert stored(gateway) == [("node-1", 1), ("node-1", 200)]


async def test_reused_sequence_number_is_rejected_not_acked(gateway, client):
    """A different frame under a number already stored (a node that lost its
    reservation, or an attacker) gets no ACK: the node must not delete it."""
    node = SimNode("node-1")
    first = node.data_frame(samples=2, seq=7)
    await client.send(first)
    assert node.open_ack(await client.recv())[0][0] == [7]
    # the same frame again (a missed ACK; the unprotected age may differ): ACKed again
    mac0 = cose.parse(first)
    await client.send(cose.assemble(mac0.protected, mac0.payload, mac0.tag, age_ms=1500))
    assert node.open_ack(await client.recv())[0][0] == [7]
    await client.send(node.data_frame(samples=2, seq=7, value=lambda i: 99.0))
    assert await client.nothing()
    assert sample(gateway, "smemet_gateway_frames_rejected_total", {"reason": "replayed"}) == 1
    assert stored(gateway) == [("node-1", 7)]


@pytest.mark.parametrize(
    "make_frame, reason",
    [
        (lambda: SimNode("stranger").data_frame(), "unknown-node"),
        (lambda: SimNode("node-1", key=node_key("node-2")).data_frame(), "bad-mac"),
        (lambda: SimNode("node-1").data_frame()[:-3], "malformed"),
        (lambda: b"\x00" * 40, "malformed"),
        (lambda: b"\xd1" + b"\xff" * 1100, "oversize"),
        (lambda: cose.create(node_key("node-1"), b"node-1", 9, messages.CT_SENML, b"\xa0"), "invalid-senml"),
        (lambda: cose.create(node_key("node-1"), b"node-1", 9, messages.CT_ACK, b"\xa0"), "unknown-content-type"),
    ],
)
async def test_bad_frames_are_counted_by_reason_and_never_stored(gateway, client, make_frame, reason):
    await client.send(make_frame())
    assert await client.nothing()
    assert sample(gateway, "smemet_gateway_frames_rejected_total", {"reason": reason}) == 1
    assert stored(gateway) == []
    assert gateway.outbox.read(0, 10) == []


async def test_rejects_are_counted_per_registered_node(gateway, client):
    """A node flashed with the wrong key shows up under its own name; an
    unknown sender adds no label (the label set stays bounded)."""
    await client.send(SimNode("node-1", key=node_key("node-2")).data_frame())
    await client.send(SimNode("stranger").data_frame())
    assert await client.nothing()
    rejected = "smemet_gateway_node_frames_rejected_total"
    assert sample(gateway, rejected, {"node": "node-1", "reason": "bad-mac"}) == 1
    registry = gateway.metrics.registry
    assert registry.get_sample_value(rejected, {"node": "stranger", "reason": "unknown-node"}) is None


async def test_flood_of_bad_frames_logs_little(gateway, client, caplog):
    import logging

    logger = logging.getLogger("smemet")
    logger.addHandler(caplog.handler)
    try:
        for _ in range(200):
            await client.send(SimNode("stranger").data_frame(samples=1))
        await asyncio.sleep(0.3)
    finally:
        logger.removeHandler(caplog.handler)
    assert sample(gateway, "smemet_gateway_frames_rejected_total", {"reason": "unknown-node"}) == 200
    rejected_lines = [r for r in caplog.records if r.getMessage() == "frame rejected"]
    assert 1 <= len(rejected_lines) <= 2
    assert all("stranger" not in str(getattr(r, "detail", "")) or True for r in rejected_lines)


async def test_group_commit_batches_many_frames(gateway, client):
    nodes = [SimNode(name) for name in NODES]
    frames = [node.data_frame(samples=4) for _ in range(40) for node in nodes]
    for frame in frames:
        await client.send(frame)
    acked = {}
    while sum(len(s) for s in acked.values()) < len(frames):
        data = await client.recv(5)
        kid = cose.parse(data).kid.decode()
        node = nodes[NODES.index(kid)]
        (seqs, _ms, status), _ = node.open_ack(data)
        assert status == gateway_side.ACK_OK
        acked.setdefault(kid, []).extend(seqs)
    assert {k: sorted(v) for k, v in acked.items()} == {name: list(range(1, 41)) for name in NODES}
    commits = sample(gateway, "smemet_gateway_commit_frames_count")
    assert commits < len(frames) / 4, f"{commits} commits for {len(frames)} frames: no grouping"
    assert len(stored(gateway)) == len(frames)


async def test_maintenance_prunes_and_refreshes_the_gauges_while_running(tmp_path):
    """The maintenance loop runs from the start (an empty replay book once
    stopped it before its first round: nothing was ever pruned)."""
    gateway = await start_gateway(tmp_path, outbox='audit_retention = "0s"\nprune_interval = "0.2s"')
    client = UdpClient(gateway.udp.address[:2])
    try:
        node = SimNode("node-1")
        for _ in range(3):
            await client.send(node.data_frame(samples=4))
            await client.recv()
        for _ in range(50):
            if not stored(gateway) and sample(gateway, "smemet_gateway_outbox_frames") == 0 \
                    and sample(gateway, "smemet_gateway_measurements_processed_total") == 12:
                break
            await asyncio.sleep(0.1)
        assert stored(gateway) == [], "processed frames past the audit retention are pruned"
        assert gateway.outbox.read(0, 100) == [], "without durable sinks, processed rows past the retention go too"
        assert sample(gateway, "smemet_gateway_outbox_frames") == 0
    finally:
        client.close()
        await gateway.stop()


async def test_storage_full_refuses_and_keeps_everything_acked(tmp_path):
    gateway = await start_gateway(tmp_path, outbox="max_bytes = 65536\ncommit_max_delay = 0")
    client = UdpClient(gateway.udp.address[:2])
    node = SimNode("node-1")
    acked, full_acks = [], 0
    try:
        for _ in range(400):
            await client.send(node.data_frame(samples=48))
            (seqs, _ms, status), _ = node.open_ack(await client.recv())
            if status == messages.ACK_FULL:
                assert seqs == []
                full_acks += 1
                if full_acks >= 3:
                    break
            else:
                acked.extend(seqs)
        assert full_acks >= 3, "outbox never reported full"
        assert sample(gateway, "smemet_gateway_storage_full") == 1
        assert sample(gateway, "smemet_gateway_frames_refused_full_total") >= 3
        assert [seq for _node, seq in stored(gateway)] == acked
    finally:
        client.close()
        await gateway.stop()


async def test_status_frames_feed_node_metrics(gateway, client):
    node = SimNode("node-4")
    await client.send(node.status_frame(store_depth=17))
    node.open_ack(await client.recv())
    await gateway.outbox.wait_beyond(0, timeout=3)
    await asyncio.sleep(0.05)
    assert sample(gateway, "smemet_gateway_node_store_depth", {"node": "node-4"}) == 17
    assert sample(gateway, "smemet_gateway_node_last_seen_timestamp_seconds", {"node": "node-4"}) > time.time() - 10
    rows = gateway.outbox.read(0, 10)
    assert {(m.channel, m.value, m.kind) for m in rows} == {("store_depth", 17.0, "status"), ("fw", "0.1.0", "status")}


async def test_ipv6_loopback(tmp_path):
    gateway = await start_gateway(tmp_path, bind="::1")
    client = UdpClient(gateway.udp.address[:2], socket.AF_INET6)
    try:
        node = SimNode("node-1")
        await client.send(node.data_frame())
        assert node.open_ack(await client.recv())[0][0] == [1]
    finally:
        client.close()
        await gateway.stop()


async def test_processing_chain_applies_to_configured_channel(tmp_path):
    extra = (
        '[channels."node-1/t"]\nunit = "K"\n'
        'steps = [{type = "calibration", offset = 273.15}, {type = "range", max = 300.0}]\n'
    )
    gateway = await start_gateway(tmp_path, extra=extra)
    client = UdpClient(gateway.udp.address[:2])
    try:
        node = SimNode("node-1")
        other = SimNode("node-2")
        await client.send(node.data_frame(samples=4, value=lambda i: 20.0 + 20 * i))
        node.open_ack(await client.recv())
        await client.send(other.data_frame(samples=1, value=lambda i: 20.0))
        other.open_ack(await client.recv())
        deadline = time.monotonic() + 3
        while len(gateway.outbox.read(0, 10)) < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        rows = gateway.outbox.read(0, 10)
        processed = [(m.value, m.unit, m.quality, m.reason) for m in rows if m.node == "node-1"]
        assert processed == [
            (pytest.approx(293.15), "K", "good", None),
            (pytest.approx(313.15), "K", "bad", "out-of-range"),
            (pytest.approx(333.15), "K", "bad", "out-of-range"),
            (pytest.approx(353.15), "K", "bad", "out-of-range"),
        ]
        assert [(m.value, m.unit) for m in rows if m.node == "node-2"] == [(20.0, "Cel")]
    finally:
        client.close()
        await gateway.stop()


async def test_chains_continue_across_a_restart(tmp_path):
    # A 10 s mean is open when the gateway restarts: the window's first half
    # came before the restart, the second after.  Its point must average all
    # of it, as if there had been no restart.
    extra = '[channels."node-1/t"]\nsteps = [{type = "aggregate", period = 10, function = "mean"}]\n'
    node = SimNode("node-1")
    window = (int(time.time()) // 10 - 3) * 10 * 1000  # a window in the recent past, ms

    async def send(gateway, at_ms, value):
        client = UdpClient(gateway.udp.address[:2])
        try:
            await client.send(node.data_frame(samples=4, now_ms=at_ms, value=lambda i: value))
            node.open_ack(await client.recv())
        finally:
            client.close()

    gateway = await start_gateway(tmp_path, extra=extra)
    try:
        await send(gateway, window - 5000, 100.0)  # the window before: closed by the next frame
        await send(gateway, window + 2000, 10.0)
        await send(gateway, window + 4000, 20.0)
    finally:
        await gateway.stop()
    gateway = await start_gateway(tmp_path, extra=extra)
    try:
        await send(gateway, window + 7000, 30.0)
        await send(gateway, window + 9000, 40.0)
        await send(gateway, window + 15000, 0.0)  # the next window: closes ours
        deadline = time.monotonic() + 3
        while len(gateway.outbox.read(0, 100)) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        points = [(m.time, m.value) for m in gateway.outbox.read(0, 100)]
        assert points == [(pytest.approx((window - 10000) / 1000, abs=1e-3), 100.0), (pytest.approx(window / 1000, abs=1e-3), 25.0)]
    finally:
        await gateway.stop()


async def test_stop_drains_pending_frames(tmp_path):
    gateway = await start_gateway(tmp_path, outbox="commit_max_delay = 0.2")
    client = UdpClient(gateway.udp.address[:2])
    node = SimNode("node-1")
    try:
        for _ in range(5):
            await client.send(node.data_frame())
        await asyncio.sleep(0.05)  # received, waiting for the group to fill
        await gateway.stop()
        acked = []
        while True:
            try:
                acked.extend(node.open_ack(await client.recv(0.5))[0][0])
            except TimeoutError:
                break
        assert sorted(acked) == [1, 2, 3, 4, 5]
        rows = gateway.outbox  # closed: reopen to check processing finished
        from smemet.gateway.outbox import Outbox

        reopened = Outbox(rows.path, rows.max_bytes)
        try:
            assert reopened.processing_cursor() == 5
            assert len(reopened.read(0, 1000)) == 5 * 16
        finally:
            reopened.close()
    finally:
        client.close()


async def test_metrics_endpoint_serves_on_loopback(tmp_path):
    import urllib.request

    from hil_tests.harness.nodes import free_udp_port

    port = free_udp_port()  # a free TCP port is very likely free too; retry is overkill here
    config = load_config(write_config(str(tmp_path), NODES))
    config = type(config)(**{**{f: getattr(config, f) for f in config.__dataclass_fields__},
                             "metrics": type(config.metrics)("127.0.0.1", port)})
    gateway = Gateway(config)
    await gateway.start()
    try:
        client = UdpClient(gateway.udp.address[:2])
        await client.send(SimNode("stranger").data_frame())
        await client.nothing(0.2)
        client.close()
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(None, lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read())
        text = body.decode()
        assert 'smemet_gateway_frames_rejected_total{reason="unknown-node"} 1.0' in text
        assert "smemet_gateway_storage_full 0.0" in text
    finally:
        await gateway.stop()


def test_json_logs_are_one_object_per_line():
    import io
    import json
    import logging

    from smemet.gateway import logs

    stream = io.StringIO()
    logs.setup("info", "json", stream)
    try:
        logging.getLogger("smemet.gateway.test").warning("frame rejected", extra={"reason": "bad-mac", "node": "n 1"})
    finally:
        logs.setup("info", "logfmt")
    line = json.loads(stream.getvalue())
    assert (line["msg"], line["reason"], line["node"], line["level"]) == ("frame rejected", "bad-mac", "n 1", "warning")
    stream = io.StringIO()
    logs.setup("info", "logfmt", stream)
    try:
        logging.getLogger("smemet.gateway.test").warning("x", extra={"node": "n 1"})
    finally:
        logs.setup("info", "logfmt")
    assert 'node="n 1"' in stream.getvalue() and "level=warning" in stream.getvalue()
