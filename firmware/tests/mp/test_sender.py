"""Sender: the numbers in flight span less than 32 (SPEC.md §5.3), so a
reboot's jump in sequence numbers can never push a frame still in flight
below the gateway's replay window."""

from node.sender import Sender


class Store:
    """Pending frames from before and after a reboot (numbers jump by K)."""

    def __init__(self, seqs):
        self.seqs = seqs
        self.depth = len(seqs)

    def pending(self, limit=None):
        return self.seqs[:limit] if limit else list(self.seqs)

    def read(self, seq):
        return b"frame-%d" % seq, 0, True


class Link:
    def __init__(self):
        self.sent = []

    def send(self, frame):
        self.sent.append(frame)


class Clock:
    def mono_ms(self):
        return 1000


def test_frames_in_flight_span_less_than_32_numbers():
    link = Link()
    sender = Sender(link, Store([5, 6, 70, 71, 72]), Clock(), bytes(32), b"n", window=8)
    sender.pump()
    assert link.sent == [b"frame-5", b"frame-6"], link.sent


def test_a_window_within_the_span_sends_everything():
    link = Link()
    sender = Sender(link, Store([40, 41, 60, 71]), Clock(), bytes(32), b"n", window=8)
    sender.pump()
    assert link.sent == [b"frame-40", b"frame-41", b"frame-60", b"frame-71"], link.sent


def test_age_is_added_as_the_protocol_encodes_it():
    # The node adds the age to a stored frame without re-encoding it: the
    # bytes must be what the codec writes (SPEC §3.4), and the MAC still holds.
    from node.sender import with_age
    from protocol import cose, messages

    key, kid, payload = bytes(range(32)), b"n1", b"\x81\xa1\x02\x01"
    stored = cose.create(key, kid, 9, messages.CT_SENML, payload)
    for age, floor in ((0, False), (23, False), (86400000, False), (600000, True)):
        sent = bytes(with_age(stored, age, floor))
        assert sent == cose.create(key, kid, 9, messages.CT_SENML, payload, age, age_floor=floor), (age, floor)
        mac0 = cose.parse(sent)
        mac0.verify(key)
        assert mac0.age_ms == age and mac0.age_floor == floor
