"""COBS framing and the replay window."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smemet.protocol import cobs, window
from smemet.protocol.error_classes import MalformedFrame


@given(st.binary(max_size=2000))
def test_cobs_round_trip_has_no_zero_bytes(data):
    encoded = cobs.encode(data)
    assert 0 not in encoded
    assert len(encoded) <= len(data) + len(data) // 254 + 1
    assert cobs.decode(encoded) == data


@given(st.lists(st.binary(min_size=1, max_size=300), max_size=10), st.integers(min_value=1, max_value=50))
def test_deframer_splits_a_stream_read_in_any_chunks(packets, chunk):
    stream = b"".join(cobs.frame(p) for p in packets)
    deframer = cobs.Deframer()
    out = []
    for i in range(0, len(stream), chunk):
        out += deframer.feed(stream[i : i + chunk])
    assert out == packets


def test_deframer_resynchronises_after_noise():
    deframer = cobs.Deframer(max_packet=50)
    noise = bytes([5, 1, 2]) + b"\x00" + b"\x07" * 80 + b"\x00"
    out = deframer.feed(noise + cobs.frame(b"hello\x00world"))
    assert out == [b"hello\x00world"]
    assert deframer.errors == 2


def test_cobs_rejects_broken_packets():
    with pytest.raises(MalformedFrame):
        cobs.decode(b"\x05ab")
    with pytest.raises(MalformedFrame):
        cobs.decode(b"\x02a\x00")


@given(st.lists(st.integers(min_value=0, max_value=400), max_size=200))
def test_window_matches_a_set_model(arrivals):
    """NEW exactly when unseen and within WINDOW of the highest accepted."""
    w = window.ReplayWindow()
    accepted: set[int] = set()
    for seq in arrivals:
        highest = max(accepted) if accepted else -1
        if seq in accepted and seq > highest - window.WINDOW:
            expected = window.SEEN
        elif seq <= highest - window.WINDOW:
            expected = window.TOO_OLD
        else:
            expected = window.NEW
        assert w.check(seq) == expected
        if expected == window.NEW:
            w.accept(seq)
            accepted.add(seq)
    assert w.seen() == sorted(s for s in accepted if s > w.highest - window.WINDOW)


def test_window_survives_a_round_trip_of_its_state():
    w = window.ReplayWindow()
    for seq in random.Random(1).sample(range(1000), 300):
        if w.check(seq) == window.NEW:
            w.accept(seq)
    copy = window.ReplayWindow(w.highest, w.bitmap)
    assert all(copy.check(s) == w.check(s) for s in range(1100))


def test_accepting_a_number_below_the_window_keeps_the_bitmap_small():
    """Two frames of one node admitted for the same commit while both were
    new: 50, then 4,000,000,000 committed first.  Accepting 50 afterwards
    must not set bit 3,999,999,950 (a 500 MB integer: found by fuzzing)."""
    replay = window.ReplayWindow()
    replay.accept(49)
    replay.accept(4_000_000_000)
    replay.accept(50)
    assert replay.bitmap.bit_length() <= window.WINDOW
    assert replay.check(50) == window.TOO_OLD and replay.check(4_000_000_000) == window.SEEN
    assert replay.seen() == [4_000_000_000]
