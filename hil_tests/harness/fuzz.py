"""Fuzzing the ingest path: mutated and random frames sent over real UDP to
a real gateway (in this process, so its counters can be read), paced so the
kernel drops none.  Every frame must come out counted: accepted, duplicate,
refused (outbox full) or rejected by a reason; a frame whose handling raised
is a crash (the UDP link logs it: "frame handling failed").

Mutations (``KINDS``), from a seeded ``random.Random``:

* ``valid`` a node's next frame; ``replay`` an earlier one sent again;
* ``bitflip`` 1-8 bits of a valid frame flipped; ``truncate`` cut short;
  ``extend`` random bytes appended; ``random`` random bytes, 0-1,500;
* ``resigned`` the payload mutated (bit flips, cuts, inserted or replaced
  bytes, a spliced piece of another payload), the header's content type or
  sequence number sometimes too (a jump, a number already used, one below
  the window; the last node jumps to the top of the range and sends the
  number it skipped right after), then MAC'd again with the node's key: these
  reach the CBOR/SenML decoder and, when they decode, the commit;
* ``stranger`` a well-formed frame of a node without a key.

Used by gateway/tests/test_fuzz_ingest.py (a seeded 20,000-frame slice) and
bench/fuzz_ingest.py (the documented run of a million or more).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from smemet.protocol import cose, messages

from .nodes import FrameTemplate, SimNode, write_config

KINDS = ("valid", "replay", "bitflip", "truncate", "extend", "random", "resigned", "stranger")
_WEIGHTS = (8, 4, 20, 12, 8, 12, 32, 4)
NODES = tuple(f"fz-{i}" for i in range(8))
BATCH = 64  # frames in flight at once: far below the receive buffer, so the kernel drops none


@dataclass(frozen=True)
class FuzzReport:
    sent: int
    received: int
    by_kind: dict[str, int]
    outcomes: dict[str, int]  # accepted, duplicate, refused-full, rejected:<reason>
    crashes: int
    rss_kib: tuple[int, ...]  # the gateway process's resident memory at each tenth of the run
    seconds: float
    kernel_drops: int | None = None
    errors: tuple[str, ...] = field(default=())

    @property
    def counted(self) -> int:
        return sum(self.outcomes.values())


class _Crashes(logging.Handler):
    """Log records of frames whose handling raised, and any other error."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.getMessage()}")


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


