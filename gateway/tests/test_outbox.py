"""The outbox on real SQLite: durable settings, ids, windows, dedup, atomic
processing, consecutive measurement ids, cursors, lag, pruning, size limit,
reads from memory and from disk, and the upgrade from schema 2."""

import asyncio
import marshal
import sqlite3
import threading

import pytest

from smemet.gateway.errors import OutboxFull
from smemet.gateway.outbox import Outbox, StoredFrame
from smemet.gateway.spine import Measurement, ProcessedFrame
from smemet.gateway.windows import TaggedWindow
from smemet.protocol.window import SEEN, TOO_OLD


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(str(tmp_path / "outbox.sqlite"), 1 << 30)
    yield box
    box.close()


def frames(node, seqs, received=1000.0):
    return [StoredFrame(node, seq, 112, received, bytes([seq % 256]) * 40) for seq in seqs]


def window(*seqs):
    w = TaggedWindow()
    for seq in seqs:
        w.accept(seq)
    return w


class Writer:
    """Processed frames with the next ids, as the processing stage writes them."""

    def __init__(self, outbox):
        self.outbox = outbox

    def frame(self, frame_id, node, seq, rows, kind=0, received=1000.0):
        first = self.outbox.last_measurement_id + 1 + self._pending
        self._pending += len(rows)
        channels, times, values, units, quality, reasons = zip(*rows) if rows else ((),) * 6
        return ProcessedFrame(first, frame_id, node, seq, kind, received, channels, times, values, units,
                              bytes(quality), reasons)

    def write(self, specs, last_frame_id):
        self._pending = 0
        made = [self.frame(*spec[:4], **spec[4]) if len(spec) > 4 else self.frame(*spec) for spec in specs]
        return self.outbox.write_processed(made, last_frame_id)


def processed(frame_id, node, seq, rows, kind=0, received=1000.0):
    return (frame_id, node, seq, rows, {"kind": kind, "received": received})


def row(channel="t", value=1.5, quality=0, reason=None, time=1000.0):
    return (channel, time, value, "Cel", quality, reason)


def ids(measurements):
    return [m.id for m in measurements]


@pytest.fixture
def writer(outbox):
    return Writer(outbox)


def test_wal_and_full_sync(outbox):
    db = outbox._writer
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_commit_returns_consecutive_ids_and_the_windows_follow_the_frames(tmp_path, outbox):
    assert outbox.commit_frames(frames("a", [1, 2, 3])) == 3
    assert outbox.commit_frames(frames("b", [7])) == 4
    reopened = Outbox(outbox.path, outbox.max_bytes)
    try:
        windows = reopened.load_windows()
        assert windows["a"].check(2) == SEEN and windows["a"].highest == 3
        assert windows["b"].check(7) == SEEN
        assert reopened.has_frame("a", 3) and not reopened.has_frame("a", 4)
        assert windows["a"].tag_of(3) == bytes([3]) * 8  # the very frame's tag, from the frame itself
    finally:
        reopened.close()


def test_window_bitmap_of_64_bits_round_trips(outbox):
    w = window(*range(1, 100))
    outbox.commit_frames(frames("a", [99]))
    outbox.save_windows({"a": w}, covered_frame_id=1)
    loaded = outbox.load_windows()["a"]
    assert (loaded.highest, loaded.bitmap) == (w.highest, w.bitmap) == (99, (1 << 64) - 1)
    assert loaded.check(35) == TOO_OLD


def test_node_seq_is_unique_and_a_failed_group_stores_nothing(outbox):
    outbox.commit_frames(frames("a", [1]))
    with pytest.raises(sqlite3.IntegrityError):
        outbox.commit_frames(frames("a", [2, 1]))
    assert [(f.id, f.seq) for f in outbox.frames_after(0, 10)] == [(1, 1)]
    assert outbox.load_windows()["a"].highest == 1  # the failed group moved nothing
    assert outbox.commit_frames(frames("a", [2])) == 2  # the rolled-back ids were never visible
    assert [(f.id, f.seq) for f in outbox.frames_after(0, 10)] == [(1, 1), (2, 2)]


