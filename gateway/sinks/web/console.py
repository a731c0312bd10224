"""What the console keeps in memory, fed by its sink: per channel the latest
measurement and a short history ring for the sparkline, per node its latest
health report (status frames: firmware, uptime, reset cause, store depth).

Folding a frame is the only work the console adds to the data path, so it
is kept to the channels a frame holds, not its measurements: a frame of 32
readings over 4 channels costs 4 updates (the newest reading of each), and
the history takes at most one point per channel per ``step`` seconds.
Everything is bounded: ``max_channels`` channels (then new channels are
counted, not kept), a fixed number of points per channel.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence

from ...spine import KIND_STATUS, QUALITY_NAMES, ProcessedFrame

HISTORY_POINTS = 150  # per channel: 5 minutes at 2 s, whatever [web] history says
MAX_CHANNELS = 50_000  # ~4 KB each with history: 200 MB at worst, far more than a plant has
_NAN = float("nan")


class Ring:
    """The last ``size`` points (time, value, quality code) of one channel,
    in flat arrays: no object per point."""

    __slots__ = ("times", "values", "quality", "next", "count")

    def __init__(self, size: int) -> None:
        self.times = array("d", bytes(8 * size))
        self.values = array("d", bytes(8 * size))
        self.quality = bytearray(size)
        self.next = 0
        self.count = 0

    def append(self, time: float, value: float, quality: int) -> None:
        i = self.next
        self.times[i] = time
        self.values[i] = value
        self.quality[i] = quality
        size = len(self.quality)
        self.next = (i + 1) % size
        if self.count < size:
            self.count += 1

    @property
    def last_time(self) -> float:
        return self.times[self.next - 1] if self.count else -math.inf

    def points(self, since: float) -> tuple[list[float], list[float | None], list[int]]:
        """Points with time >= ``since``, oldest first: times, values (None
        where there was no number), quality codes."""
        size = len(self.quality)
        start = (self.next - self.count) % size
        times, values, quality = [], [], []
        for k in range(self.count):
            i = (start + k) % size
            t = self.times[i]
            if t < since:
                continue
            v = self.values[i]
            times.append(t)
            values.append(None if v != v else v)  # NaN: a fault or a text reading
            quality.append(self.quality[i])
        return times, values, quality


class ChannelView:
    """One channel's newest measurement and its history."""

    __slots__ = ("channel", "id", "seq", "time", "value", "unit", "quality", "reason", "ring")

    def __init__(self, channel: str, points: int) -> None:
        self.channel = channel
        self.id = 0
        self.seq = 0
        self.time = -math.inf
        self.value = None
        self.unit: str | None = None
        self.quality = 0
        self.reason: str | None = None
        self.ring = Ring(points)

    @property
    def quality_name(self) -> str:
        return QUALITY_NAMES[self.quality]


class NodeView:
    __slots__ = ("node", "channels", "health", "health_time", "last_received")

    def __init__(self, node: str) -> None:
        self.node = node
        self.channels: dict[str, ChannelView] = {}
        self.health: dict[str, object] = {}  # the newest status report: fw, uptime, reset_cause, store_depth, ...
        self.health_time: float | None = None  # when that report was made (Unix s)
        self.last_received: float | None = None  # arrival of the newest frame the console saw

    def worst_quality(self) -> int | None:
        """The worst current quality over its channels (None: no channel yet)."""
        return max((c.quality for c in self.channels.values()), default=None)


class ConsoleState:
    """Every node and channel the console has seen.  ``step``: seconds
    between history points of a channel."""

    def __init__(self, step: float, points: int = HISTORY_POINTS, max_channels: int = MAX_CHANNELS) -> None:
        self.step = step
        self.points = points
        self.max_channels = max_channels
        self.nodes: dict[str, NodeView] = {}
        self.channel_count = 0
        self.channels_dropped = 0  # channels beyond max_channels, not kept

    def fold(self, frames: Iterable[ProcessedFrame]) -> None:
        nodes = self.nodes
        for frame in frames:
            node = nodes.get(frame.node)
            if node is None:
                node = nodes[frame.node] = NodeView(frame.node)
            if node.last_received is None or frame.received > node.last_received:
                node.last_received = frame.received
            if frame.kind == KIND_STATUS:
                self._health(node, frame)
            else:
                self._data(node, frame)

    def _data(self, node: NodeView, frame: ProcessedFrame) -> None:
        channels, times = frame.channels, frame.times
        views = node.channels
        for channel, i in _newest_per_channel(channels):
            view = views.get(channel)
            if view is None:
                if self.channel_count >= self.max_channels:
                    self.channels_dropped += 1
                    continue
                view = views[channel] = ChannelView(channel, self.points)
                self.channel_count += 1
            t = times[i]
            if t < view.time:
                continue  # an older frame (a node's backlog after an outage): history only
            value = frame.values[i]
            if type(value) is bytes:
                value = value.hex()
            view.id, view.seq, view.time, view.value = frame.id_of(i), frame.seq, t, value
            view.unit, view.quality, view.reason = frame.units[i], frame.quality[i], frame.reasons[i]
            ring = view.ring
            # a point per step, and every change of quality (a fault shows even between steps)
            if t - ring.last_time >= self.step or (ring.count and ring.quality[ring.next - 1] != view.quality):
                number = value if type(value) in (float, int) else _NAN
                ring.append(t, number, view.quality)

    def _health(self, node: NodeView, frame: ProcessedFrame) -> None:
        newest = max(frame.times)
        if node.health_time is not None and newest < node.health_time:
            return
        report = {}
        for channel, value in zip(frame.channels, frame.values):
            report[channel] = value.hex() if type(value) is bytes else value
        node.health, node.health_time = report, newest

    def node(self, name: str) -> NodeView | None:
        return self.nodes.get(name)


def _newest_per_channel(channels: Sequence[str]) -> list[tuple[str, int]]:
    """(channel, index of its last record) for each channel of a frame: the
    newest reading, as a node writes readings in time order."""
    last = len(channels) - 1
    first = channels[0]
    if channels.count(first) == last + 1:
        return [(first, last)]  # one channel: the common case of a single-sensor node
    distinct = len(set(channels))
    found: dict[str, int] = {}
    for i in range(last, -1, -1):
        channel = channels[i]
        if channel not in found:
            found[channel] = i
            if len(found) == distinct:
                break
    return list(found.items())
