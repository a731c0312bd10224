"""Processing: committed frames in, ``ProcessedFrame`` out -- the only place
processed frames are made.

``Processor.process(frames, first_frame_id, first_id)`` runs a batch of
frames in commit order through their channels' chains.  The work is the
kernels' batch runner (``kernels.process_frames``: compiled in
``_kernels``/``_batch.pxi``, reference in ``kernels/batch.py``, whose
docstring gives the rules): records of one chain are gathered across the
whole batch so each chain runs once per batch over one array.

Each (node, channel) has its own Chain, built on first use from the
configuration; filters keep their state from batch to batch.  That state
lives in memory; at start the processing stage runs the frames processed in
the last ``warmup_s`` through the chains again, output discarded
(``warm_up``), so an open aggregation window, a Hampel window or an EMA
continues where it stopped.

With a ``CalibrationBook`` (calibration/book.py: when a chain has a
``calibration`` or ``thermocouple_life`` step) the chains' calibration
kernels get their records and their life kernels their stored counts when
built; before every batch the book takes what ``smemet calibration``
changed, and the processing stage stores the counts a batch moved in the
batch's own transaction (``write_state`` / ``state_written``).  During
warm-up nothing is counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType

from . import kernels as _active_kernels
from .chains import Chain, chain_from_config
from .spine import OpenedFrame, ProcessedFrame

STATUS_STORE_DEPTH = "store_depth"  # the status record giving a node's unsent frames


class Processor:
    """Applies the configured chains.  ``steps_for(node, channel)`` gives a
    channel's step list or None; ``units_for`` its output unit (None: keep
    the node's).  ``kernels``: the kernel twin to run (default: the active
    one)."""

    def __init__(
        self,
        steps_for: Callable[[str, str], list | None],
        units_for: Callable[[str, str], str | None] = lambda node, channel: None,
        kernels: ModuleType | None = None,
        warmup_s: float = 0.0,
        calibration=None,
    ) -> None:
        self.warmup_s = warmup_s
        self.calibration = calibration  # a CalibrationBook, or None: no chain needs one
        self._steps_for = steps_for
        self._units_for = units_for
        self._kernels = kernels if kernels is not None else _active_kernels.load_active()
        # node -> channel -> its Chain, or None for no processing: read by
        # the batch runner directly, filled through ``build``
        self.by_node: dict[str, dict[str, Chain | None]] = {}

    def build(self, node: str, channel: str) -> Chain | None:
        """The chain of a channel seen for the first time (the batch runner
        caches it in ``by_node``)."""
        steps = self._steps_for(node, channel)
        if steps is None:
            return None
        chain = chain_from_config(steps, f"channels.{node}/{channel}", self._kernels, self._units_for(node, channel))
        if self.calibration is not None and (chain.calibration is not None or chain.life is not None):
            self.calibration.attach(node, channel, chain)
        return chain

    def chain(self, node: str, channel: str) -> Chain | None:
        channels = self.by_node.setdefault(node, {})
        if channel not in channels:
            channels[channel] = self.build(node, channel)
        return channels[channel]

    def process(self, frames: Sequence[OpenedFrame], first_frame_id: int, first_id: int) -> list[ProcessedFrame]:
        """The processed frames of ``frames`` (frame ids from
        ``first_frame_id``), measurement ids from ``first_id``; frames left
        without measurements are not returned."""
        if self.calibration is not None:
            self.calibration.refresh()
        return self._kernels.process_frames(list(frames), first_frame_id, first_id, self)

    def warm_up(self, frames: Sequence[OpenedFrame], batch: int) -> None:
        """Run already processed frames through the chains again, output
        discarded, so their state continues where the previous run left it
        (nothing is counted again: the thermocouple lives stand still)."""
        if self.calibration is not None:
            self.calibration.counting(False)
        try:
            for start in range(0, len(frames), batch):
                self.process(frames[start:start + batch], 0, 0)
        finally:
            if self.calibration is not None:
                self.calibration.counting(True)

    @property
    def write_state(self) -> Callable | None:
        """What to store with a batch's processed frames, in their
        transaction (``Outbox.write_processed(..., also=)``), or None."""
        return self.calibration.write_state if self.calibration is not None else None

    def state_written(self) -> None:
        """That transaction committed."""
        if self.calibration is not None:
            self.calibration.state_written()
