"""Replay windows that remember which frame each accepted number was.

SPEC.md §5.3: a retransmission of a stored frame is ACKed again, but a
different frame reusing a number must be rejected — ACKing it would make the
node delete data that was never stored.  Keeping the MAC tag of every number
inside the window (64 x 8 bytes per node) tells the two apart without keeping
the frames themselves, so audit retention and the outbox size limit stay
free of it.
"""

from __future__ import annotations

from smemet.protocol.cose import MAC_LEN
from smemet.protocol.window import SEEN, WINDOW, ReplayWindow

_NO_TAG = bytes(MAC_LEN)


class TaggedWindow(ReplayWindow):
    """A ``ReplayWindow`` plus the tag of each accepted number in it, in a
    ring indexed by number modulo the window (inside one window the
    residues are distinct, so a slot always holds its number's tag)."""

    def __init__(self, highest: int = -1, bitmap: int = 0, tags: bytes | None = None) -> None:
        super().__init__(highest, bitmap)
        size = WINDOW * MAC_LEN
        self.tags = bytearray(tags) if tags is not None and len(tags) == size else bytearray(size)

    def accept(self, seq: int, tag: bytes = _NO_TAG) -> None:
        super().accept(seq)
        slot = (seq % WINDOW) * MAC_LEN
        self.tags[slot:slot + MAC_LEN] = tag

    def tag_of(self, seq: int) -> bytes | None:
        """The tag accepted under ``seq``, while ``seq`` is inside the window."""
        if self.check(seq) != SEEN:
            return None
        slot = (seq % WINDOW) * MAC_LEN
        return bytes(self.tags[slot:slot + MAC_LEN])

    def copy(self) -> "TaggedWindow":
        return TaggedWindow(self.highest, self.bitmap, self.tags)
