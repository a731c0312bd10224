"""What a node's sequence number means to the gateway right now: the replay
windows of committed frames plus the frames admitted but not yet committed.

Admission asks ``classify`` for every authenticated frame; the commit stage
moves frames from *held* (admitted) to *in flight* (being committed) to
*committed* (their windows moved) or back out (the commit failed).  SPEC.md
§5.3: only the very frame stored under a number is ACKed again (the node
missed its ACK); another frame reusing the number is rejected -- ACKing it
would make the node delete data never stored.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice

from smemet.protocol.window import NEW, SEEN

from .spine import OpenedFrame
from .windows import TaggedWindow


class Verdict(enum.Enum):
    NEW = "new"  # decode it and hold it for the next commit
    STORED = "stored"  # a retransmission of a committed frame: ACK it again
    WAITING = "waiting"  # a retransmission of a frame awaiting its commit: ACK it with that one
    REUSED = "reused"  # another frame under a number already used: reject
    TOO_OLD = "too-old"  # below the window and not the stored frame: reject


@dataclass(slots=True)
class Admitted:
    """A frame admitted for commit, with where its ACK goes (a node may
    retransmit before the commit: each copy's sender gets the ACK)."""

    frame: OpenedFrame
    replies: list = field(default_factory=list)  # (link, address)
    done: object = None  # a virtual node's submit() waits on this future


class ReplayBook:
    """``windows``: node -> TaggedWindow of committed frames (loaded from the
    outbox at start); ``stored_tag(node, seq)`` looks a frame below the
    window up in the outbox."""

    def __init__(self, windows: dict[str, TaggedWindow], stored_tag: Callable[[str, int], bytes | None]) -> None:
        self.windows = windows
        self._stored_tag = stored_tag
        self.held: dict[tuple[str, int], Admitted] = {}  # admitted, waiting for a commit, in arrival order
        self.in_flight: dict[tuple[str, int], Admitted] = {}  # in a commit now
        self.covered_frame_id = 0  # ``windows`` hold every frame committed up to this id

    def classify(self, node: str, seq: int, tag: bytes) -> tuple[Verdict, Admitted | None]:
        window = self.windows.get(node)
        state = window.check(seq) if window is not None else NEW
        if state != NEW:
            stored = window.tag_of(seq) if state == SEEN else self._stored_tag(node, seq)
            if stored == tag:
                return Verdict.STORED, None
            return (Verdict.REUSED if state == SEEN else Verdict.TOO_OLD), None
        key = (node, seq)
        waiting = self.held.get(key) or self.in_flight.get(key)
        if waiting is None:
            return Verdict.NEW, None
        if waiting.frame.tag != tag:
            return Verdict.REUSED, None
        return Verdict.WAITING, waiting

    def hold(self, admitted: Admitted) -> None:
        self.held[(admitted.frame.node, admitted.frame.seq)] = admitted

    def take(self, limit: int) -> list[Admitted]:
        """Up to ``limit`` held frames, oldest first, now in flight."""
        group = []
        held, in_flight = self.held, self.in_flight
        for key in list(islice(held, limit)):
            entry = in_flight[key] = held.pop(key)
            group.append(entry)
        return group

    def committed(self, group: Iterable[Admitted], last_frame_id: int) -> None:
        """``group`` is stored: its numbers move the windows (only now, so a
        failed commit moved nothing)."""
        windows, in_flight = self.windows, self.in_flight
        for entry in group:
            frame = entry.frame
            window = windows.get(frame.node)
            if window is None:
                window = windows[frame.node] = TaggedWindow()
            window.accept(frame.seq, frame.tag)
            in_flight.pop((frame.node, frame.seq), None)
        self.covered_frame_id = last_frame_id

    def snapshot(self) -> tuple[dict[str, TaggedWindow], int]:
        """Copies of the windows and the frame id they cover (to save them)."""
        return {node: window.copy() for node, window in self.windows.items()}, self.covered_frame_id

    def release(self, group: Iterable[Admitted]) -> None:
        for entry in group:
            self.in_flight.pop((entry.frame.node, entry.frame.seq), None)

    def requeue(self, group: Iterable[Admitted]) -> None:
        """Frames back from flight to held (commit again)."""
        for entry in group:
            key = (entry.frame.node, entry.frame.seq)
            self.in_flight.pop(key, None)
            self.held[key] = entry

    def next_seq(self, node: str) -> int:
        """The next sequence number for a virtual node (one above its window)."""
        window = self.windows.get(node)
        return window.highest + 1 if window is not None else 1

    def __len__(self) -> int:
        return len(self.held) + len(self.in_flight)