class Mutator:
    """Frames of ``KINDS`` for the nodes in NODES (keys from harness.nodes)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.sims = [SimNode(node, channels=("t", "p", "flow")) for node in NODES]
        self.templates = [FrameTemplate(sim, samples=1 + i * 3) for i, sim in enumerate(self.sims)]
        self.seq = [0] * len(self.sims)
        self.sent_valid: list[bytes] = []
        self.second = 1_700_000_000
        self._after_jump: tuple[int, int] | None = None  # (node, the number a jump skipped)
        self.payloads = [cose.parse(t.frame(1, self.second)).payload for t in self.templates]  # pieces to splice

    def _next_valid(self) -> bytes:
        i = self.rng.randrange(len(self.sims))
        self.seq[i] += 1
        self.second += 1
        frame = self.templates[i].frame(self.seq[i], self.second)
        if len(self.sent_valid) < 4096:
            self.sent_valid.append(frame)
        else:
            self.sent_valid[self.rng.randrange(4096)] = frame
        return frame

    def _payload_of(self, frame: bytes) -> bytes:
        return cose.parse(frame).payload

    def frame(self) -> tuple[str, bytes]:
        rng = self.rng
        if self._after_jump is not None:
            i, seq = self._after_jump
            self._after_jump = None
            self.second += 1
            payload = cose.parse(self.templates[i].frame(seq, self.second)).payload
            return "resigned", cose.create(self.sims[i].key, self.sims[i].kid, seq, messages.CT_SENML, payload)
        kind = rng.choices(KINDS, _WEIGHTS)[0]
        if kind == "valid" or (kind == "replay" and not self.sent_valid):
            return "valid", self._next_valid()
        if kind == "replay":
            return kind, rng.choice(self.sent_valid)
        if kind == "random":
            return kind, rng.randbytes(rng.randrange(1501))
        base = bytearray(self._next_valid())
        if kind == "bitflip":
            for _ in range(rng.randint(1, 8)):
                base[rng.randrange(len(base))] ^= 1 << rng.randrange(8)
            return kind, bytes(base)
        if kind == "truncate":
            return kind, bytes(base[: rng.randrange(len(base))])
        if kind == "extend":
            return kind, bytes(base) + rng.randbytes(rng.randint(1, 64))
        i = rng.randrange(len(self.sims))
        sim = self.sims[i]
        payload = bytearray(self._payload_of(bytes(base)))
        if kind == "stranger":
            stranger = f"nokey-{rng.randrange(1000)}".encode()
            return kind, cose.create(os.urandom(32), stranger, rng.randrange(1, 2**31), messages.CT_SENML, bytes(payload))
        seq = self._mutated_seq(i)
        if self._after_jump is not None:  # the jump itself: a frame that decodes, so it is committed
            return kind, cose.create(sim.key, sim.kid, seq, messages.CT_SENML, bytes(payload))
        self._mutate(payload)
        content_type = messages.CT_SENML if rng.random() < 0.8 else rng.choice((messages.CT_STATUS, rng.randrange(65536)))
        return kind, cose.create(sim.key, sim.kid, seq, content_type, bytes(payload))

    def _mutated_seq(self, i: int) -> int:
        """Mostly the node's next number; sometimes a jump ahead (the node
        goes on from there), one back or below the window; the last node
        alone also jumps to the top of the range, after which its frames are
        all replays (the others keep reaching the decoder and the commit)."""
        rng = self.rng
        draw = rng.random()
        if draw < 0.85:
            self.seq[i] += 1
        elif draw < 0.92:
            self.seq[i] += rng.randrange(2, 10_000)
        elif draw < 0.99:
            return rng.randrange(1, self.seq[i] + 1)
        elif i == len(self.sims) - 1:
            # and at once the number it skipped: both new, in one commit, the higher first
            self._after_jump = (i, self.seq[i] + 1)
            self.seq[i] = rng.randrange(2**31, 2**32 - 2**20)
        else:
            self.seq[i] += 1
        return self.seq[i]

    def _mutate(self, payload: bytearray) -> None:
        rng = self.rng
        for _ in range(rng.randint(1, 4)):
            if not payload:
                payload.extend(rng.randbytes(rng.randint(1, 8)))
            what = rng.randrange(5)
            at = rng.randrange(len(payload))
            if what == 0:
                payload[at] ^= 1 << rng.randrange(8)
            elif what == 1:
                del payload[at:at + rng.randint(1, 16)]
            elif what == 2:
                payload[at:at] = rng.randbytes(rng.randint(1, 16))
            elif what == 3:  # a CBOR initial byte: another major type or length
                payload[at] = rng.choice((0x18, 0x19, 0x1A, 0x1B, 0x5F, 0x7F, 0x9F, 0xBF, 0xF9, 0xFA, 0xFB, 0xFF,
                                          0xC1, 0xD8, 0x40, 0x60, 0x80, 0xA0, 0xF4, 0xF6, 0xF7))
            else:  # splice a piece of another node's payload
                other = rng.choice(self.payloads) or b"\xa0"
                start = rng.randrange(len(other))
                payload[at:at] = other[start:start + rng.randint(1, 24)]


async def run(directory: Path, frames: int, seed: int, progress=None) -> FuzzReport:
    """Send ``frames`` mutated frames to a gateway in ``directory``."""
    from smemet.gateway.config import load_config
    from smemet.gateway.service import Gateway

    directory.mkdir(parents=True, exist_ok=True)
    config = load_config(write_config(str(directory), NODES, udp_extra='receive_buffer = "4MiB"\n',
                                      outbox='max_bytes = "64MiB"\n'))
    crashes = _Crashes()
    logging.getLogger().addHandler(crashes)
    gateway = Gateway(config)
    await gateway.start()
    mutator = Mutator(seed)
    by_kind = dict.fromkeys(KINDS, 0)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setblocking(False)
    address = gateway.udp.address[:2]
    admission = gateway.admission
    rss: list[int] = []
    started = time.monotonic()
    sent = 0
    try:
        while sent < frames:
            for _ in range(min(BATCH, frames - sent)):
                kind, frame = mutator.frame()
                by_kind[kind] += 1
                while True:
                    try:
                        sender.sendto(frame, address)
                        break
                    except BlockingIOError:
                        await asyncio.sleep(0)
                    except OSError:  # EMSGSIZE cannot happen below 1,500 bytes; anything else: count it lost
                        break
                sent += 1
            while admission._received.get("udp", 0) < sent:  # paced: the gateway read every one
                await asyncio.sleep(0)
                if gateway.udp.kernel_drops():
                    break
            while sender_has_ack(sender):
                pass
            if sent % max(1, frames // 10) < BATCH:
                rss.append(_rss_kib())
                if progress:
                    progress(sent, frames)
        deadline = time.monotonic() + 30
        while gateway.backlog.frames and time.monotonic() < deadline:  # the last commit
            await asyncio.sleep(0.05)
        received = admission._received.get("udp", 0)
        drops = gateway.udp.kernel_drops()
        sample = gateway.metrics.registry.get_sample_value
        outcomes = {"accepted": int(sample("smemet_gateway_frames_accepted_total") or 0),
                    "duplicate": int(sample("smemet_gateway_frames_duplicate_total") or 0),
                    "refused-full": int(sample("smemet_gateway_frames_refused_full_total") or 0)}
        for reason, count in admission.rejects_total.items():
            outcomes[f"rejected:{reason}"] = count
    finally:
        sender.close()
        await gateway.stop()
        logging.getLogger().removeHandler(crashes)
    rss.append(_rss_kib())
    failed = [r for r in crashes.records if "frame handling failed" in r]
    return FuzzReport(sent, received, by_kind, outcomes, len(failed), tuple(rss), time.monotonic() - started, drops,
                      tuple(crashes.records[:20]))


def sender_has_ack(sender: socket.socket) -> bool:
    """Drain one ACK the gateway sent back (so the sender's buffer never fills)."""
    try:
        sender.recv(4096)
        return True
    except BlockingIOError:
        return False
