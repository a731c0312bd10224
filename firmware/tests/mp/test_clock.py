"""Clock sync from ACKs (SPEC.md §5.5): an ACK that may have been held up in
the network must not set a synced clock back."""

import time

from node.clock import Clock
from node.sender import Sender
from protocol import cose, gateway_side, messages

T = 1796000000000  # gateway Unix ms
KEY = bytes(range(32))
KID = b"n1"


def _unix_now(clock):
    return clock.to_unix_ms(clock.mono_ms())


def test_the_first_ack_syncs_even_without_a_round_trip():
    clock = Clock()
    assert clock.sync(T) and clock.synced
    assert abs(_unix_now(clock) - T) < 50


def test_an_ack_without_a_round_trip_does_not_move_a_synced_clock():
    clock = Clock()
    clock.sync(T, clock.mono_ms() - 20)
    before = _unix_now(clock)
    assert not clock.sync(T - 10000)  # e.g. a duplicate of an old ACK, 10 s late
    assert abs(_unix_now(clock) - before) < 50


def test_a_fair_round_trip_follows_a_gateway_clock_step():
    clock = Clock()
    clock.sync(T, clock.mono_ms() - 20)
    assert clock.sync(T + 5000, clock.mono_ms() - 30)
    assert abs(_unix_now(clock) - (T + 5015)) < 50


def test_a_much_slower_round_trip_is_not_adopted_until_the_link_stays_slow():
    clock = Clock()
    clock.sync(T, clock.mono_ms() - 20)
    before = _unix_now(clock)
    # an ACK that took 10 s (held up on the way back): its time is 5 s off
    assert not clock.sync(T - 5000, clock.mono_ms() - 10000)
    assert abs(_unix_now(clock) - before) < 50
    # a link that is slow for good (3 s round trips) is followed after a few ACKs
    adopted = [clock.sync(T + 1500, clock.mono_ms() - 3000) for _ in range(30)]
    assert adopted[0] is False and True in adopted, adopted
    assert abs(_unix_now(clock) - (T + 3000)) < 50


class Store:
    depth = 0

    def ack(self, seq):
        return True


def _ack(seq_of_ack, seqs, time_ms):
    return cose.create(KEY, KID, seq_of_ack, messages.CT_ACK, gateway_side.encode_ack(seqs, time_ms))


def test_late_and_retransmission_acks_leave_the_sender_clock_alone():
    clock = Clock()
    sender = Sender(None, Store(), clock, KEY, KID)
    sender._sent[7] = [clock.mono_ms() - 20, 0, 0]  # frame 7, sent once 20 ms ago
    ack = _ack(1, [7], T)
    sender.handle(ack)
    start = clock.mono_ms()
    assert clock.synced and abs(_unix_now(clock) - (T + 10)) < 50

    def drift():  # how far the clock is from where it should be
        return _unix_now(clock) - (T + 10 + clock.mono_ms() - start)

    sender._sent[8] = [clock.mono_ms() - 20, 2, 0]  # frame 8, retransmitted: its round trip is unknown
    sender.handle(_ack(2, [8], T - 10000))
    assert abs(drift()) < 50, drift()
    time.sleep_ms(300)
    sender.handle(ack)  # the first ACK again, duplicated by the network, 300 ms late
    assert abs(drift()) < 50, drift()
