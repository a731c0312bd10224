"""Steady-state heap allocations on the node, measured inside MicroPython
with the collector off: per reading, per sealed frame (SenML pack, COSE_Mac0,
flash record), per transmission and per ACK.  Prints the figures (quoted in
docs/firmware.md) and fails if a step starts to allocate much more than it
does today, e.g. a buffer made per frame instead of once."""

import gc
import os

from node import fsutil
from node.clock import Clock
from node.framer import Framer
from node.sender import Sender
from node.seqno import SequenceCounter
from node.store import FrameStore
from protocol import cose, gateway_side, messages

KEY = bytes(range(32))
KID = b"furnace3-tc"


class FakeLink:
    def __init__(self):
        self.frames = []

    def send(self, frame):
        self.frames.append(len(frame))


def _fresh(path):
    if fsutil.exists(path):
        for f in os.listdir(path):
            if os.stat(path + "/" + f)[0] & 0x4000:  # a directory
                _fresh(path + "/" + f)
            else:
                os.remove(path + "/" + f)
        os.rmdir(path)
    return path


def _node():
    path = _fresh("t_alloc")
    fsutil.makedirs(path)
    store = FrameStore(path + "/store", 65536, 4096)
    seqs = SequenceCounter(path + "/seq")
    clock = Clock()
    framer = Framer(KEY, KID, seqs, store, clock, 8, 5000)
    sender = Sender(FakeLink(), store, clock, KEY, KID, 1, 1000, 30000)
    return store, seqs, clock, framer, sender


def _measure(fn):
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        fn()
        return gc.mem_alloc() - before
    finally:
        gc.enable()


def _ack(seq):
    return cose.create(KEY, KID, 0, messages.CT_ACK, gateway_side.encode_ack([seq], 1796000000000))


def _fill(framer, n):
    for i in range(n):
        framer.emit("ladle" if i % 2 else "flow", "Cel", 1500.25 + i, None)


def test_allocations_per_reading_frame_send_and_ack():
    store, seqs, clock, framer, sender = _node()
    for _ in range(3):  # warm up: the first frame reserves sequence numbers, opens files
        _fill(framer, 8)
        sender.pump()
        sender.handle(_ack(store.oldest()))
    per_reading = _measure(lambda: _fill(framer, 7)) // 7  # 7: the 8th would seal
    seal = _measure(lambda: _fill(framer, 1))  # the 8th reading seals the frame
    frame_seq = store.oldest()
    send = _measure(sender.pump)
    ack = _ack(frame_seq)
    handled = _measure(lambda: sender.handle(ack))
    assert sender.acked >= 4 and store.depth == 0, (sender.acked, store.depth)
    print("ALLOC per reading %d B, per sealed 8-record frame %d B, per transmission %d B, per ACK %d B"
          % (per_reading, seal, send, handled))
    # Budgets with headroom over today's figures (see docs/firmware.md)
    assert per_reading <= 128, per_reading  # unix port: a float reading is a 16-byte object (boards: none)
    assert seal <= 3000, seal
    assert send <= 1500, send
    assert handled <= 3500, handled
