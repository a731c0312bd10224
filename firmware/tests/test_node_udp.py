"""A node from the built image in the files layout (every .mpy loaded into
the heap, as on a board without a ROMFS partition), end to end over UDP on loopback, against a
test peer that ACKs per SPEC: frames verify with the gateway decoder and
with pycose, retransmission, clock sync, and store-and-forward across a
SIGKILL."""

import json
import shutil
import signal
import socket
import subprocess
import time

import cbor2
import pytest
from pycose.keys import SymmetricKey
from pycose.messages import Mac0Message

from fw_testlib import MICROPYTHON
from smemet.protocol import cose, gateway_side, messages

KEY = bytes(range(32))
NODE = b"n1"
HEAP = "112K"  # two channels: NODE_HEAP_ONE plus a step (see fw_testlib)


def flash_dir(image, tmp_path, port):
    flash = tmp_path / "flash"
    shutil.copytree(image, flash, ignore=shutil.ignore_patterns("firmware.romfs"))
    config = {
        "node_id": "n1", "key": KEY.hex(), "board": "sim", "stable_after_s": 1,
        "transport": {"type": "udp", "gateway": "127.0.0.1", "port": port, "ack_timeout_ms": 200,
                      "backoff_max_ms": 400},
        "batch": {"max_records": 4, "max_latency_ms": 300}, "health": {"period_s": 1},
        "channels": [{"name": "tc", "driver": "max31856", "tc_type": "S", "period_ms": 100},
                     {"name": "loop", "driver": "ads1115", "period_ms": 250, "lrv": 0, "urv": 1600, "unit": "Cel"}],
    }
    (flash / "config.json").write_text(json.dumps(config))
    scenario = {"channels": {"tc": {"value": [[0, 1400], [100, 1600]], "cj": 30},
                             "loop": {"value": 12.0, "faults": [{"from": 0, "to": 1, "fault": "wire-break"}]}}}
    (flash / "sim.json").write_text(json.dumps(scenario))
    return flash


class Peer:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self.frames = []  # (seq, raw frame, Message)

    def pump(self, seconds, ack=True):
        end = time.time() + seconds
        while time.time() < end:
            try:
                data, addr = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            msg = gateway_side.open_from_node(data, lambda kid: KEY if kid == NODE else None, time.time())
            self.frames.append((msg.seq, data, msg))
            if ack:
                body = gateway_side.encode_ack([msg.seq], int(time.time() * 1000))
                self.sock.sendto(cose.create(KEY, NODE, 0, messages.CT_ACK, body), addr)


def start(flash, log):
    return subprocess.Popen([str(MICROPYTHON), "-X", "heapsize=" + HEAP, "main.py"], cwd=flash,
                            stdout=log, stderr=subprocess.STDOUT)


def kill(node):
    if node.poll() is None:
        node.send_signal(signal.SIGKILL)
    node.wait(5)


@pytest.fixture
def peer():
    p = Peer()
    yield p
    p.sock.close()


@pytest.fixture
def log(tmp_path):
    with open(tmp_path / "node.log", "w+") as f:
        yield f


def test_node_end_to_end(image, tmp_path, peer, log):
    flash = flash_dir(image, tmp_path, peer.port)
    node = start(flash, log)
    try:
        peer.pump(1.2, ack=False)  # nobody ACKs: the first frame is retransmitted
        assert peer.frames, "the node sent nothing"
        seqs = [seq for seq, _, _ in peer.frames]
        first = seqs[0]
        assert seqs.count(first) >= 2 and set(seqs) == {first}, ("window 1: only the oldest is resent", seqs)
        copies = [cose.parse(raw) for seq, raw, _ in peer.frames]
        assert len({c.payload for c in copies}) == 1 and len({c.tag for c in copies}) == 1
        ages = [c.age_ms for c in copies]
        assert all(a is not None for a in ages) and ages == sorted(ages), ("unsynced frames carry a growing age", ages)

        peer.pump(3.0, ack=True)
    finally:
        kill(node)
    log.seek(0)
    output = log.read()
    seqs = [seq for seq, _, _ in peer.frames]
    distinct = sorted(set(seqs))
    assert distinct == list(range(distinct[0], distinct[-1] + 1)), ("no gaps", distinct)
    assert len(distinct) >= 8, output
    for seq, raw, msg in peer.frames:
        tag = cbor2.loads(raw)
        assert tag.tag == 17 and len(tag.value) == 4
        protected, unprotected, payload, mac = tag.value
        # the independent implementation (cbor2 6 decodes arrays as tuples, pycose wants a list)
        cose_msg = Mac0Message.from_cose_obj([protected, dict(unprotected), payload, mac], True)
        cose_msg.key = SymmetricKey(k=KEY)
        assert cose_msg.verify_tag(), seq
    # clock sync: once ACKed, records carry absolute times near now
    synced = [m for _, raw, m in peer.frames[-5:]]
    for m in synced:
        for r in m.body:
            assert abs(r.time - time.time()) < 10, (r, output)
    data = [m for _, _, m in peer.frames if m.content_type == messages.CT_SENML]
    status = [m for _, _, m in peer.frames if m.content_type == messages.CT_STATUS]
    records = [r for m in data for r in m.body]
    tc = [r for r in records if r.name == "tc"]
    assert tc and all(1390 < r.value < 1620 and r.unit == "Cel" for r in tc), tc
    assert any(r.name == "tc.cj" and abs(r.value - 30) < 0.1 for r in records)
    loop = [r for r in records if r.name == "loop"]
    assert any(r.reason == "namur-fail-low" and r.value is None for r in loop), loop
    assert any(r.value is not None and abs(r.value - 800) < 1 for r in loop), loop
    names = {r.name for m in status for r in m.body}
    assert {"uptime", "heap_free", "store_depth", "store_dropped", "reset_cause", "fw", "cfg_ver"} <= names, names


