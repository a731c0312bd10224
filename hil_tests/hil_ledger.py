"""The bench's record of every measurement the nodes took, and the checks
of the delivery invariants against what an integrator received.

What a node "took" (docs/hil.md): a reading is taken when the frame holding
it is committed to the node's flash store; a reading still in RAM when the
power is cut was never taken.  Every committed frame either leaves the node
through the tap (the fault proxy sees it before any fault, the serial cable
sees it on the line) or is still in the flash store; so the ledger is the
union of the frames captured at the tap and those found by scanning the
node's flash store.  It is checked for completeness against the node's own
sequence numbers: inside one boot the firmware numbers frames
consecutively from the ``next seq`` it announces on its console, so a gap
inside a boot's range would be a frame taken and lost before the tap.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

from smemet.protocol import gateway_side, messages
from smemet.protocol.errors import ProtocolError


@dataclass(frozen=True)
class Reading:
    channel: str
    value: object
    unit: str | None
    quality: str
    reason: str | None


@dataclass
class TakenFrame:
    node: str
    seq: int
    content_type: int
    readings: list[Reading]


class Ledger:
    def __init__(self, keys: dict[str, bytes]) -> None:
        self.keys = dict(keys)
        self.frames: dict[tuple[str, int], TakenFrame] = {}
        self.transmissions: Counter = Counter()  # node -> datagrams seen at the tap
        self.foreign = 0  # datagrams at the tap that are not a registered node's frame

    def _key_for(self, kid: bytes):
        return self.keys.get(kid.decode(errors="replace"))

    def capture(self, frame: bytes, *_ignored) -> None:
        """Record a node's frame (called by the tap for every transmission)."""
        try:
            msg = gateway_side.open_from_node(bytes(frame), self._key_for, time.time())
        except (ProtocolError, ValueError, IndexError, TypeError, KeyError):
            self.foreign += 1
            return
        self.transmissions[msg.node] += 1
        key = (msg.node, msg.seq)
        if key in self.frames:
            return
        readings = [Reading(r.name, r.value, r.unit, r.quality, r.reason) for r in msg.body]
        self.frames[key] = TakenFrame(msg.node, msg.seq, msg.content_type, readings)

    def capture_store(self, flash) -> int:
        """Add the frames still in a node's flash store; returns how many
        were not yet ACKed."""
        from smemet.simnode import pending_frames

        pending = pending_frames(flash)
        for stored in pending:
            self.capture(stored.frame)
        return len(pending)

    # ------------------------------------------------------------ views

    def data_frames(self, node: str | None = None) -> list[TakenFrame]:
        return sorted(
            (f for f in self.frames.values() if f.content_type == messages.CT_SENML and (node is None or f.node == node)),
            key=lambda f: (f.node, f.seq),
        )

    def measurements(self, node: str | None = None) -> int:
        return sum(len(f.readings) for f in self.data_frames(node))

    def seqs(self, node: str) -> list[int]:
        return sorted(seq for (n, seq) in self.frames if n == node)

    def check_complete(self, node: str, boots: list) -> None:
        """Within each boot of ``node`` the seqs the ledger holds must be
        consecutive from the boot's announced ``next_seq``: a gap is a frame
        the node numbered and that reached neither the tap nor the store."""
        seqs = self.seqs(node)
        starts = [b.next_seq for b in boots if b.next_seq is not None]
        assert starts, f"node {node}: no boot announced its next sequence number"
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else math.inf
            inside = [s for s in seqs if start <= s < end]
            if inside:
                expected = list(range(start, inside[-1] + 1))
                missing = sorted(set(expected) - set(inside))
                assert not missing, f"node {node}, boot {i} (from seq {start}): frames {missing[:20]} were numbered but never seen"
        stray = [s for s in seqs if s < starts[0]]
        assert not stray, f"node {node}: frames {stray[:10]} numbered below the first boot's start {starts[0]}"


# ---------------------------------------------------------------- delivery


