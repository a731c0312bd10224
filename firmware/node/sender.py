"""Delivery: sends stored frames oldest first, keeps at most ``window`` in
flight, retransmits on ACK timeout with exponential backoff and jitter, and
processes the gateway's MAC-verified ACKs (remove from the store, sync the
clock) and config updates.

A window of 1 keeps frames in order at the gateway; a larger window (up to 8)
raises throughput on a lossy or slow link at the cost of reordering.
"""

import random
import asyncio

from micropython import const

from protocol import cbor, messages
from protocol.errors import ProtocolError

_AGE_LABEL = b"\x3a\x00\x01\x00\x00"  # CBOR -65537, the age_ms header label
_AGE_FLOOR = b"\x3a\x00\x01\x00\x01\xf5"  # CBOR -65538: true, "that age is a lower bound"
_TICK_MS = const(20)  # how often an idle sender looks for new frames or ACKs
_SPAN = const(32)  # numbers in flight span less than this (SPEC.md §5.3)


def with_age(frame, age_ms, floor=False):
    """The stored frame (empty unprotected map) with ``age_ms`` added, and
    with ``floor`` the flag saying it is only a lower bound (SPEC §3.4); the
    MAC covers only the protected header and payload, so it stays valid."""
    head = frame[2]
    if 0x40 <= head <= 0x57:
        at = 3 + (head & 0x1F)
    elif head == 0x58:
        at = 4 + frame[3]
    else:
        raise ValueError("unexpected frame layout")
    if frame[at] != 0xA0:
        return frame
    out = bytearray(frame[:at])
    out.append(0xA2 if floor else 0xA1)
    out.extend(_AGE_LABEL)
    cbor.write_int(out, age_ms)
    if floor:
        out.extend(_AGE_FLOOR)
    out.extend(memoryview(frame)[at + 1:])
    return out


class Sender:
    def __init__(self, link, store, clock, key, kid, window=1, ack_timeout_ms=1000, backoff_max_ms=30000):
        self.link = link
        self.store = store
        self.clock = clock
        self.key = key
        self.kid = kid
        self.window = window
        self.ack_timeout_ms = ack_timeout_ms
        self.backoff_max_ms = backoff_max_ms
        self.wake = False  # set by an ACK: look at the window again now
        self._sent = {}  # seq -> [last send mono ms, attempts, deadline]
        self.on_config = None
        self.sent = 0
        self.retransmits = 0
        self.acked = 0
        self.rejected = 0  # gateway frames that failed verification
        self.full_backoffs = 0
        self.last_ack_ms = None

    def _backoff(self, attempts):
        delay = self.ack_timeout_ms << min(attempts, 16)
        if delay > self.backoff_max_ms:
            delay = self.backoff_max_ms
        return delay - delay // 4 + random.getrandbits(16) * (delay // 2) // 65536  # +-25 % jitter

    def _transmit(self, seq, now):
        frame, built, this_boot = self.store.read(seq)
        if built:
            # age since built; for a frame from an earlier boot the time since
            # this boot, flagged as a lower bound (the downtime is unknown)
            frame = with_age(frame, now - (built - 1) if this_boot else now, not this_boot)
        try:
            self.link.send(frame)
        except OSError:
            pass  # link down: the deadline below retries
        entry = self._sent.get(seq)
        self.sent += 1
        if entry:
            self.retransmits += 1
            entry[0] = now
            entry[1] += 1
            entry[2] = now + self._backoff(entry[1])
        else:
            self._sent[seq] = [now, 0, now + self._backoff(0)]

    def pump(self):
        """Send what is due; ms until the next deadline (None: nothing out)."""
        now = self.clock.mono_ms()
        window = self.store.pending(self.window)
        if window and window[-1] - window[0] >= _SPAN:
            # SPEC §5.3: numbers in flight span less than 32, or a reboot's
            # jump could push a frame still in flight below the gateway's window.
            window = [seq for seq in window if seq - window[0] < _SPAN]
        for seq in list(self._sent):
            if seq not in window:
                del self._sent[seq]
        nearest = None
        for seq in window:
            entry = self._sent.get(seq)
            if entry is None or now >= entry[2]:
                self._transmit(seq, now)
                entry = self._sent[seq]
            wait = entry[2] - now
            if nearest is None or wait < nearest:
                nearest = wait
        return nearest

    async def run(self):
        while True:
            wait = self.pump()
            self.wake = False
            depth = self.store.depth
            # until the next deadline, a new frame or an ACK (no Event: a tick)
            while not self.wake and self.store.depth <= depth and (wait is None or wait > 0):
                await asyncio.sleep_ms(_TICK_MS)
                if wait is not None:
                    wait -= _TICK_MS
                if self.store.depth < depth:
                    depth = self.store.depth

    async def receive(self):
        while True:
            frame = await self.link.recv()
            if frame:
                self.handle(frame)

    def handle(self, frame):
        try:
            msg = messages.open_from_gateway(frame, self.kid, self.key)
        except (ProtocolError, ValueError, IndexError, TypeError) as exc:
            self.rejected += 1
            print("link: ignored a gateway frame:", exc)
            return
        if msg.content_type == messages.CT_ACK:
            seqs, time_ms, status = msg.body
            if status == messages.ACK_FULL:
                # nothing was stored: back off every frame in flight
                self.full_backoffs += 1
                now = self.clock.mono_ms()
                for entry in self._sent.values():
                    entry[1] += 1
                    entry[2] = now + self._backoff(entry[1])
                return
            sent_at = None
            for seq in seqs:
                entry = self._sent.pop(seq, None)
                if entry and entry[1] == 0:
                    sent_at = entry[0]  # only an unretried send gives a fair round trip
                if self.store.ack(seq):
                    self.acked += 1
            self.clock.sync(time_ms, sent_at)
            self.last_ack_ms = self.clock.mono_ms()
            self.wake = True
        elif msg.content_type == messages.CT_CONFIG and self.on_config:
            self.on_config(msg.body[0], msg.body[1])
