"""A disk that is really full, failing or read-only, on real small file
systems (hil_tests/harness/disks.py; the tests run as root): the gateway
answers ACK status "full" (never silence), raises its storage alarm, logs one
line (no traceback) every 10 s however many frames arrive, loses nothing it
ACKed, and accepts again by itself when space returns."""

from __future__ import annotations

import asyncio
import io
import os
import sqlite3
import stat

import pytest

from smemet.gateway import logs
from smemet.gateway.config import load_config
from smemet.gateway.service import Gateway
from smemet.protocol import messages
from hil_tests.harness.disks import failing_ext4, small_tmpfs
from hil_tests.harness.nodes import SimNode, write_config

from .test_service import UdpClient, sample

SAMPLES = 16


@pytest.fixture
def log_lines():
    """The gateway's log lines (as journald would keep them)."""
    stream = io.StringIO()
    logs.setup("info", "logfmt", stream)
    yield lambda: stream.getvalue().splitlines()
    logs.setup("warning", "logfmt")


class Node:
    """Sends like a firmware node: one frame at a time, waits for its ACK,
    keeps what was not ACKed to send again later."""

    def __init__(self, client: UdpClient, name: str = "node-1") -> None:
        self.client = client
        self.sim = SimNode(name)
        self.acked: list[int] = []
        self.kept: dict[int, bytes] = {}  # seq -> frame, refused ("full") or unanswered
        self.answers = {"ok": 0, "full": 0, "none": 0}

    async def send(self, frame: bytes, seq: int) -> str:
        await self.client.send(frame)
        try:
            (seqs, _ms, status), _ = self.sim.open_ack(await self.client.recv(3.0))
        except TimeoutError:
            self.kept[seq] = frame
            self.answers["none"] += 1
            return "none"
        if status == messages.ACK_FULL:
            assert seqs == [], "a full ACK names no frame: nothing was stored"
            self.kept[seq] = frame
            self.answers["full"] += 1
            return "full"
        assert seqs == [seq]
        self.acked.append(seq)
        self.kept.pop(seq, None)
        self.answers["ok"] += 1
        return "ok"

    async def new_frame(self) -> str:
        frame = self.sim.data_frame(samples=SAMPLES)
        return await self.send(frame, self.sim.seq)

    async def resend_kept(self) -> None:
        for seq, frame in sorted(self.kept.items()):
            await self.send(frame, seq)


async def _until(condition, timeout: float, what: str) -> None:
    for _ in range(int(timeout / 0.1)):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _stored_seqs(outbox_path: str) -> list[int]:
    with sqlite3.connect(f"file:{outbox_path}?mode=ro", uri=True) as db:
        return [seq for (seq,) in db.execute("SELECT seq FROM frames ORDER BY id")]


def _problems(lines: list[str]) -> list[str]:
    return [line for line in lines if "level=error" in line or "level=warning" in line]


async def _start(directory, **options) -> Gateway:
    config = load_config(write_config(str(directory), ["node-1"], **options))
    gateway = Gateway(config)
    await gateway.start()
    return gateway