@dataclass
class DeliveryReport:
    produced: int  # readings the nodes took (ledger)
    delivered: int  # distinct readings the subscriber got
    messages: int  # messages the subscriber got (with duplicates)
    duplicates: int  # messages removed by (node, seq, channel, time) dedup


def parse_messages(received, kind: str = "data") -> list[dict]:
    """JSON payloads of a route's measurement messages (status topics and
    other kinds left out)."""
    out = []
    for m in received:
        try:
            doc = json.loads(m.payload)
        except ValueError:
            continue
        if isinstance(doc, dict) and "seq" in doc and doc.get("kind", "data") == kind:
            doc["_topic"] = m.topic
            out.append(doc)
    return out


def _same_value(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return False
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-6)
    return a == b


def check_delivery(ledger: Ledger, docs: list[dict], nodes, selects=lambda node, channel: True) -> DeliveryReport:
    """Assert the delivery invariants for ``nodes``:

    * every reading the ledger holds (selected for this route) arrived, and
      nothing else did: after dedup by (node, seq, channel, time) the
      readings of each (node, seq, channel) equal the frame's, in order,
      with the same value, quality and reason (a good reading may arrive
      uncertain ``age-lower-bound``: the gateway doubts its time, §3.4);
    * per node and channel, first arrivals are in (seq, time) order.
    """
    nodes = set(nodes)
    first: dict[tuple, dict] = {}
    order: dict[tuple, list] = defaultdict(list)
    count = 0
    for doc in docs:
        node = doc["node"]
        if node not in nodes:
            continue
        count += 1
        key = (node, doc["seq"], doc["channel"], doc["time"])
        if key in first:
            assert first[key]["value"] == doc["value"] and first[key]["quality"] == doc["quality"], (
                f"two different messages for {key}: {first[key]} and {doc}"
            )
            continue
        first[key] = doc
        order[node, doc["channel"]].append((doc["seq"], doc["time"]))

    for (node, channel), arrivals in order.items():
        assert arrivals == sorted(arrivals), (
            f"{node}/{channel}: readings arrived out of order, first at {next(i for i in range(len(arrivals) - 1) if arrivals[i] > arrivals[i + 1])}"
        )

    got: dict[tuple, list] = defaultdict(list)
    for (node, seq, channel, t), doc in first.items():
        got[node, seq, channel].append((t, doc))
    expected: dict[tuple, list[Reading]] = defaultdict(list)
    produced = 0
    for frame in ledger.data_frames():
        if frame.node not in nodes:
            continue
        for r in frame.readings:
            if selects(frame.node, r.channel):
                expected[frame.node, frame.seq, r.channel].append(r)
                produced += 1

    missing = sorted(set(expected) - set(got))
    assert not missing, f"{len(missing)} (node, seq, channel) never arrived, e.g. {missing[:8]}"
    extra = sorted(set(got) - set(expected))
    assert not extra, f"{len(extra)} (node, seq, channel) arrived that no node took (or the route must not get), e.g. {extra[:8]}"
    for key, readings in expected.items():
        arrived = [doc for _, doc in sorted(got[key], key=lambda x: x[0])]
        assert len(arrived) == len(readings), f"{key}: took {len(readings)} readings, {len(arrived)} arrived"
        for want, doc in zip(readings, arrived):
            if (doc["quality"], doc["reason"]) == ("uncertain", "age-lower-bound") and want.quality == "good":
                doc = {**doc, "quality": "good", "reason": None}  # a doubt about its time (SPEC §3.4), not its value
            assert doc["quality"] == want.quality and doc["reason"] == want.reason, (
                f"{key}: quality {doc['quality']}/{doc['reason']} arrived for a reading taken as {want.quality}/{want.reason}"
            )
            assert _same_value(doc["value"], want.value), f"{key}: value {doc['value']} arrived for {want.value}"
    delivered = sum(len(v) for v in got.values())
    return DeliveryReport(produced, delivered, count, count - delivered)
