"""Framer: a seal that fails half way (no heap, a flash error) loses no
reading and maps no time twice; the next seal stores the pack."""

from node.clock import Clock
from node.framer import Framer
from protocol import cbor, cose

KEY = bytes(range(32))


class FlakyStore:
    """Fails the first ``failures`` appends, as a full heap or flash would."""

    def __init__(self, failures):
        self.failures = failures
        self.frames = []

    def append(self, seq, frame, built):
        if self.failures:
            self.failures -= 1
            raise OSError(28)  # ENOSPC
        self.frames.append((seq, bytes(frame), built))
        return True


class Seqs:
    def __init__(self):
        self.n = 0

    def take(self):
        self.n += 1
        return self.n - 1


def _records(frame):
    return cbor.decode(cose.parse(frame).payload)


def test_failed_seal_keeps_the_readings_for_the_next_one():
    store = FlakyStore(1)
    framer = Framer(KEY, b"n1", Seqs(), store, Clock(), 4, 5000)
    for i in range(3):
        framer.emit("t", "Cel", 20.0 + i)
    try:
        framer.emit("t", "Cel", 23.0)  # the 4th fills the pack: its seal fails
        assert False, "the store's error reaches the caller (the sampler counts it)"
    except OSError:
        pass
    assert not store.frames and len(framer.builder) == 4
    framer.emit("t", "Cel", 24.0)  # seals the kept pack first, then starts a new one
    assert len(store.frames) == 1 and len(_records(store.frames[0][1])) == 4, store.frames
    framer.seal()
    assert len(store.frames) == 2 and len(_records(store.frames[1][1])) == 1


def test_failed_seal_after_sync_does_not_shift_times_twice():
    store = FlakyStore(1)
    clock = Clock()
    clock.sync(1796000000000)
    framer = Framer(KEY, b"n1", Seqs(), store, clock, 8, 5000)
    framer.emit("t", "Cel", 20.0)
    try:
        framer.seal()
        assert False
    except OSError:
        pass
    framer.seal()
    bt = _records(store.frames[0][1])[0][-3]  # base time, Unix seconds
    assert abs(bt - 1796000000) <= 2, bt
