"""Serial ingest on a real pseudo-terminal: COBS frames in, COBS ACKs back on
the same port, resynchronisation after noise, a vanished port retried while
the gateway keeps running, a missing port refused at start."""

import asyncio
import os

import pytest

from smemet.gateway.config import load_config
from smemet.gateway.errors import IngestError
from smemet.gateway.service import Gateway
from hil_tests.harness.nodes import SimNode, write_config
from smemet.protocol import cobs, gateway_side

from .test_service import UdpClient, sample  # noqa: F401 - shared helpers


class PtyPort:
    """The node's end of a pseudo-terminal whose other end the gateway opens."""

    def __init__(self):
        self.master, slave = os.openpty()
        self.device = os.ttyname(slave)
        os.close(slave)
        os.set_blocking(self.master, False)
        self.deframer = cobs.Deframer()
        self.packets = []

    def write(self, data):
        os.write(self.master, data)

    async def read_packet(self, timeout=3.0):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.packets:
                return self.packets.pop(0)
            try:
                chunk = os.read(self.master, 4096)
            except BlockingIOError:
                await asyncio.sleep(0.01)
                continue
            self.packets.extend(self.deframer.feed(chunk))
        raise TimeoutError("no packet from the gateway")

    def close(self):
        if self.master is not None:
            os.close(self.master)
            self.master = None


@pytest.fixture
async def serial_gateway(tmp_path):
    port = PtyPort()
    extra = f'[[ingest.serial]]\ndevice = "{port.device}"\nbaud = 115200\nretry = "100ms"\n'
    gateway = Gateway(load_config(write_config(str(tmp_path), ["rs485-1", "rs485-2"], extra=extra)))
    await gateway.start()
    yield gateway, port
    await gateway.stop()
    port.close()


async def test_serial_frames_are_acked_on_the_same_port(serial_gateway):
    gateway, port = serial_gateway
    node = SimNode("rs485-1")
    port.write(cobs.frame(node.data_frame(samples=8)))
    (seqs, _ms, status), _ = node.open_ack(await port.read_packet())
    assert (seqs, status) == ([1], gateway_side.ACK_OK)
    assert sample(gateway, "smemet_gateway_frames_received_total", {"link": "serial"}) == 1
    assert sample(gateway, "smemet_gateway_serial_port_up", {"device": port.device}) == 1


async def test_serial_resynchronises_after_noise(serial_gateway):
    gateway, port = serial_gateway
    node = SimNode("rs485-2")
    first, second = node.data_frame(), node.data_frame()
    # noise runs into the first frame (lost: malformed), the delimiter resynchronises
    port.write(b"\x13\x37noise\xff\xfe" + cobs.frame(first) + b"\x05\x00" + cobs.frame(second))
    assert node.open_ack(await port.read_packet())[0][0] == [2]
    port.write(cobs.frame(first))  # the node retransmits what was not ACKed
    assert node.open_ack(await port.read_packet())[0][0] == [1]
    assert sample(gateway, "smemet_gateway_frames_rejected_total", {"reason": "malformed"}) == 2
    assert gateway.outbox._reader.execute("SELECT count(*) FROM frames").fetchone()[0] == 2


async def test_vanished_port_is_retried_and_the_gateway_keeps_running(serial_gateway):
    gateway, port = serial_gateway
    port.close()  # the adapter is unplugged: reads fail with EIO
    for _ in range(100):
        if sample(gateway, "smemet_gateway_serial_port_up", {"device": port.device}) == 0:
            break
        await asyncio.sleep(0.02)
    assert sample(gateway, "smemet_gateway_serial_port_up", {"device": port.device}) == 0
    await asyncio.sleep(0.3)  # several reopen attempts fail quietly
    client = UdpClient(gateway.udp.address[:2])
    try:
        node = SimNode("rs485-1")
        await client.send(node.data_frame())
        assert node.open_ack(await client.recv())[0][0] == [1]
    finally:
        client.close()


async def test_reopened_port_carries_frames_again(tmp_path):
    """A port that comes back (same device path) is used again."""
    link_path = tmp_path / "ttyNODE"
    first = PtyPort()
    os.symlink(first.device, link_path)
    extra = f'[[ingest.serial]]\ndevice = "{link_path}"\nretry = "50ms"\n'
    gateway = Gateway(load_config(write_config(str(tmp_path), ["rs485-1"], extra=extra)))
    await gateway.start()
    second = PtyPort()
    try:
        first.close()
        os.unlink(link_path)
        os.symlink(second.device, link_path)  # the adapter re-enumerates
        node = SimNode("rs485-1")
        for _ in range(100):
            if sample(gateway, "smemet_gateway_serial_port_up", {"device": str(link_path)}) == 1 and gateway.serial[0]._fd:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)
        second.write(cobs.frame(node.data_frame()))
        assert node.open_ack(await second.read_packet())[0][0] == [1]
    finally:
        await gateway.stop()
        second.close()


async def test_missing_port_is_a_start_error(tmp_path):
    extra = '[[ingest.serial]]\ndevice = "/dev/ttyUSB-not-here"\n'
    gateway = Gateway(load_config(write_config(str(tmp_path), ["n1"], extra=extra)))
    with pytest.raises(IngestError, match="/dev/ttyUSB-not-here does not exist"):
        await gateway.start()
    await gateway.stop()


async def test_udp_port_in_use_is_a_start_error(tmp_path):
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        gateway = Gateway(load_config(write_config(str(tmp_path), ["n1"], udp_port=port)))
        with pytest.raises(IngestError, match=f"cannot listen for UDP on \\[127.0.0.1\\]:{port}"):
            await gateway.start()
        await gateway.stop()
