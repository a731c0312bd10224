"""FrameStore and SequenceCounter, including torn records (run in a temp
dir given by the wrapper as the cwd)."""

import os

from node.store import FrameStore
from node.seqno import SequenceCounter
from node import fsutil


def _fresh(name):
    path = "t_" + name
    if fsutil.exists(path):
        for f in os.listdir(path):
            os.remove(path + "/" + f)
        os.rmdir(path)
    return path


def test_append_ack_recover():
    path = _fresh("basic")
    s = FrameStore(path, 8192, 2048)
    for seq in range(10):
        assert s.append(seq, b"frame%d" % seq, seq + 1)
    s.ack(3)
    s.ack(0)
    s.close()
    s = FrameStore(path, 8192, 2048)
    assert s.pending() == [1, 2, 4, 5, 6, 7, 8, 9], s.pending()
    frame, built, this_boot = s.read(4)
    assert frame == b"frame4" and built == 5 and not this_boot
    assert s.highest_seq == 9


def test_segments_deleted_when_acked():
    path = _fresh("trim")
    s = FrameStore(path, 16384, 2048)
    for seq in range(100):
        s.append(seq, bytes(60), 0)
    assert len(os.listdir(path)) > 3
    for seq in range(100):
        assert s.ack(seq)
    assert s.depth == 0 and len(os.listdir(path)) <= 2, os.listdir(path)
    assert not s.ack(5)  # already gone


def test_torn_tail_is_never_returned():
    path = _fresh("torn")
    s = FrameStore(path, 8192, 4096)
    for seq in range(5):
        s.append(seq, b"x" * 40, 0)
    s.close()
    name = path + "/" + sorted(os.listdir(path))[-1]
    with open(name, "rb") as f:
        data = f.read()
    for cut in (len(data) - 1, len(data) - 30, len(data) - 64 + 10):
        with open(name, "wb") as f:
            f.write(data[:cut])
        s = FrameStore(path, 8192, 4096)
        assert s.pending() == [0, 1, 2, 3], (cut, s.pending())
        assert s.torn == 1
        s.close()
        fsutil.remove(path + "/" + sorted(os.listdir(path))[-1])  # the empty new segment
    with open(name, "wb") as f:  # a flipped bit in the middle of record 2
        bad = bytearray(data)
        bad[2 * 64 + 30] ^= 0x10
        f.write(bad)
    s = FrameStore(path, 8192, 4096)
    assert s.pending() == [0, 1], s.pending()


def test_full_drop_oldest_and_stop():
    path = _fresh("full")
    s = FrameStore(path, 4096, 1024)
    for seq in range(100):
        s.append(seq, bytes(100), 0)
    assert s.bytes <= 4096 and s.dropped > 0 and s.depth + s.dropped == 100, (s.bytes, s.dropped, s.depth)
    assert s.pending()[-1] == 99
    path = _fresh("stop")
    s = FrameStore(path, 4096, 1024, "stop")
    results = [s.append(seq, bytes(100), 0) for seq in range(100)]
    assert results.count(False) == s.dropped > 0 and s.pending()[0] == 0


def test_sequence_numbers_survive_restarts():
    path = _fresh("seq")
    fsutil.makedirs(path)
    seen = []
    for boot in range(5):
        c = SequenceCounter(path + "/seq", k=8)
        for _ in range(boot * 3 + 1):
            seen.append(c.take())
    assert seen == sorted(seen) and len(set(seen)) == len(seen), seen
    c = SequenceCounter(path + "/seq", floor=1000, k=8)
    assert c.take() == 1000


def test_slots_survive_a_torn_write():
    path = _fresh("slots")
    fsutil.makedirs(path)
    slots = fsutil.Slots(path + "/v")
    slots.write(5)
    slots.write(6)
    with open(slots.paths[slots._slot], "wb") as f:
        f.write(b"7 12")  # torn: no checksum
    assert fsutil.Slots(path + "/v").value == 5


def test_index_keeps_order_and_first_copy_after_damage():
    # Numbers only grow on a healthy node; damaged flash must still not
    # reorder frames or send one twice.
    path = _fresh("order")
    s = FrameStore(path, 16384, 2048)
    for seq in (5, 7, 6, 7, 9):
        s.append(seq, b"f%d" % seq, 0)
    assert s.pending() == [5, 6, 7, 9], s.pending()
    s.close()
    s = FrameStore(path, 16384, 2048)
    assert s.pending() == [5, 6, 7, 9] and s.depth == 4, s.pending()
    assert s.read(7)[0] == b"f7"


def test_out_of_order_acks_and_a_long_backlog():
    path = _fresh("backlog")
    s = FrameStore(path, 65536, 4096)
    for seq in range(200):
        s.append(seq, b"x" * 30, seq + 1)
    for seq in range(1, 200, 2):  # every odd frame first, as a window > 1 may
        assert s.ack(seq)
    assert s.pending(3) == [0, 2, 4] and s.depth == 100
    for seq in range(0, 150, 2):
        assert s.ack(seq)
    assert s.oldest() == 150 and s.depth == 25
    assert s.read(170) == (b"x" * 30, 171, True)
    s.close()
    s = FrameStore(path, 65536, 4096)
    assert s.pending() == list(range(150, 200, 2)), s.pending()
    assert s.read(170) == (b"x" * 30, 171, False)
