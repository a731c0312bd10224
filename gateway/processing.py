"""Turns committed frames into measurement rows, batch by batch.

A batch is a run of frames in commit order.  Records of channels without
processing steps become rows directly (columns zipped, no per-record Python
objects beyond the row tuple).  Records of a channel with steps are gathered
per (node, channel) across the whole batch and run through that channel's
``Chain`` at once, so the Cython kernels see long arrays.  Rows come out
grouped by frame, in commit order.

Each (node, channel) has its own Chain instance: filters keep state from
batch to batch.  That state lives in memory; at start the pipeline runs the
frames processed in the last ``warmup_s`` through the chains again, output
discarded (pipeline.py ``_warm_up``), so an open aggregation window, a
Hampel window or an EMA continues where it stopped.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from itertools import groupby, repeat
from operator import itemgetter

from .chains import chain_from_config
from .fastpath import Opened
from .kernels import codes
from .model import QUALITY_BAD, QUALITY_GOOD, QUALITY_UNCERTAIN

_QUALITY_CODE = {QUALITY_GOOD: 0, QUALITY_UNCERTAIN: 1, QUALITY_BAD: 2}
_NAN = math.nan
_NUMERIC = frozenset((float, int, type(None)))
_FIRST = itemgetter(0)
_SECOND = itemgetter(1)
DATA, STATUS = 0, 1
STATUS_STORE_DEPTH = "store_depth"  # the status record giving a node's unsent frames


class Processor:
    """Applies the configured chains.  ``steps_for(node, channel)`` gives a
    channel's step list or None; ``units_for`` its output unit (None: keep
    the node's)."""

    def __init__(
        self,
        steps_for: Callable[[str, str], list | None],
        units_for: Callable[[str, str], str | None] = lambda node, channel: None,
        kernels=None,
        warmup_s: float = 0.0,
    ) -> None:
        self.warmup_s = warmup_s  # see the module docstring
        self._steps_for = steps_for
        self._units_for = units_for
        self._kernels = kernels
        self._chains: dict[tuple[str, str], object | None] = {}
        self.any_chains = True

    def chain(self, node: str, channel: str):
        key = (node, channel)
        try:
            return self._chains[key]
        except KeyError:
            steps = self._steps_for(node, channel)
            made = None if steps is None else (chain_from_config(steps, f"channels.{node}/{channel}", self._kernels), self._units_for(node, channel))
            self._chains[key] = made
            return made

    def rows(self, frames: Sequence[Opened]) -> list[tuple]:
        """Per frame, in order: (frame_id, node, seq, kind, received, rows)
        with rows a list of (channel, time, value, unit, quality code,
        reason)."""
        out: list[tuple] = []
        chained: dict[str, list[int]] = {}  # node -> its frames (indexes) that need chains
        quality_code = _QUALITY_CODE
        for index, frame in enumerate(frames):
            node = frame.node
            if frame.content_type == 112 and self._has_chain(node, frame.names):
                out.append((frame.frame_id, node, frame.seq, DATA, frame.received, []))
                chained.setdefault(node, []).append(index)
                continue
            rows = list(
                zip(
                    frame.names, frame.times,
                    [float(v) if type(v) is int else v for v in frame.values],
                    frame.units, [quality_code[q] for q in frame.qualities], frame.reasons,
                )
            )
            out.append((frame.frame_id, node, frame.seq, DATA if frame.content_type == 112 else STATUS, frame.received, rows))
        for node, indexes in chained.items():
            self._run_node(node, [frames[i] for i in indexes], indexes, out)
        return out

    def _has_chain(self, node: str, names: list[str]) -> bool:
        chains = self._chains
        for name in set(names):
            made = chains[(node, name)] if (node, name) in chains else self.chain(node, name)
            if made is not None:
                return True
        return False

    def _run_node(self, node: str, node_frames: list[Opened], indexes: list[int], out: list[tuple]) -> None:
        """All of one node's records in the batch, sorted by channel (stably:
        commit order within a channel), each channel through its chain."""
        names: list = []
        units: list = []
        values: list = []
        times: list = []
        qualities: list = []
        reasons: list = []
        origin: list = []
        for frame, index in zip(node_frames, indexes):
            names += frame.names
            units += frame.units
            values += frame.values
            times += frame.times
            qualities += frame.qualities
            reasons += frame.reasons
            origin += repeat(index, len(frame.names))
        order = sorted(range(len(names)), key=names.__getitem__)
        if len(order) > 1:
            pick_sorted = itemgetter(*order)  # C-level gather: tuples in channel order
            names, units, values, times, qualities, reasons, origin = map(
                pick_sorted, (names, units, values, times, qualities, reasons, origin)
            )
        for name in sorted(set(names)):
            start, end = bisect_left(names, name), bisect_right(names, name)
            made = self.chain(node, name)
            span = range(start, end)
            if made is not None and not set(map(type, values[start:end])) <= _NUMERIC:
                # a few values a chain cannot take (bool, text, bytes) pass unchanged
                odd = [i for i in span if type(values[i]) not in _NUMERIC]
                self._pass(name, odd, units, values, times, qualities, reasons, origin, out)
                span = [i for i in span if type(values[i]) in _NUMERIC]
            if made is None:
                self._pass(name, span, units, values, times, qualities, reasons, origin, out)
            elif span:
                pick = (lambda column: column[start:end]) if isinstance(span, range) else (lambda column: [column[i] for i in span])
                self._run_chain(name, made, pick(times), pick(values), pick(qualities), pick(reasons),
                                pick(units), pick(origin), out)

    @staticmethod
    def _pass(name, span, units, values, times, qualities, reasons, origin, out) -> None:
        for i in span:
            value = values[i]
            out[origin[i]][5].append(
                (name, times[i], float(value) if type(value) is int else value, units[i], _QUALITY_CODE[qualities[i]], reasons[i])
            )

    def _run_chain(self, name, made, times, values, qualities, reasons, units, origin, out) -> None:
        chain, unit_override = made
        n = len(times)
        result = chain.process(
            times,
            [_NAN if v is None else v for v in values],
            bytes(map(_QUALITY_CODE.__getitem__, qualities)),
            bytes([r is not None for r in reasons]),  # 1 = codes.NODE_FAULT: the node said why
        )
        out_times = result.times.tolist()
        out_values = [None if v != v else v for v in result.values.tolist()]  # NaN: no value
        reason_codes = result.reason_codes
        times = list(times)
        if len(out_times) == n and out_times == times:  # no point dropped or moved
            sources = range(n)
        else:
            sources = self._origins(times, out_times)
        if any(reason_codes):
            names_of = codes.REASON_NAMES
            out_reasons = [
                reasons[i] if code == codes.NODE_FAULT and reasons[i] is not None else (names_of[code] or None)
                for code, i in zip(reason_codes, sources)
            ]
        else:
            out_reasons = repeat(None)
        out_units = repeat(unit_override) if unit_override is not None else [units[i] for i in sources]
        rows = zip(repeat(name), out_times, out_values, out_units, result.quality_codes, out_reasons)
        frame_of = [origin[i] for i in sources]
        for index, group in groupby(zip(frame_of, rows), key=_FIRST):
            out[index][5].extend(map(_SECOND, group))

    @staticmethod
    def _origins(inputs: list[float], outputs: list[float]) -> list[int]:
        """Which input sample each output point stands for, when a chain
        dropped or aggregated points: a surviving point by its time; an
        aggregate (stamped with its window's start) by the sample that closed
        its window -- the first input at or after the next output's time, or
        the batch's last sample for the last output."""
        by_time = {t: i for i, t in enumerate(inputs)}
        last = len(inputs) - 1
        origin = []
        count = len(outputs)
        for k in range(count):
            i = by_time.get(outputs[k])
            if i is None:
                i = last
                if k + 1 < count:
                    following = outputs[k + 1]
                    for j, t in enumerate(inputs):
                        if t >= following:
                            i = j
                            break
            origin.append(i)
        return origin
