"""HistoryRead (raw) of channel variables, answered from the outbox.

Replaces asyncua's history manager: the values are what the outbox still
holds (``[opcua] history`` keeps that long, ``Outbox.history`` reads it in
a worker thread), never a second copy.  OPC 10000-11 §6.5.3 semantics:

* ``startTime`` <= SourceTimestamp < ``endTime`` (both given; equal times
  ask for the values at that instant); ``endTime`` before ``startTime``
  reads backwards, newest first, ``startTime`` included and ``endTime``
  not; only one time plus
  ``numValuesPerNode`` reads that many from that time on (only an end
  time: backwards).
* at most ``numValuesPerNode`` values (0: all) and never more than
  ``MAX_VALUES`` in one response; the rest follows with a continuation
  point.  Points are stateless: they hold the position (time and
  measurement id) after which the next call continues, so equal timestamps
  are neither lost nor repeated, and nothing is kept per session.
* ``returnBounds`` is not supported (values only; no bounding values);
  modified-value reads and HistoryUpdate are refused.

Values, timestamps and status codes are those of the live variables
(``space.data_value``), bad ones with a null value.
"""

from __future__ import annotations

import asyncio
import struct
from datetime import datetime, timedelta, timezone

from asyncua import ua

from ...quality import QUALITY_NAMES
from .space import EPOCH, data_value, utc

MAX_VALUES = 10_000  # per node and response: the rest comes with a continuation point
_UNSET_BEFORE = datetime(1601, 1, 2, tzinfo=timezone.utc)  # DateTime.MinValue (or close): "not given"
_POINT = struct.Struct(">?qq")  # backwards?, time (µs) of the last value returned, its measurement id
_MICROSECOND = timedelta(microseconds=1)
_QUALITY = {name: code for code, name in enumerate(QUALITY_NAMES)}


def _micros(moment: datetime | None) -> int | None:
    """A request's time in whole microseconds since 1970 (None: not given).
    Times are compared at the resolution clients see (a SourceTimestamp is
    the measurement time rounded to the microsecond), so a timestamp a
    client got back selects that very value."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    if moment <= _UNSET_BEFORE:
        return None
    return (moment - EPOCH) // _MICROSECOND


def _micros_of(seconds: float) -> int:
    moment = utc(seconds)
    return (moment - EPOCH) // _MICROSECOND if moment is not None else 0


class OutboxHistory:
    """asyncua's history-manager interface (read_history, update_history,
    init, stop) over ``outbox.history``; ``channel_of(nodeid)`` names the
    (node, channel) of a channel variable, or None."""

    def __init__(self, outbox, channel_of) -> None:
        self.outbox = outbox
        self.channel_of = channel_of
        self.reads = 0

    async def init(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def update_history(self, params: ua.HistoryUpdateParameters) -> list[ua.HistoryUpdateResult]:
        return [ua.HistoryUpdateResult(StatusCode=ua.StatusCode(ua.StatusCodes.BadHistoryOperationUnsupported))
                for _ in params.HistoryUpdateDetails]

    async def read_history(self, params: ua.HistoryReadParameters) -> list[ua.HistoryReadResult]:
        details = params.HistoryReadDetails
        if not isinstance(details, ua.ReadRawModifiedDetails) or details.IsReadModified:
            return [_failed(ua.StatusCodes.BadHistoryOperationUnsupported) for _ in params.NodesToRead]
        start, end, count = _micros(details.StartTime), _micros(details.EndTime), details.NumValuesPerNode
        if (start is None) + (end is None) + (count == 0) > 1:  # Part 11: two of the three must be given
            return [_failed(ua.StatusCodes.BadHistoryOperationInvalid) for _ in params.NodesToRead]
        backwards = (start is not None and end is not None and end < start) or (start is None)
        # The domain runs from startTime (included) towards endTime (excluded),
        # forwards or, when endTime is earlier, backwards; equal times ask
        # for the values at that instant.
        if start is not None and end is not None:
            low, high = (end, start) if backwards else (start, end)
            domain = (start == end or not backwards, start == end or backwards)  # low, high included?
        elif start is not None:
            low, high, domain = start, 2**62, (True, True)
        else:
            low, high, domain = -(2**62), end, (True, True)
        keys = {}
        results: list[ua.HistoryReadResult | None] = []
        for rv in params.NodesToRead:
            key = self.channel_of(rv.NodeId)
            if key is None:
                results.append(_failed(ua.StatusCodes.BadHistoryOperationUnsupported))
            elif params.ReleaseContinuationPoints:
                results.append(ua.HistoryReadResult(StatusCode=ua.StatusCode()))
            else:
                keys[len(results)] = key
                results.append(None)
        if keys:
            self.reads += 1
            found = await asyncio.to_thread(self.outbox.history, set(keys.values()), max(low / 1e6, -1e12) - 0.001,
                                            min(high / 1e6, 1e13) + 0.001)
            for index, key in keys.items():
                results[index] = _page(found[key], params.NodesToRead[index].ContinuationPoint, backwards, low, high,
                                       domain, count)
        return results  # type: ignore[return-value]


def _page(measurements: list, point: bytes | None, backwards: bool, low: int, high: int,
          domain: tuple[bool, bool], count: int) -> ua.HistoryReadResult:
    with_low, with_high = domain
    timed = [(_micros_of(m.time), m) for m in measurements]
    selected = [(t, m) for t, m in timed
                if (low < t or (with_low and t == low)) and (t < high or (with_high and t == high))]
    if backwards:
        selected.reverse()
    if point:
        try:
            was_backwards, last_time, last_id = _POINT.unpack(point)
        except struct.error:
            return _failed(ua.StatusCodes.BadContinuationPointInvalid)
        if was_backwards != backwards:
            return _failed(ua.StatusCodes.BadContinuationPointInvalid)
        after = (lambda t, m: (t, m.id) < (last_time, last_id)) if backwards else \
            (lambda t, m: (t, m.id) > (last_time, last_id))
        selected = [(t, m) for t, m in selected if after(t, m)]
    limit = min(count, MAX_VALUES) if count else MAX_VALUES
    page, more = selected[:limit], len(selected) > limit
    values = [data_value(m.value, m.time, _QUALITY[m.quality], m.reason, None) for _, m in page]
    result = ua.HistoryReadResult(StatusCode=ua.StatusCode(
        ua.StatusCodes.Good if values else ua.StatusCodes.GoodNoData))
    result.HistoryData = ua.HistoryData(DataValues=values)
    if more and page:
        result.ContinuationPoint = _POINT.pack(backwards, page[-1][0], page[-1][1].id)
    return result


def _failed(code: int) -> ua.HistoryReadResult:
    return ua.HistoryReadResult(StatusCode=ua.StatusCode(code))
