"""Back-pressure, on a real gateway with real UDP: while the commit stage is
stuck, the backlog stays at its bound, the socket is no longer read, the
kernel's drops are counted, and no frame is ACKed that was not stored."""

from __future__ import annotations

import asyncio
import socket
import threading

from smemet.gateway.backpressure import Backlog
from smemet.protocol import cose
from smemet.gateway.config import load_config
from smemet.gateway.service import Gateway
from hil_tests.harness.nodes import SimNode, write_config


class Link:
    def __init__(self):
        self.paused = 0
        self.resumed = 0

    def pause(self):
        self.paused += 1

    def resume(self):
        self.resumed += 1


def test_backlog_pauses_at_its_bound_and_resumes_at_half():
    changes = []
    backlog = Backlog(high=10, on_change=changes.append)
    link = Link()
    backlog.register(link)
    backlog.add(9)
    assert not backlog.paused and link.paused == 0
    backlog.add(1)
    assert backlog.paused and link.paused == 1 and changes == [True]
    backlog.add(5)  # frames already read still come in; no second pause
    backlog.done(9)
    assert backlog.paused and link.resumed == 0  # 6 > 5
    backlog.done(1)
    assert not backlog.paused and link.resumed == 1 and changes == [True, False]
    late = Link()
    backlog.add(10)
    backlog.register(late)  # a link registered while paused starts paused
    assert late.paused == 1


async def test_a_stuck_commit_pauses_ingest_and_no_frame_is_acked_unstored(tmp_path):
    nodes = [f"bp-{i}" for i in range(4)]
    config = load_config(write_config(str(tmp_path), nodes, extra="[gateway]\nbacklog_frames = 64\n", udp_extra='receive_buffer = "256KiB"\n'))
    gateway = Gateway(config)
    await gateway.start()
    release = threading.Event()
    commit = gateway.outbox.commit_frames

    def stuck_commit(frames):
        release.wait(30)
        return commit(frames)

    gateway.outbox.commit_frames = stuck_commit
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sender.setblocking(False)
    sims = [SimNode(node) for node in nodes]
    by_kid = {sim.kid: sim for sim in sims}
    address = gateway.udp.address[:2]
    sent = {}
    try:
        for round_ in range(1500):  # 6,000 frames: far more than the bound, and than the kernel buffer holds
            for sim in sims:
                frame = sim.data_frame(samples=16)
                sent[(sim.node, sim.seq)] = frame
                try:
                    sender.sendto(frame, address)
                except BlockingIOError:
                    await asyncio.sleep(0.001)
            if round_ % 50 == 0:
                await asyncio.sleep(0)  # let the gateway read what it will
        await asyncio.sleep(0.5)
        assert gateway.backlog.paused, "ingest must pause while the commit is stuck"
        assert gateway.backlog.frames <= 64 + 32  # the bound, plus at most one read batch in flight
        assert gateway.metrics.registry.get_sample_value("smemet_gateway_ingest_paused") == 1
        drops = gateway.udp.kernel_drops()
        assert drops is not None and drops > 0, "the kernel must have dropped what it could not buffer"
        release.set()
        acked = set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while loop.time() < deadline:
            try:
                while True:
                    data = sender.recv(4096)
                    sim = by_kid[cose.parse(data).kid]
                    (seqs, _time_ms, status), _ack_seq = sim.open_ack(data)  # verifies the ACK's MAC
                    if status == 0:
                        acked.update((sim.node, seq) for seq in seqs)
            except BlockingIOError:
                pass
            if not gateway.backlog.paused and gateway.backlog.frames == 0 and len(acked) >= 64:
                break
            await asyncio.sleep(0.05)
        for _ in range(30):  # the maintenance loop refreshes the gauges once a second
            if (gateway.metrics.registry.get_sample_value("smemet_gateway_udp_receive_drops") or 0) >= drops:
                break
            await asyncio.sleep(0.1)
        assert gateway.metrics.registry.get_sample_value("smemet_gateway_udp_receive_drops") >= drops
    finally:
        release.set()
        sender.close()
        await gateway.stop()
    stored = {(f.node, f.seq) for f in _outbox_frames(tmp_path)}
    assert acked, "frames were ACKed once the commit went on"
    assert acked <= stored, "an ACK for a frame that was not stored would make a node delete it"
    assert len(stored) < len(sent), "the kernel dropped some; the nodes keep and retransmit those"


def _outbox_frames(tmp_path):
    from smemet.gateway.outbox import Outbox

    outbox = Outbox(str(tmp_path / "outbox.sqlite"), 1 << 30)
    try:
        return outbox.frames_after(0, 10**9)
    finally:
        outbox.close()
