"""Sequence numbers that never repeat, across reboots and power cuts
(OSCORE Appendix B.1.1 style).

A reservation ``R`` is persisted before any number >= the previous
reservation is used; at boot, numbering restarts at the saved reservation,
so numbers used before a power cut (all below ``R``) are never reused.
"""

from micropython import const

from node.fsutil import Slots

K = const(64)  # numbers per reservation: one flash write per K frames


class SequenceCounter:
    def __init__(self, path, floor=0, k=K):
        self.k = k
        self._slots = Slots(path)
        start = self._slots.value or 0
        # The store may hold frames numbered above an old reservation only if
        # the reservation file was lost: never go below them either.
        self._next = max(start, floor)
        self._reserved = self._next  # nothing reserved in this boot yet
        self.reservation_writes = 0

    def peek(self):
        return self._next

    def take(self):
        """The next sequence number, reserving a new block first if needed."""
        seq = self._next
        if seq >= self._reserved:
            self._reserved = seq + self.k
            self._slots.write(self._reserved)  # durable before seq is used
            self.reservation_writes += 1
        self._next = seq + 1
        return seq
