"""Stand-ins for sensor nodes and a gateway set-up on disk, for tests and
benchmarks: frames built exactly as a node builds them (``PackBuilder`` +
``cose.create``), ACKs checked exactly as a node checks them
(``messages.open_from_gateway``)."""

from __future__ import annotations

import os
import socket
import time

from smemet.protocol import cose, messages, senml


def node_key(node: str) -> bytes:
    """A deterministic 32-byte test key per node id."""
    import hashlib

    return hashlib.sha256(b"smemet-test-key:" + node.encode()).digest()


def write_keys(path: str, nodes, mode: int = 0o600) -> dict[str, bytes]:
    keys = {node: node_key(node) for node in nodes}
    with open(path, "w") as f:
        for node, key in keys.items():
            f.write(f'"{node}" = "{key.hex()}"\n')
    os.chmod(path, mode)
    return keys


def write_config(directory: str, nodes, *, udp_port: int = 0, bind: str = "127.0.0.1", extra: str = "",
                 outbox: str = "", metrics_port: int = 0, udp_extra: str = "") -> str:
    """keys.toml + gateway.toml in ``directory``; returns the config path."""
    write_keys(os.path.join(directory, "keys.toml"), nodes)
    path = os.path.join(directory, "gateway.toml")
    with open(path, "w") as f:
        f.write(
            f'[keys]\nfile = "keys.toml"\n\n[ingest.udp]\nbind = "{bind}"\nport = {udp_port}\n{udp_extra}\n'
            f'[outbox]\npath = "outbox.sqlite"\n{outbox}\n\n[metrics]\nport = {metrics_port}\n\n{extra}\n'
        )
    return path


def free_udp_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class FrameTemplate:
    """Data frames for load generators, made cheaply: one SenML pack built by
    SimNode's own builder, then per frame only the base time (whole seconds)
    and the sequence number change and the MAC is computed again.  Frame
    (seq, second) is byte for byte what ``SimNode.data_frame`` gives for
    ``samples`` readings 10 ms apart starting at ``second`` (the harness
    tests check it), so a generator can make thousands a second."""

    def __init__(self, sim: "SimNode", samples: int, value=lambda i: 20.0 + i * 0.25, second: int = 1_700_000_000):
        if not 2**16 <= second < 2**32:
            raise ValueError("second must be a 4-byte CBOR integer")
        self.key, self.kid, self.samples = sim.key, sim.kid, samples
        for i in range(samples):
            sim.builder.add(sim.channels[i % len(sim.channels)], sim.unit, value(i), second * 1000 + i * 10)
        payload = sim.builder.encode(second * 1000 + samples * 10, True)
        marker = b"\x22\x1a" + second.to_bytes(4, "big")  # BT (-3) as a 4-byte unsigned integer
        if payload.count(marker) != 1:
            raise ValueError("the base time is not where a template can change it")
        at = payload.index(marker) + 2
        self._head, self._tail = payload[:at], payload[at + 4:]

    def frame(self, seq: int, second: int) -> bytes:
        payload = self._head + second.to_bytes(4, "big") + self._tail
        return cose.create(self.key, self.kid, seq, messages.CT_SENML, payload)


class SimNode:
    """Builds a node's data frames with increasing sequence numbers."""

    def __init__(self, node: str, key: bytes | None = None, channels=("t",), unit: str = "Cel") -> None:
        self.node = node
        self.kid = node.encode()
        self.key = key if key is not None else node_key(node)
        self.channels = channels
        self.unit = unit
        self.seq = 0
        self.builder = senml.PackBuilder(64)

    def data_frame(self, samples: int = 16, seq: int | None = None, now_ms: int | None = None,
                   value=lambda i: 20.0 + i * 0.25, content_type: int = messages.CT_SENML) -> bytes:
        if seq is None:
            self.seq += 1
            seq = self.seq
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        for i in range(samples):
            self.builder.add(self.channels[i % len(self.channels)], self.unit, value(i), now_ms - (samples - i) * 10)
        payload = self.builder.encode(now_ms, True)
        return cose.create(self.key, self.kid, seq, content_type, payload)

    def status_frame(self, store_depth: int, seq: int | None = None) -> bytes:
        if seq is None:
            self.seq += 1
            seq = self.seq
        now_ms = int(time.time() * 1000)
        builder = senml.PackBuilder(8)
        builder.add("store_depth", None, float(store_depth), now_ms)
        builder.add_text("fw", "0.1.0", now_ms)
        return cose.create(self.key, self.kid, seq, messages.CT_STATUS, builder.encode(now_ms, True))

    def open_ack(self, frame: bytes):
        """(seqs, gateway time ms, status) of an ACK; raises unless it
        verifies with this node's key and is addressed to it."""
        message = messages.open_from_gateway(frame, self.kid, self.key)
        assert message.content_type == messages.CT_ACK
        return message.body, message.seq