def test_store_and_forward_across_a_power_cut(image, tmp_path, peer, log):
    flash = flash_dir(image, tmp_path, peer.port)
    node = start(flash, log)
    try:
        peer.pump(1.5, ack=True)
        acked = {seq for seq, _, _ in peer.frames}
        peer.frames.clear()
        peer.pump(2.0, ack=False)  # the gateway is gone: frames pile up on flash
        kill(node)
        first_try = {seq: raw for seq, raw, _ in peer.frames}
        peer.frames.clear()
        node = start(flash, log)
        peer.pump(4.0, ack=True)
    finally:
        kill(node)
    after = [seq for seq, _, _ in peer.frames]
    assert acked and first_try
    assert not (set(after) & acked), "an ACKed frame was sent again"
    unacked = sorted(first_try)
    assert after[: len(set(after) & set(unacked))] and min(after) == unacked[0], (unacked, after[:10])
    # the stored frame is resent as it was (same seq, same payload and tag) ...
    for seq, raw, _ in peer.frames:
        if seq in first_try:
            a, b = cose.parse(raw), cose.parse(first_try[seq])
            assert a.payload == b.payload and a.tag == b.tag, seq
    # ... and the new boot numbers its frames above everything before
    new = [seq for seq in after if seq not in first_try]
    assert new and min(new) > max(max(acked), max(first_try)), (new[:5], max(first_try))
    stored = {s for s, _, _ in peer.frames}
    assert set(range(min(unacked), max(unacked) + 1)) <= stored | acked, "a stored frame was lost"


def test_unsynced_frames_from_before_a_restart_say_their_age_is_a_lower_bound(image, tmp_path, peer, log):
    flash = flash_dir(image, tmp_path, peer.port)
    node = start(flash, log)
    try:
        peer.pump(2.0, ack=False)  # no gateway yet: the clock is never set, packs use relative time
        kill(node)
        before = {seq for seq, _, _ in peer.frames}
        peer.frames.clear()
        node = start(flash, log)  # the node cannot know how long it was off
        peer.pump(4.0, ack=True)
    finally:
        kill(node)
    # the first boot numbered its frames from 0, the second from the next
    # reservation (64): the numbers tell the boots apart
    assert before and max(before) < 64
    old = [(cose.parse(raw), msg) for seq, raw, msg in peer.frames if seq < 64]
    new = [cose.parse(raw) for seq, raw, _ in peer.frames if seq >= 64]
    assert old and all(mac0.age_floor and mac0.age_ms is not None for mac0, _ in old)
    assert new and not any(mac0.age_floor for mac0 in new)
    # what a gateway makes of them: readings with a value (all good in this
    # scenario) become uncertain, with the reason; the loop's wire-break
    # faults (no value) stay bad with theirs
    readings = [r for mac0, msg in old if msg.content_type == messages.CT_SENML for r in msg.body]
    valued = [r for r in readings if r.value is not None]
    assert valued and all(r.quality == "uncertain" and r.reason == "age-lower-bound" for r in valued), valued[:3]
    assert all(r.quality == "bad" for r in readings if r.value is None)
