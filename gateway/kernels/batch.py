"""Running a batch of opened frames through their channels' chains: the
pure-Python reference of ``_batch.pxi`` (compiled into ``_kernels``).

``process_frames(frames, first_frame_id, first_id, table)`` is the one place
processed frames are made (``Processor.process`` calls it):

1. Every record finds its chain: ``table.by_node[node][channel]``, asking
   ``table.build(node, channel)`` the first time (None: no chain).  Records
   without a chain, and values a chain cannot take (bool, text, bytes), pass
   unchanged, ints as floats.
2. The records of one chain across the whole batch run through it at once,
   in commit order (its state carries over from batch to batch).  Their
   input: times, values (None as NaN), quality codes, and reason code
   NODE_FAULT where the node gave a reason.  A per-sample cold junction comes
   from the same frame's ``<channel>.cj`` record with the same time; without
   one the sample is bad "no-cold-junction".
3. A chain that kept every point gives each record its output.  One that
   dropped or aggregated points attributes each output to an input sample
   (``origins``): a surviving point to the sample with its time, an
   aggregate (stamped with its window's start) to the sample that closed
   the window.
4. Each frame's measurements keep its records' order; a record's chain
   output takes its place (none, one, or the aggregates it closed).  Output
   NaN is "no value" (None); reason code NODE_FAULT gives back the node's own
   reason; the chain's unit, if configured, replaces the node's.
   A chain with a ``calibration`` step (``chain.calibration``) stamps each
   output with the id of the record that corrected it: a surviving point
   with its input sample's (the kernel's ``applied``), an aggregate with
   the record in force at its window's start; a frame none of whose
   measurements has one carries no calibration column (None).
5. Frames keep commit order and get consecutive measurement ids from
   ``first_id``; a frame left without measurements is not returned.
"""

from __future__ import annotations

import math
from array import array

from .. import quality as codes
from ..spine import KIND_DATA, KIND_STATUS, ProcessedFrame

_NAN = math.nan
_NUMERIC = (float, int, type(None))
_CT_SENML = 112
CJ_SUFFIX = ".cj"


def _chain_of(table, node: str, channel: str):
    channels = table.by_node.get(node)
    if channels is None:
        channels = table.by_node[node] = {}
    try:
        return channels[channel]
    except KeyError:
        made = channels[channel] = table.build(node, channel)
        return made


def run_chain(chain, times: array, values: array, quality: bytearray, reasons: bytearray, cold_junction) -> int:
    """Run ``chain``'s kernels over the buffers in place; returns the number
    of points that survive (moved to the front)."""
    n = len(values)
    for kernel, per_sample_cj in zip(chain.kernels, chain.per_sample_cj):
        tv, vv, qv, rv = memoryview(times)[:n], memoryview(values)[:n], memoryview(quality)[:n], memoryview(reasons)[:n]
        if per_sample_cj:
            n = kernel.process(tv, vv, qv, rv, memoryview(cold_junction)[:n])
        else:
            n = kernel.process(tv, vv, qv, rv)
    return n


def origins(inputs, outputs) -> list[int]:
    """Which input sample each output point stands for, when a chain dropped
    or aggregated points: a surviving point by its time; an aggregate
    (stamped with its window's start) by the sample that closed its window --
    the first input at or after the next output's time, or the batch's last
    sample for the last output."""
    by_time = {t: i for i, t in enumerate(inputs)}
    last = len(inputs) - 1
    found = []
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
        found.append(i)
    return found


class _Group:
    """The records of one chain in this batch: (frame index, record index)."""

    __slots__ = ("chain", "members", "outputs")

    def __init__(self, chain) -> None:
        self.chain = chain
        self.members: list[tuple[int, int]] = []
        self.outputs: dict[tuple[int, int], list[tuple]] = {}


def _cold_junction(frame, index: int) -> float | None:
    """The frame's ``<channel>.cj`` reading at record ``index``'s time."""
    wanted = frame.names[index] + CJ_SUFFIX
    time = frame.times[index]
    for name, t, value in zip(frame.names, frame.times, frame.values):
        if name == wanted and t == time:
            return float(value) if type(value) in (int, float) else None
    return None