async def test_enospc_on_a_small_tmpfs_refuses_with_full_acks_then_recovers(tmp_path, log_lines):
    with small_tmpfs(tmp_path / "disk", "300k") as disk:
        gateway = await _start(disk.path, outbox='max_bytes = "1GB"\ncommit_max_delay = 0')
        node = Node(UdpClient(gateway.udp.address[:2]))
        try:
            for _ in range(2000):
                if await node.new_frame() == "full" and node.answers["full"] >= 20:
                    break
            assert node.answers["full"] >= 20, f"the outbox on a 300 KB disk never said full: {node.answers}"
            assert sample(gateway, "smemet_gateway_storage_full") == 1
            assert "disk full" in gateway.commit.full_reason
            for _ in range(300):  # a site's nodes keep sending while the disk stays full
                await node.new_frame()
            assert node.answers["none"] == 0, "every frame is answered, a refused one with ACK status full"
            assert sample(gateway, "smemet_gateway_frames_refused_full_total") >= 320
            lines = log_lines()
            assert not any("Traceback" in line for line in lines), "\n".join(lines)
            assert len(_problems(lines)) <= 4, "one line per spell, not one per frame:\n" + "\n".join(lines)
            assert any("outbox full: refusing frames" in line and "disk full" in line for line in lines)
            assert _stored_seqs(gateway.outbox.path) == node.acked, "everything ACKed is stored, nothing else"

            disk.grow("8m")  # the operator frees space: the gateway accepts again by itself
            await _until(lambda: sample(gateway, "smemet_gateway_storage_full") == 0, 10, "the alarm to clear")
            await node.resend_kept()
            assert node.kept == {} and await node.new_frame() == "ok"
            assert _stored_seqs(gateway.outbox.path) == sorted(node.acked)
            await _until(lambda: sample(gateway, "smemet_gateway_measurements_processed_total")
                         == SAMPLES * len(node.acked), 10, "processing to catch up")
            assert any("outbox has space again" in line for line in log_lines())
        finally:
            node.client.close()
            await gateway.stop()
        lines = log_lines()
        assert not any("Traceback" in line for line in lines), "\n".join(lines)


@pytest.mark.parametrize("cause", ["eio", "read-only"])
async def test_failing_or_read_only_disk_refuses_and_keeps_what_was_acked(tmp_path, log_lines, cause):
    with failing_ext4(tmp_path) as disk:
        gateway = await _start(disk.path, outbox='max_bytes = "1GB"\ncommit_max_delay = 0')
        outbox_path = gateway.outbox.path
        node = Node(UdpClient(gateway.udp.address[:2]))
        try:
            for _ in range(20):
                assert await node.new_frame() == "ok"
            if cause == "read-only":
                disk.break_now()
            for _ in range(6000):  # eio: until the device under the file system fails
                if await node.new_frame() == "full" and node.answers["full"] >= 10:
                    break
            assert node.answers["full"] >= 10, f"no full ACKs from a {cause} disk: {node.answers}"
            assert node.answers["none"] == 0
            assert sample(gateway, "smemet_gateway_storage_full") == 1
            reason = gateway.commit.full_reason
            # a failing device also turns ext4 read-only (errors=remount-ro): either may be seen first
            expected = ("read-only file system",) if cause == "read-only" else ("I/O error", "read-only file system")
            assert any(words in reason for words in expected), reason
            await asyncio.sleep(2.5)  # maintenance probes the disk every second: it stays full, quietly
            for _ in range(100):
                assert await node.new_frame() == "full"
            lines = log_lines()
            assert not any("Traceback" in line for line in lines), "\n".join(lines)
            assert len(_problems(lines)) <= 5, "\n".join(lines)
        finally:
            node.client.close()
            await gateway.stop()
        assert not any("Traceback" in line for line in log_lines()), "\n".join(log_lines())

        disk.repair()
        gateway = await _start(disk.path)
        try:
            assert gateway.outbox.path == outbox_path
            stored = _stored_seqs(outbox_path)
            assert set(node.acked) <= set(stored), "a frame ACKed before the disk failed was lost"
            assert sample(gateway, "smemet_gateway_storage_full") == 0
            node.client = UdpClient(gateway.udp.address[:2])
            await node.resend_kept()
            assert node.kept == {}
        finally:
            node.client.close()
            await gateway.stop()


def test_outbox_database_is_created_private(tmp_path):
    os.umask(0o022)  # a shell's usual umask: a file would be 0644

    async def start_and_stop():
        gateway = await _start(tmp_path)
        await gateway.stop()

    asyncio.run(start_and_stop())
    for name in ("outbox.sqlite", "outbox.sqlite-wal", "outbox.sqlite-shm"):
        path = tmp_path / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
