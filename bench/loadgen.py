"""Load generators for the end-to-end benchmark, each run in its own process.

* ``paced``: frames built before the clock starts, sent at a fixed rate; the
  send time of every frame is recorded (latency = subscriber's receipt time
  minus it).  ACKs are read and dropped.
* ``overload``: many nodes that behave like the firmware's sender (at most
  ``WINDOW`` frames in flight, a frame not ACKed within ``ACK_TIMEOUT`` s is
  sent again), offering datagrams at a fixed rate whether or not the gateway
  keeps up.  Harsher than the firmware, which backs off exponentially: here
  every unACKed frame is sent again each second.  It reports every (node, seq) the gateway ACKed: those must all
  be delivered afterwards.

Frames come from ``FrameTemplate`` (byte for byte what a simulated node
builds): frame k of a node has base time ``FIRST_SECOND + k`` seconds, so a
subscriber can tell from a message's times which frame it came from.
"""

from __future__ import annotations

import dataclasses
import os
import random
import socket
import time

import cbor2

from hil_tests.harness.nodes import FrameTemplate, SimNode
from smemet.protocol import cose

CHANNELS = ("t0", "t1", "t2", "t3")
FIRST_SECOND = 1_700_000_000
WINDOW = 8  # frames in flight per node, as the firmware's sender allows at most
ACK_TIMEOUT = 1.0  # seconds, the firmware's default ack_timeout_ms
BACKOFF_MAX = 30.0  # seconds, the firmware's default backoff_max_ms


def retransmit_after(attempts: int, rng: random.Random) -> float:
    """Seconds until a frame sent ``attempts`` times before is sent again:
    the firmware's sender (firmware/node/sender.py ``_backoff``), doubling
    from the ACK timeout up to its cap, with +-25 % jitter so that nodes
    refused together do not come back together."""
    delay = min(ACK_TIMEOUT * (1 << min(attempts, 16)), BACKOFF_MAX)
    return delay * (0.75 + 0.5 * rng.random())


def frame_index(first_time: float) -> int:
    """Which frame of its node a message whose earliest reading is at
    ``first_time`` (seconds) came from."""
    return round(first_time) - FIRST_SECOND


def _value(i: int) -> float:
    return 20.0 + (i * 7 % 50) * 0.5


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 2**20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 2**20)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def _pin(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def paced(port: int, nodes: list[str], samples: int, rate: float, seconds: float, ready, start, results,
          cpu: int | None = None) -> None:
    """Send ``rate * seconds`` frames round-robin over ``nodes`` at ``rate``
    frames/s; put (node, frame index, send time) triples on ``results``."""
    _pin(cpu)
    templates = [FrameTemplate(SimNode(name, channels=CHANNELS), samples, _value) for name in nodes]
    total = int(rate * seconds)
    frames = [templates[i % len(nodes)].frame(i // len(nodes) + 1, FIRST_SECOND + i // len(nodes))
              for i in range(total)]
    sock = _socket()
    address = ("127.0.0.1", port)
    sent_at = [0.0] * total
    ready.put(total)
    start.wait()
    began = time.monotonic()
    offset = time.time() - began  # send times on the wall clock, as mosquitto_sub stamps receipts
    blocked = 0
    sent = 0
    while sent < total:
        due = min(total, int((time.monotonic() - began) * rate) + 1)
        while sent < due:
            try:
                sock.sendto(frames[sent], address)
            except BlockingIOError:
                blocked += 1
                break
            sent_at[sent] = time.monotonic() + offset
            sent += 1
        try:
            while True:
                sock.recv(2048)
        except BlockingIOError:
            pass
        time.sleep(0.0002)
    sock.close()
    results.put({"sent": sent, "blocked": blocked,
                 "sent_at": [(nodes[i % len(nodes)], i // len(nodes), t) for i, t in enumerate(sent_at)]})


@dataclasses.dataclass(slots=True)
class _InFlight:
    frame: bytes
    due: float = 0.0  # when to send it (again), monotonic seconds
    times_sent: int = 0


@dataclasses.dataclass
class _Node:
    template: FrameTemplate
    next_seq: int = 1
    # a frame is kept until ACKed, as a node keeps it in flash
    in_flight: dict[int, _InFlight] = dataclasses.field(default_factory=dict)


def overload(port: int, nodes: list[str], samples: int, rate: float, seconds: float, ready, start, results,
             cpu: int | None = None) -> None:
    """Offer ``rate`` datagrams/s for ``seconds`` from ``nodes``, new frames
    and retransmissions as the firmware makes them; then collect late ACKs
    for a moment.  Puts counts and the ACKed (node, seq) pairs on ``results``."""
    _pin(cpu)
    state = {name.encode(): _Node(FrameTemplate(SimNode(name, channels=CHANNELS), samples, _value)) for name in nodes}
    order = list(state.values())
    names = {id(node): name for name, node in zip(nodes, order)}
    sock = _socket()
    address = ("127.0.0.1", port)
    acked: list[tuple[str, int]] = []
    counts = {"new": 0, "retransmitted": 0, "blocked": 0, "acks": 0}
    rng = random.Random(7)

    def read_acks() -> None:
        while True:
            try:
                data = sock.recv(2048)
            except BlockingIOError:
                return
            # Trust the ACK's kid and seqs (the tests verify ACK MACs);
            # verifying would take CPU the gateway needs on this machine.
            mac0 = cose.parse(data)
            body = cbor2.loads(mac0.payload)
            node = state.get(mac0.kid)
            if node is None or body.get(3, 0) != 0:
                continue
            counts["acks"] += 1
            for seq in body[1]:
                if node.in_flight.pop(seq, None) is not None:
                    acked.append((names[id(node)], seq))

    ready.put(len(nodes))
    start.wait()
    began = time.monotonic()
    sent = 0
    turn = 0
    while True:
        now = time.monotonic()
        if now - began >= seconds:
            break
        due = int((now - began) * rate) + 1
        idle = 0
        while sent < due and idle < len(order):
            node = order[turn]
            turn = (turn + 1) % len(order)
            if len(node.in_flight) < WINDOW:
                seq = node.next_seq
                node.next_seq += 1
                entry = node.in_flight[seq] = _InFlight(node.template.frame(seq, FIRST_SECOND + seq - 1))
                kind = "new"
            else:
                entry = next((e for e in node.in_flight.values() if now >= e.due), None)
                if entry is None:
                    idle += 1
                    continue
                kind = "retransmitted"
            idle = 0
            try:
                sock.sendto(entry.frame, address)
            except BlockingIOError:
                counts["blocked"] += 1
                break
            entry.due = now + retransmit_after(entry.times_sent, rng)
            entry.times_sent += 1
            counts[kind] += 1
            sent += 1
        read_acks()
        time.sleep(0.001)  # a few datagrams per wake-up: spinning would take the CPU the gateway is measured on
    quiet_until = time.monotonic() + 2.0  # ACKs of frames still being committed
    while time.monotonic() < quiet_until:
        read_acks()
        time.sleep(0.01)
    sock.close()
    counts["seconds"] = round(time.monotonic() - began, 3)
    results.put({"counts": counts, "acked": acked,
                 "unacked": sum(len(node.in_flight) for node in order)})