def test_processing_is_atomic_with_its_cursor(outbox, writer):
    outbox.commit_frames(frames("a", [1, 2]))
    assert outbox.processing_cursor() == 0
    assert [f.id for f in outbox.frames_after(0, 10)] == [1, 2]
    last = writer.write([processed(1, "a", 1, [row()]), processed(2, "a", 2, [row(), row("u")])], last_frame_id=2)
    assert last == 3 and outbox.processing_cursor() == 2
    assert [f.id for f in outbox.frames_after(2, 10)] == []
    # a failing write leaves neither rows nor cursor: here ids that do not
    # continue the sequence, and then a frame that collides with a stored one
    gap = ProcessedFrame(9, 3, "a", 3, 0, 1000.0, ("t",), (1000.0,), (1.5,), ("Cel",), b"\x00", (None,))
    with pytest.raises(ValueError, match="continue at 4"):
        outbox.write_processed([gap], last_frame_id=3)
    clash = ProcessedFrame(4, 3, "a", 3, 0, 1000.0, ("t",), (1000.0,), (1.5,), ("Cel",), b"\x00", (None,))
    outbox._writer.execute("INSERT INTO processed VALUES (4, 99, 3, 'a', 3, 0, 0.0, 1, x'00')")  # a stale row
    with pytest.raises(sqlite3.IntegrityError):
        outbox.write_processed([clash], last_frame_id=3)
    outbox._writer.execute("DELETE FROM processed WHERE position = 99")
    assert outbox.processing_cursor() == 2 and outbox.last_measurement_id == 3
    assert ids(outbox.read(0, 10)) == [1, 2, 3]
    assert outbox.held_measurements == 3


def test_measurement_ids_are_consecutive_and_survive_a_restart(outbox, writer):
    writer.write([processed(1, "a", 1, [row(), row("u")]), processed(2, "b", 1, [row()])], last_frame_id=2)
    reopened = Outbox(outbox.path, outbox.max_bytes)
    try:
        assert reopened.last_measurement_id == 3 and reopened.held_measurements == 3
        assert ids(reopened.read(0, 10)) == [1, 2, 3]
    finally:
        reopened.close()


def test_frames_without_output_store_nothing_but_move_the_cursor(outbox, writer):
    assert writer.write([], last_frame_id=1) == 0
    assert outbox.processing_cursor() == 1 and outbox.read(0, 10) == []


def test_read_converts_types_and_pages_by_id(outbox, writer):
    writer.write(
        [processed(1, "a", 1, [row(value=2.5), row("x", value=None, quality=2, reason="open-circuit"), row("raw", value=b"\x01\x02")]),
         processed(2, "a", 2, [row("ok", value=True), row("fw", value="0.1.0")], kind=1)],
        last_frame_id=2,
    )
    for source in (outbox, Outbox(outbox.path, outbox.max_bytes)):  # from memory, and from disk after a restart
        got = source.read(0, 10)
        assert got[0] == Measurement(1, "a", 1, "t", 1000.0, 2.5, "Cel", "good", None, "data")
        assert (got[1].value, got[1].quality, got[1].reason) == (None, "bad", "open-circuit")
        assert got[2].value == "0102"
        assert got[3].value is True and got[3].kind == "status" and got[3].seq == 2
        assert got[4].value == "0.1.0"
        assert ids(got) == [1, 2, 3, 4, 5]
        assert ids(source.read(1, 2)) == [2, 3]
        assert ids(source.read(3, 10)) == [4, 5]
        assert source.read(5, 10) == []
        frames_read = source.read_frames(1, 10)  # a read position inside a frame cuts it there
        assert [(f.first_id, f.last_id, f.seq, len(f)) for f in frames_read] == [(1, 3, 1, 2), (4, 5, 2, 2)]
        assert frames_read[0].id_of(0) == 2 and frames_read[0].channels == ("x", "raw")
    source.close()


