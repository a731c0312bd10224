"""The outbox on real SQLite: durable settings, ids, windows, dedup, atomic
processing, cursors, pruning, size limit, MeasurementSource behaviour."""

import asyncio
import sqlite3

import pytest

from smemet.gateway.errors import OutboxFull
from smemet.gateway.model import Measurement
from smemet.gateway.windows import TaggedWindow
from smemet.gateway.outbox import ID_SPACE, FrameRow, Outbox
from smemet.protocol.window import SEEN, TOO_OLD


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(str(tmp_path / "outbox.sqlite"), 1 << 30)
    yield box
    box.close()


def frames(node, seqs, received=1000.0):
    return [FrameRow(node, seq, 112, received, bytes([seq % 256]) * 40) for seq in seqs]


def window(*seqs):
    w = TaggedWindow()
    for seq in seqs:
        w.accept(seq)
    return w


def processed(frame_id, node, seq, rows, kind=0, received=1000.0):
    return (frame_id, node, seq, kind, received, rows)


def row(channel="t", value=1.5, quality=0, reason=None, time=1000.0):
    return (channel, time, value, "Cel", quality, reason)


def ids(measurements):
    return [m.id for m in measurements]


F = ID_SPACE


def test_wal_and_full_sync(outbox):
    db = outbox._writer
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_commit_returns_consecutive_ids_and_persists_windows(tmp_path, outbox):
    assert outbox.commit_frames(frames("a", [1, 2, 3]), [("a", window(1, 2, 3))]) == 3
    assert outbox.commit_frames(frames("b", [7]), [("b", window(7))]) == 4
    reopened = Outbox(outbox.path, outbox.max_bytes)
    try:
        windows = reopened.load_windows()
        assert windows["a"].check(2) == SEEN and windows["a"].highest == 3
        assert windows["b"].check(7) == SEEN
        assert reopened.has_frame("a", 3) and not reopened.has_frame("a", 4)
    finally:
        reopened.close()


def test_window_bitmap_of_64_bits_round_trips(outbox):
    w = window(*range(1, 100))
    outbox.commit_frames(frames("a", [99]), [("a", w)])
    loaded = outbox.load_windows()["a"]
    assert (loaded.highest, loaded.bitmap) == (w.highest, w.bitmap) == (99, (1 << 64) - 1)
    assert loaded.check(35) == TOO_OLD


def test_node_seq_is_unique_and_a_failed_group_stores_nothing(outbox):
    outbox.commit_frames(frames("a", [1]), [])
    with pytest.raises(sqlite3.IntegrityError):
        outbox.commit_frames(frames("a", [2, 1]), [("a", window(1, 2))])
    assert outbox._reader.execute("SELECT seq FROM frames").fetchall() == [(1,)]
    assert outbox.load_windows() == {}
    assert outbox.commit_frames(frames("a", [2]), []) == 2  # the rolled-back ids were never visible
    assert outbox._reader.execute("SELECT id, seq FROM frames").fetchall() == [(1, 1), (2, 2)]


def test_processing_is_atomic_with_its_cursor(outbox):
    outbox.commit_frames(frames("a", [1, 2]), [])
    assert outbox.processing_cursor() == 0
    assert [r[0] for r in outbox.unprocessed_frames(0, 10)] == [1, 2]
    last = outbox.write_processed([processed(1, "a", 1, [row()]), processed(2, "a", 2, [row(), row("u")])], last_frame_id=2)
    assert last == 2 * F + 1 and outbox.processing_cursor() == 2
    assert outbox.unprocessed_frames(2, 10) == []
    with pytest.raises(sqlite3.IntegrityError):  # a failing insert leaves neither rows nor cursor
        outbox.write_processed([processed(3, "a", 3, [row()]), processed(2, "a", 2, [row()])], last_frame_id=3)
    assert outbox.processing_cursor() == 2
    assert ids(outbox.read(0, 10)) == [F, 2 * F, 2 * F + 1]
    assert outbox.held_measurements == 3


def test_frames_without_output_store_nothing_but_move_the_cursor(outbox):
    assert outbox.write_processed([processed(1, "a", 1, [])], last_frame_id=1) == 0
    assert outbox.processing_cursor() == 1 and outbox.read(0, 10) == []


def test_read_converts_types_and_pages_by_id(outbox):
    outbox.write_processed(
        [processed(1, "a", 1, [row(value=2.5), row("x", value=None, quality=2, reason="open-circuit"), row("raw", value=b"\x01\x02")]),
         processed(2, "a", 2, [row("ok", value=True), row("fw", value="0.1.0")], kind=1)],
        last_frame_id=2,
    )
    got = outbox.read(0, 10)
    assert got[0] == Measurement(F, "a", 1, "t", 1000.0, 2.5, "Cel", "good", None, "data")
    assert (got[1].value, got[1].quality, got[1].reason) == (None, "bad", "open-circuit")
    assert got[2].value == "0102"
    assert got[3].value is True and got[3].kind == "status" and got[3].seq == 2
    assert got[4].value == "0.1.0"
    assert ids(got) == sorted(ids(got)) and len(set(ids(got))) == 5
    assert ids(outbox.read(F, 2)) == [F + 1, F + 2]
    assert ids(outbox.read(F + 2, 10)) == [2 * F, 2 * F + 1]
    assert outbox.read(2 * F + 1, 10) == []


