"""SIGHUP re-reads the key file: a node commissioned while the gateway runs
is accepted without a restart, and a broken key file keeps the old keys."""

import signal
import socket
import subprocess
import sys
import time

from smemet.gateway.keys import add_key
from hil_tests.harness.nodes import SimNode, free_udp_port, node_key, write_config


def wait_for_log(path, text, start=0, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path, "rb") as f:
            f.seek(start)
            if text.encode() in f.read():
                return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in the gateway log:\n{open(path).read()}")


def ack_for(sock, frame, address, timeout=1.0):
    sock.settimeout(timeout)
    sock.sendto(frame, address)
    try:
        return sock.recv(2048)
    except TimeoutError:
        return None


def test_sighup_loads_new_keys_and_survives_a_broken_file(tmp_path):
    port = free_udp_port()
    config = write_config(str(tmp_path), ["old-node"], udp_port=port)
    log_path = tmp_path / "gateway.log"
    with open(log_path, "wb") as log:
        gateway = subprocess.Popen([sys.executable, "-m", "smemet.gateway", "run", "--config", config],
                                   stdout=log, stderr=log)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    address = ("127.0.0.1", port)
    try:
        wait_for_log(log_path, "gateway started")
        newcomer = SimNode("new-node")
        assert ack_for(sock, newcomer.data_frame(samples=2, seq=1), address) is None  # unknown node
        add_key(str(tmp_path / "keys.toml"), "new-node", node_key("new-node"))
        size = log_path.stat().st_size
        gateway.send_signal(signal.SIGHUP)
        wait_for_log(log_path, "keys reloaded", start=size)
        ack = ack_for(sock, newcomer.data_frame(samples=2, seq=1), address)
        assert ack is not None and newcomer.open_ack(ack)[0][0] == [1]
        # a key file broken by hand: the gateway keeps running with the keys it has
        (tmp_path / "keys.toml").write_text("this is not toml = [")
        size = log_path.stat().st_size
        gateway.send_signal(signal.SIGHUP)
        wait_for_log(log_path, "key file not reloaded", start=size)
        ack = ack_for(sock, newcomer.data_frame(samples=2, seq=2), address)
        assert ack is not None and newcomer.open_ack(ack)[0][0] == [2]
    finally:
        sock.close()
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(30) == 0