def test_lag_counts_measurements_and_frames_after_a_cursor(outbox, writer):
    writer.write([processed(f, "a", f, [row(), row("u"), row("v")]) for f in range(1, 5)], last_frame_id=4)  # ids 1..12
    assert outbox.lag(0) == (12, 4)
    assert outbox.lag(3) == (9, 3)  # frame 1 delivered
    assert outbox.lag(4) == (8, 3)  # inside frame 2: it still counts
    assert outbox.lag(12) == (0, 0)
    outbox.save_cursor("r", 6)
    outbox.prune(now=1e9, audit_retention=1.0, sinks=["r"])  # frames 1 and 2 go
    assert outbox.lag(0) == (12, 2) and outbox.lag(7) == (5, 2)


def test_reads_from_memory_equal_reads_from_disk(outbox, writer):
    from smemet.gateway import outbox as outbox_module

    total = outbox_module.RECENT_FRAMES * 3  # memory keeps the newest only
    writer.write([processed(f, "n", f, [row(value=float(f)), row("u", value=-float(f))]) for f in range(1, total + 1)],
                 last_frame_id=total)
    disk = Outbox(outbox.path, outbox.max_bytes)
    try:
        for position in (0, 1, 2, 3, 2 * total - 2 * outbox_module.RECENT_FRAMES, 2 * total - 3, 2 * total - 1,
                         2 * total):
            assert outbox.read_frames(position, 64) == disk.read_frames(position, 64), position
    finally:
        disk.close()


def test_cursors(outbox):
    assert outbox.load_cursor("partner-a") == 0
    outbox.save_cursor("partner-a", 17)
    outbox.save_cursor("partner-a", 20)
    assert outbox.load_cursor("partner-a") == 20 and outbox.cursors() == {"partner-a": 20}
    outbox.flush_cursors()  # the writer thread stores what was noted
    reopened = Outbox(outbox.path, outbox.max_bytes)
    try:
        assert reopened.load_cursor("partner-a") == 20
        reopened.save_cursor("partner-b", 5)
    finally:
        reopened.close()  # stores what is still noted
    again = Outbox(outbox.path, outbox.max_bytes)
    try:
        assert again.cursors() == {"partner-a": 20, "partner-b": 5}
    finally:
        again.close()