def test_cursors(outbox):
    assert outbox.load_cursor("partner-a") == 0
    outbox.save_cursor("partner-a", 17)
    outbox.save_cursor("partner-a", 20)
    reopened = Outbox(outbox.path, outbox.max_bytes)
    try:
        assert reopened.load_cursor("partner-a") == 20
    finally:
        reopened.close()


def test_prune_keeps_what_a_route_still_needs_and_ids_are_never_reused(outbox):
    outbox.commit_frames(frames("a", [1, 2], received=100.0) + frames("a", [3], received=5000.0), [])
    outbox.write_processed([processed(1, "a", 1, [row(), row("u")]), processed(2, "a", 2, [row()])], last_frame_id=2)
    outbox.save_cursor("r1", 2 * F)
    outbox.save_cursor("r2", F)  # has only half of frame 1's measurements
    assert outbox.prune(now=5001.0, audit_retention=1000.0, routes=["r1", "r2"]) == (2, 0)
    assert outbox.has_frame("a", 3)  # not yet processed: kept
    outbox.save_cursor("r2", F + 1)
    assert outbox.prune(now=5001.0, audit_retention=1000.0, routes=["r1", "r2"]) == (0, 2)
    assert ids(outbox.read(0, 10)) == [2 * F]
    # a route without a cursor yet holds everything
    assert outbox.prune(now=5001.0, audit_retention=1000.0, routes=["r1", "r2", "new"]) == (0, 0)
    outbox.save_cursor("r2", 2 * F)
    assert outbox.prune(now=5001.0, audit_retention=1000.0, routes=["r1", "r2"]) == (0, 1)
    assert outbox.held_measurements == 0
    outbox.write_processed([processed(3, "a", 3, [row()])], last_frame_id=3)
    outbox.prune(now=1e9, audit_retention=1.0, routes=["r1", "r2"])
    assert outbox.commit_frames(frames("a", [4]), []) == 4  # frame ids (and so measurement ids) never go back


def test_prune_without_routes_uses_the_retention(outbox):
    outbox.write_processed([processed(1, "a", 1, [row()], received=10.0), processed(2, "a", 2, [row()], received=900.0)], last_frame_id=0)
    assert outbox.prune(now=1000.0, audit_retention=500.0, routes=[]) == (0, 1)


def test_size_limit_refuses_whole_groups(tmp_path):
    box = Outbox(str(tmp_path / "small.sqlite"), 1 << 16)
    try:
        seq = 0
        with pytest.raises(OutboxFull):
            for _ in range(1000):
                box.commit_frames([FrameRow("a", seq := seq + 1, 112, 1.0, b"x" * 900)], [])
        stored = box._reader.execute("SELECT count(*) FROM frames").fetchone()[0]
        assert stored == seq - 1 and 0 < stored < 1000
        assert box.is_full()
    finally:
        box.close()


async def test_wait_beyond_wakes_on_notify(outbox):
    outbox.bind_loop(asyncio.get_running_loop())
    waiter = asyncio.create_task(outbox.wait_beyond(0, timeout=5))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    outbox.write_processed([processed(1, "a", 1, [row()])], last_frame_id=0)
    outbox.notify()
    await asyncio.wait_for(waiter, 1)
    started = asyncio.get_running_loop().time()
    await outbox.wait_beyond(F, timeout=0.1)  # nothing new: returns at the timeout
    assert asyncio.get_running_loop().time() - started >= 0.09


def test_windows_keep_the_tag_of_each_number_across_a_restart(outbox):
    """A retransmission is told apart from another frame reusing its number by
    the tag kept in the window, even after audit retention pruned the frame."""
    w = TaggedWindow()
    for seq in range(1, 101):
        w.accept(seq, bytes([seq]) * 8)
    outbox.commit_frames(frames("b", [100], received=10.0), [("b", w)])
    outbox.write_processed([], last_frame_id=1)
    assert outbox.prune(now=1000.0, audit_retention=0.0, routes=[])[0] == 1
    reopened = Outbox(outbox.path, outbox.max_bytes)
    try:
        loaded = reopened.load_windows()["b"]
    finally:
        reopened.close()
    assert loaded.tag_of(100) == bytes([100]) * 8
    assert loaded.tag_of(37) == bytes([37]) * 8
    assert loaded.tag_of(36) is None  # below the window: only a stored frame can vouch for it
    assert loaded.copy().tag_of(99) == bytes([99]) * 8


def test_processed_frames_since_walks_back_from_the_cursor_over_the_span(outbox):
    # 3000 frames received one second apart; 2500 processed
    outbox.commit_frames([FrameRow("a", seq, 112, 1000.0 + seq, b"x") for seq in range(1, 3001)], [])
    outbox.write_processed([], 2500)
    got = outbox.processed_frames_since(60.0, 10000)
    assert [r[0] for r in got] == list(range(2440, 2501))  # received 3440..3500: within 60 s of 3500, oldest first
    assert [r[0] for r in outbox.processed_frames_since(5000.0, 1500)] == list(range(1001, 2501))  # the newest 1500
    assert outbox.processed_frames_since(0.0, 10) == [(2500, "a", 2500, 112, 3500.0, b"x")]


def test_processed_frames_since_without_processed_frames_is_empty(outbox):
    assert outbox.processed_frames_since(60.0, 100) == []
    outbox.commit_frames(frames("a", [1, 2]), [("a", window(1, 2))])
    assert outbox.processed_frames_since(60.0, 100) == []  # committed, not processed yet