def _run_group(group: _Group, frames) -> None:
    chain = group.chain
    members = group.members
    n = len(members)
    times = array("d", [frames[f].times[r] for f, r in members])
    values = array("d", [_NAN if frames[f].values[r] is None else frames[f].values[r] for f, r in members])
    quality = bytearray(frames[f].quality[r] for f, r in members)
    reasons = bytearray(codes.NODE_FAULT if frames[f].reasons[r] is not None else codes.NONE for f, r in members)
    cold_junction = None
    if chain.needs_cold_junction:
        cold_junction = array("d", bytes(8 * n))
        for k, (f, r) in enumerate(members):
            cj = _cold_junction(frames[f], r)
            if cj is None:
                cold_junction[k] = _NAN
                if quality[k] < codes.BAD:
                    quality[k], reasons[k] = codes.BAD, codes.NO_COLD_JUNCTION
            else:
                cold_junction[k] = cj
    in_times = list(times)
    calibration = chain.calibration
    if calibration is not None:
        calibration.reserve(n)
    kept = run_chain(chain, times, values, quality, reasons, cold_junction)
    out_times = list(times[:kept])
    if kept == n and out_times == in_times:
        sources = range(n)
    else:
        sources = origins(in_times, out_times)
    applied = calibration.applied if calibration is not None else None
    names = codes.REASON_NAMES
    for k, source in enumerate(sources):
        f, r = members[source]
        frame = frames[f]
        code = reasons[k]
        if code == codes.NODE_FAULT and frame.reasons[r] is not None:
            reason = frame.reasons[r]
        else:
            reason = names[code] or None
        value = values[k]
        unit = chain.unit if chain.unit is not None else frame.units[r]
        stamp = None
        if applied is not None:
            entry = applied[source] if times[k] == in_times[source] else calibration.entry_at(times[k])
            stamp = calibration.ids[entry] if entry >= 0 else None
        group.outputs.setdefault((f, r), []).append(
            (frame.names[r], times[k], None if value != value else value, unit, quality[k], reason, stamp)
        )


def process_frames(frames, first_frame_id: int, first_id: int, table) -> list[ProcessedFrame]:
    groups: dict[int, _Group] = {}  # id(chain) -> its group
    chained: list[dict[int, _Group] | None] = []  # per frame: record index -> group
    for f, frame in enumerate(frames):
        marks = None
        if frame.content_type == _CT_SENML:
            node = frame.node
            for r, (name, value) in enumerate(zip(frame.names, frame.values)):
                chain = _chain_of(table, node, name)
                if chain is None or type(value) not in _NUMERIC:
                    continue
                group = groups.get(id(chain))
                if group is None:
                    group = groups[id(chain)] = _Group(chain)
                group.members.append((f, r))
                if marks is None:
                    marks = {}
                marks[r] = group
        chained.append(marks)
    for group in groups.values():
        _run_group(group, frames)
    out = []
    for f, frame in enumerate(frames):
        marks = chained[f]
        channels, times, values, units, quality, reasons, stamps = [], [], [], [], bytearray(), [], []
        for r, name in enumerate(frame.names):
            group = marks.get(r) if marks is not None else None
            if group is None:
                value = frame.values[r]
                rows = ((name, frame.times[r], float(value) if type(value) is int else value, frame.units[r],
                         frame.quality[r], frame.reasons[r], None),)
            else:
                rows = group.outputs.get((f, r), ())
            for channel, time, value, unit, q, reason, stamp in rows:
                channels.append(channel)
                times.append(time)
                values.append(value)
                units.append(unit)
                quality.append(q)
                reasons.append(reason)
                stamps.append(stamp)
        if not channels:
            continue
        out.append(ProcessedFrame(
            first_id, first_frame_id + f, frame.node, frame.seq,
            KIND_DATA if frame.content_type == _CT_SENML else KIND_STATUS, frame.received,
            tuple(channels), tuple(times), tuple(values), tuple(units), bytes(quality), tuple(reasons),
            calibrations=tuple(stamps) if any(stamp is not None for stamp in stamps) else None,
        ))
        first_id += len(channels)
    return out