def test_saving_a_cursor_never_waits_for_the_database(outbox, writer):
    """Sinks save cursors on the event loop: a save must not wait behind a
    transaction holding SQLite's write lock (a commit's fsync, a prune)."""
    blocker = sqlite3.connect(outbox.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # holds the write lock, as the writer thread does mid-commit
    try:
        saver = threading.Thread(target=outbox.save_cursor, args=("r", 3))
        saver.start()
        saver.join(5.0)  # the database's busy timeout is 30 s: waiting on the lock would show
        assert not saver.is_alive(), "save_cursor waited for the database's write lock"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    writer.write([processed(1, "a", 1, [row(), row(), row()])], last_frame_id=0)  # carries the cursor
    reopened = Outbox(outbox.path, outbox.max_bytes)
    try:
        assert reopened.load_cursor("r") == 3
    finally:
        reopened.close()


def test_prune_keeps_what_a_route_still_needs_and_ids_are_never_reused(outbox, writer):
    outbox.commit_frames(frames("a", [1, 2], received=100.0) + frames("a", [3], received=5000.0))
    outbox.save_windows({}, covered_frame_id=3)
    writer.write([processed(1, "a", 1, [row(), row("u")]), processed(2, "a", 2, [row()])], last_frame_id=2)  # ids 1-2, 3
    outbox.save_cursor("r1", 3)
    outbox.save_cursor("r2", 1)  # has only half of frame 1's measurements
    assert outbox.prune(now=5001.0, audit_retention=1000.0, sinks=["r1", "r2"]) == (2, 0)
    assert outbox.has_frame("a", 3)  # not yet processed: kept
    outbox.save_cursor("r2", 2)
    assert outbox.prune(now=5001.0, audit_retention=1000.0, sinks=["r1", "r2"]) == (0, 2)
    assert ids(outbox.read(0, 10)) == [3]
    # a sink without a cursor yet holds everything
    assert outbox.prune(now=5001.0, audit_retention=1000.0, sinks=["r1", "r2", "new"]) == (0, 0)
    outbox.save_cursor("r2", 3)
    assert outbox.prune(now=5001.0, audit_retention=1000.0, sinks=["r1", "r2"]) == (0, 1)
    assert outbox.held_measurements == 0
    writer.write([processed(3, "a", 3, [row()])], last_frame_id=3)
    assert outbox.last_measurement_id == 4  # ids continue after everything was pruned
    outbox.prune(now=1e9, audit_retention=1.0, sinks=["r1", "r2"])
    assert outbox.commit_frames(frames("a", [4])) == 4  # frame ids never go back
    reopened = Outbox(outbox.path, outbox.max_bytes)
    try:
        assert reopened.last_measurement_id == 4  # nor, after a restart, measurement ids
    finally:
        reopened.close()


def test_prune_without_routes_uses_the_retention(outbox, writer):
    writer.write([processed(1, "a", 1, [row()], received=10.0), processed(2, "a", 2, [row()], received=900.0)], last_frame_id=0)
    assert outbox.prune(now=1000.0, audit_retention=500.0, sinks=[]) == (0, 1)


def test_size_limit_refuses_whole_groups(tmp_path):
    box = Outbox(str(tmp_path / "small.sqlite"), 1 << 16)
    try:
        seq = 0
        with pytest.raises(OutboxFull):
            for _ in range(1000):
                box.commit_frames([StoredFrame("a", seq := seq + 1, 112, 1.0, b"x" * 900)])
        stored = box._reader.execute("SELECT count(*) FROM frames").fetchone()[0]
        assert stored == seq - 1 and 0 < stored < 1000
        assert box.is_full()
    finally:
        box.close()


async def test_wait_beyond_wakes_on_notify(outbox, writer):
    outbox.bind_loop(asyncio.get_running_loop())
    waiter = asyncio.create_task(outbox.wait_beyond(0, timeout=5))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    writer.write([processed(1, "a", 1, [row()])], last_frame_id=0)
    outbox.notify()
    await asyncio.wait_for(waiter, 1)
    started = asyncio.get_running_loop().time()
    await outbox.wait_beyond(1, timeout=0.1)  # nothing new: returns at the timeout
    assert asyncio.get_running_loop().time() - started >= 0.09


def test_windows_keep_the_tag_of_each_number_across_a_restart(outbox):
    """A retransmission is told apart from another frame reusing its number by
    the tag kept in the window, even after audit retention pruned the frame."""
    w = TaggedWindow()
    for seq in range(1, 101):
        w.accept(seq, bytes([seq]) * 8)
    outbox.commit_frames(frames("b", [100], received=10.0))
    outbox.write_processed([], last_frame_id=1)
    assert outbox.prune(now=1000.0, audit_retention=0.0, sinks=[], windows={"b": w}, covered_frame_id=1)[0] == 1
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
    outbox.commit_frames([StoredFrame("a", seq, 112, 1000.0 + seq, b"x") for seq in range(1, 3001)])
    outbox.write_processed([], 2500)
    got = outbox.processed_frames_since(60.0, 10000)
    assert [f.id for f in got] == list(range(2440, 2501))  # received 3440..3500: within 60 s of 3500, oldest first
    assert [f.id for f in outbox.processed_frames_since(5000.0, 1500)] == list(range(1001, 2501))  # the newest 1500
    assert outbox.processed_frames_since(0.0, 10) == [StoredFrame("a", 2500, 112, 3500.0, b"x", 2500)]


def test_processed_frames_since_without_processed_frames_is_empty(outbox):
    assert outbox.processed_frames_since(60.0, 100) == []
    outbox.commit_frames(frames("a", [1, 2]))
    assert outbox.processed_frames_since(60.0, 100) == []  # committed, not processed yet


def test_an_outbox_of_schema_2_is_upgraded_in_place_with_its_cursors(tmp_path):
    """Schema 2 (measurement id = frame id * 4096 + index) becomes schema 3
    (consecutive ids); every sink still owes exactly what it owed."""
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
        INSERT INTO meta VALUES ('schema', 2);
        CREATE TABLE frames (id INTEGER PRIMARY KEY AUTOINCREMENT, node TEXT NOT NULL, seq INTEGER NOT NULL,
            content_type INTEGER NOT NULL, received REAL NOT NULL, raw BLOB NOT NULL, UNIQUE (node, seq));
        CREATE TABLE windows (node TEXT PRIMARY KEY, highest INTEGER NOT NULL, bitmap BLOB NOT NULL,
            tags BLOB NOT NULL) WITHOUT ROWID;
        CREATE TABLE measurements (frame_id INTEGER PRIMARY KEY, node TEXT NOT NULL, seq INTEGER NOT NULL,
            kind INTEGER NOT NULL, received REAL NOT NULL, count INTEGER NOT NULL, rows BLOB NOT NULL);
        CREATE TABLE progress (name TEXT PRIMARY KEY, frame_id INTEGER NOT NULL) WITHOUT ROWID;
        CREATE TABLE cursors (route TEXT PRIMARY KEY, last_id INTEGER NOT NULL) WITHOUT ROWID;
    """)
    rows = {5: [("t", 1.0, 1.5, "Cel", 0, None), ("u", 1.0, None, None, 2, "open-circuit")],
            7: [("t", 2.0, 2.5, "Cel", 0, None)], 9: [("t", 3.0, 3.5, "Cel", 1, "spike-replaced")]}
    for frame_id, frame_rows in rows.items():
        db.execute("INSERT INTO measurements VALUES (?, 'n', ?, 0, 10.0, ?, ?)",
                   (frame_id, frame_id, len(frame_rows), marshal.dumps(tuple(frame_rows))))
    db.executemany("INSERT INTO cursors VALUES (?, ?)",
                   [("done", 9 * 4096), ("half", 5 * 4096), ("start", 0), ("mid", 7 * 4096)])
    db.execute("INSERT INTO progress VALUES ('processing', 9)")
    db.commit()
    db.close()
    outbox = Outbox(str(path), 1 << 30)
    try:
        assert [(m.id, m.seq, m.channel, m.value, m.quality, m.reason) for m in outbox.read(0, 10)] == [
            (1, 5, "t", 1.5, "good", None), (2, 5, "u", None, "bad", "open-circuit"), (3, 7, "t", 2.5, "good", None),
            (4, 9, "t", 3.5, "uncertain", "spike-replaced")]
        cursors = outbox.cursors()
        assert cursors == {"done": 4, "half": 1, "start": 0, "mid": 3}
        assert [outbox.lag(cursors[name])[0] for name in ("done", "half", "start", "mid")] == [0, 3, 4, 1]
        assert outbox.last_measurement_id == 4 and outbox.processing_cursor() == 9
    finally:
        outbox.close()


def test_windows_saved_by_prune_and_the_frames_after_them_rebuild_the_book(outbox):
    """Only frames the saved windows cover may be pruned; a start replays
    the rest into them: the windows come out as if saved at every commit."""
    live = {}
    for seq in (1, 2, 3, 70, 71):
        live.setdefault("n", TaggedWindow()).accept(seq, bytes([seq]) * 8)
    outbox.commit_frames([StoredFrame("n", s, 112, 10.0, bytes([s]) * 20) for s in (1, 2, 3)])
    covered = {"n": TaggedWindow()}
    for seq in (1, 2, 3):
        covered["n"].accept(seq, bytes([seq]) * 8)
    outbox.commit_frames([StoredFrame("n", s, 112, 10.0, bytes([s]) * 20) for s in (70, 71)])  # after the snapshot
    outbox.write_processed([], last_frame_id=5)
    assert outbox.prune(now=1e9, audit_retention=0.0, sinks=[], windows=covered, covered_frame_id=3)[0] == 3
    assert [f.seq for f in outbox.frames_after(0, 10)] == [70, 71]  # not covered by the saved windows: kept
    loaded = outbox.load_windows()["n"]
    assert (loaded.highest, loaded.bitmap) == (live["n"].highest, live["n"].bitmap)
    assert [loaded.tag_of(s) for s in (70, 71)] == [bytes([70]) * 8, bytes([71]) * 8]
    assert loaded.check(3) == TOO_OLD and loaded.check(70) == SEEN


def test_prune_keeps_delivered_measurements_for_the_history_hold(outbox, writer):
    writer.write([processed(1, "a", 1, [row()], received=100.0), processed(2, "a", 2, [row()], received=900.0)],
                 last_frame_id=0)
    outbox.save_cursor("r", 2)  # both delivered
    assert outbox.prune(now=1000.0, audit_retention=50.0, sinks=["r"], keep_processed=500.0) == (0, 1)
    assert ids(outbox.read(0, 10)) == [2]  # arrived within the hold: kept for history reads
    assert outbox.prune(now=1000.0, audit_retention=50.0, sinks=["r"]) == (0, 1)
    assert outbox.read(0, 10) == []
    # without durable sinks the longer of retention and hold applies
    writer.write([processed(3, "a", 3, [row()], received=600.0)], last_frame_id=0)
    assert outbox.prune(now=1000.0, audit_retention=100.0, sinks=[], keep_processed=500.0) == (0, 0)
    assert outbox.prune(now=1000.0, audit_retention=100.0, sinks=[], keep_processed=300.0) == (0, 1)


def test_history_by_channel_and_time_range(outbox, writer):
    # arrival order 100, 200, 300; the third frame carries an old reading (a node's backlog)
    writer.write([
        processed(1, "a", 1, [row("t", 1.0, time=99.0), row("u", 9.0, time=99.0)], received=100.0),
        processed(2, "b", 1, [row("t", 5.0, time=199.0)], received=200.0),
        processed(3, "a", 2, [row("t", 3.0, time=299.0), row("t", 2.0, reason="open-circuit", quality=2, time=150.0)],
                  received=300.0),
        processed(4, "a", 3, [row("fw", "1.0", time=300.0)], kind=1, received=300.0),  # status: not history
    ], last_frame_id=0)
    found = outbox.history([("a", "t"), ("a", "fw")], 0.0, 1000.0)
    assert [(m.time, m.value, m.quality) for m in found[("a", "t")]] == [
        (99.0, 1.0, "good"), (150.0, 2.0, "bad"), (299.0, 3.0, "good")]  # in time order
    assert found[("a", "fw")] == []
    assert [m.value for m in outbox.history([("a", "t")], 100.0, 299.0)[("a", "t")]] == [2.0, 3.0]
    # rows that arrived long before the start are skipped by the search, later ones are not
    assert [m.value for m in outbox.history([("a", "t")], 250.0, 1000.0, skew=10.0)[("a", "t")]] == [3.0]
    assert [m.value for m in outbox.history([("a", "t")], 120.0, 200.0, skew=10.0)[("a", "t")]] == [2.0]
    assert outbox.history([("z", "t")], 0.0, 1000.0) == {("z", "t"): []}
