"""The values that travel the gateway's spine, in the one direction data flows:

    link -> admission -> durable commit -> processing -> delivery -> sinks
            OpenedFrame   CommittedBatch   ProcessedFrame   (Measurement views)

* ``OpenedFrame`` -- a node frame that verified and decoded: its records as
  columns.  Made by the opener (``smemet.gateway.opener``), read by the
  commit and processing stages.
* ``CommittedBatch`` -- opened frames durably stored, with their consecutive
  frame ids (the outbox gives them).
* ``ProcessedFrame`` -- a frame's measurements after its processing chains:
  frozen, columnar, with consecutive measurement ids.  Made by exactly one
  function, ``Processor.process``; stored and read back by the outbox;
  delivered to every sink.
* ``Measurement`` -- one row of a processed frame, for code that wants a
  record at a time (``ProcessedFrame.measurement(i)``).

Quality is a code, ordered by severity (``quality.py``: 0 good,
1 uncertain, 2 bad); ``QUALITY_NAMES`` gives the names integrators see.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from smemet.protocol.messages import CT_SENML

from .quality import BAD, GOOD, QUALITY_NAMES, UNCERTAIN

QUALITY_GOOD, QUALITY_UNCERTAIN, QUALITY_BAD = QUALITY_NAMES
QUALITY_CODES = {name: code for code, name in enumerate(QUALITY_NAMES)}

# What a frame carried (its content type): measurements or node health.
KIND_DATA = 0
KIND_STATUS = 1
KIND_NAMES = ("data", "status")

Value = float | int | str | bool | bytes | None

__all__ = [
    "BAD", "GOOD", "UNCERTAIN", "QUALITY_NAMES", "QUALITY_CODES", "QUALITY_GOOD", "QUALITY_UNCERTAIN", "QUALITY_BAD",
    "KIND_DATA", "KIND_STATUS", "KIND_NAMES", "OpenedFrame", "CommittedBatch", "ProcessedFrame", "Measurement",
    "Reading",
]


@dataclass(slots=True)
class OpenedFrame:
    """A verified, decoded node frame, its records as columns (one entry per
    record, in the order the node wrote them).  Never changed once made.

    ``values`` hold what SenML carried (int, float, str, bool, bytes; None
    for a fault or a non-finite number); ``quality`` holds codes."""

    frame: bytes  # as received: what the outbox stores, what the MAC covered
    kid: bytes
    node: str
    seq: int
    content_type: int
    received: float  # arrival, Unix s
    reference: float  # Unix s that relative SenML times resolved against
    names: list[str]
    units: list[str | None]
    values: list[Value]
    times: list[float]
    quality: bytearray
    reasons: list[str | None]

    @property
    def kind(self) -> int:
        return KIND_DATA if self.content_type == CT_SENML else KIND_STATUS

    @property
    def tag(self) -> bytes:
        """The MAC tag: a verified frame ends with its 8-byte tag."""
        return self.frame[-8:]

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True, slots=True)
class CommittedBatch:
    """Frames stored by one durable commit: ``frames[i]`` got frame id
    ``first_frame_id + i``."""

    first_frame_id: int
    frames: Sequence[OpenedFrame]

    @property
    def last_frame_id(self) -> int:
        return self.first_frame_id + len(self.frames) - 1


@dataclass(frozen=True, slots=True)
class Measurement:
    """One processed measurement.  ``id`` orders measurements in the outbox
    (consecutive, in commit order); ``(node, seq)`` names the frame it came
    from, and integrators deduplicate on ``(node, seq, channel, time)``."""

    id: int
    node: str
    seq: int
    channel: str
    time: float  # Unix seconds
    value: Value
    unit: str | None
    quality: str = QUALITY_GOOD
    reason: str | None = None
    kind: str = "data"  # "data" or "status"
    calibration: str | None = None  # id of the calibration record that corrected it


@dataclass(frozen=True, slots=True)
class ProcessedFrame:
    """One frame's measurements after processing, as columns.

    Measurement ``i`` has id ``first_id + i`` (``offsets`` set: ``first_id +
    offsets[i]``, for a selection of a frame's measurements).  A frame whose
    measurements a chain dropped entirely is never made; every
    ProcessedFrame holds at least one measurement.

    ``calibrations``: per measurement the id of the calibration record
    applied to it (None: none); the whole column is None when no
    measurement of the frame has one, which is what frames without a
    ``calibration`` step always have (nothing is stored or written for it)."""

    first_id: int
    frame_id: int
    node: str
    seq: int
    kind: int  # KIND_DATA or KIND_STATUS
    received: float
    channels: Sequence[str]
    times: Sequence[float]
    values: Sequence[Value]
    units: Sequence[str | None]
    quality: bytes  # codes, QUALITY_NAMES[code]
    reasons: Sequence[str | None]
    offsets: tuple[int, ...] | None = field(default=None)
    calibrations: Sequence[str | None] | None = field(default=None)

    def __len__(self) -> int:
        return len(self.channels)

    @property
    def count(self) -> int:
        return len(self.channels)

    @property
    def last_id(self) -> int:
        return self.id_of(len(self.channels) - 1)

    @property
    def kind_name(self) -> str:
        return KIND_NAMES[self.kind]

    def id_of(self, i: int) -> int:
        return self.first_id + (self.offsets[i] if self.offsets is not None else i)

    def measurement(self, i: int) -> Measurement:
        value = self.values[i]
        if type(value) is bytes:
            value = value.hex()  # a byte-string reading travels as hex text
        return Measurement(self.id_of(i), self.node, self.seq, self.channels[i], self.times[i], value, self.units[i],
                           QUALITY_NAMES[self.quality[i]], self.reasons[i], KIND_NAMES[self.kind],
                           self.calibrations[i] if self.calibrations is not None else None)

    def measurements(self) -> Iterator[Measurement]:
        return (self.measurement(i) for i in range(len(self.channels)))

    def pick(self, indexes: Sequence[int]) -> ProcessedFrame:
        """The measurements at ``indexes`` (ascending), ids kept."""
        if len(indexes) == len(self.channels):
            return self
        offsets = tuple(self.offsets[i] for i in indexes) if self.offsets is not None else tuple(indexes)
        return ProcessedFrame(
            self.first_id, self.frame_id, self.node, self.seq, self.kind, self.received,
            tuple(self.channels[i] for i in indexes), tuple(self.times[i] for i in indexes),
            tuple(self.values[i] for i in indexes), tuple(self.units[i] for i in indexes),
            bytes(self.quality[i] for i in indexes), tuple(self.reasons[i] for i in indexes), offsets,
            _picked(self.calibrations, indexes),
        )

    def after(self, last_id: int) -> ProcessedFrame | None:
        """The measurements with ids above ``last_id`` (a read position that
        falls inside this frame), or None when there are none."""
        if last_id < self.first_id:
            return self
        keep = [i for i in range(len(self.channels)) if self.id_of(i) > last_id]
        return self.pick(keep) if keep else None


def _picked(calibrations: Sequence[str | None] | None, indexes: Sequence[int]) -> tuple[str | None, ...] | None:
    """The calibration column of a selection (None when none is left)."""
    if calibrations is None:
        return None
    picked = tuple(calibrations[i] for i in indexes)
    return picked if any(stamp is not None for stamp in picked) else None


@dataclass(frozen=True, slots=True)
class Reading:
    """A reading from an in-process producer (a Modbus poller), submitted as
    a virtual node's frame."""

    channel: str
    time: float
    value: float | None
    unit: str | None
    quality: str = QUALITY_GOOD
    reason: str | None = None
