"""What the console keeps in memory, fed by its sink: per channel the latest
measurement and a short history ring for the sparkline, per node its latest
health report (status frames: firmware, uptime, reset cause, store depth).

Folding frames is the only work the console adds to the data path, so it
is kept small: of a delivery (up to 64 frames) only the newest frame of each
node is folded; of a frame only the newest reading of each channel (found
once per channel layout), each a few assignments (the view keeps the frame
and an index, not copies); the history takes at most one point per channel
per ``step`` seconds.  bench/bench_web.py times it: a few microseconds a
frame under load, some 10-20 when every frame comes from another node.
Everything is bounded: ``max_channels`` channels (then new channels are
counted, not kept), a fixed number of points per channel.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence

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
    """One channel's newest measurement and its history.  It keeps the
    frame and the index of that measurement, not copies of its fields:
    folding stays a few assignments per channel, reading (once a second,
    for a page) does the rest."""

    __slots__ = ("channel", "frame", "index", "time", "ring")

    def __init__(self, channel: str, points: int) -> None:
        self.channel = channel
        self.frame: ProcessedFrame | None = None
        self.index = 0
        self.time = -math.inf
        self.ring = Ring(points)

    @property
    def value(self):
        value = self.frame.values[self.index] if self.frame is not None else None
        return value.hex() if type(value) is bytes else value

    @property
    def unit(self) -> str | None:
        return self.frame.units[self.index] if self.frame is not None else None

    @property
    def quality(self) -> int:
        return self.frame.quality[self.index] if self.frame is not None else 0

    @property
    def quality_name(self) -> str:
        return QUALITY_NAMES[self.quality]

    @property
    def reason(self) -> str | None:
        return self.frame.reasons[self.index] if self.frame is not None else None

    @property
    def calibration(self) -> str | None:
        """The id of the calibration record that corrected the newest value."""
        frame = self.frame
        return frame.calibrations[self.index] if frame is not None and frame.calibrations is not None else None

    @property
    def id(self) -> int:
        return self.frame.id_of(self.index) if self.frame is not None else 0

    @property
    def seq(self) -> int:
        return self.frame.seq if self.frame is not None else 0


class NodeView:
    __slots__ = ("node", "channels", "health", "health_time", "last_received", "worst")

    def __init__(self, node: str) -> None:
        self.node = node
        self.channels: dict[str, ChannelView] = {}
        self.health: dict[str, object] = {}  # the newest status report: fw, uptime, reset_cause, store_depth, ...
        self.health_time: float | None = None  # when that report was made (Unix s)
        self.last_received: float | None = None  # arrival of the newest frame the console saw
        self.worst: int | None = None  # the worst current quality over its channels (None: no channel yet)

    def worst_quality(self) -> int | None:
        return self.worst


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

    def fold(self, frames: Sequence[ProcessedFrame]) -> None:
        """One delivery's frames (ascending).  Only the newest frame of each
        node and channel layout in it is folded: under load a delivery holds
        many frames of one node, and the older ones would only be overwritten
        (a fault that came and went within one delivery -- milliseconds at
        such rates -- is not on the page; it is in the outbox and delivered)."""
        nodes = self.nodes
        done = set()
        for frame in reversed(frames):
            layout = (frame.node, frame.kind, frame.channels)
            if layout in done:
                continue
            done.add(layout)
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
        times, step = frame.times, self.step
        views = node.channels
        for channel, i in _newest_per_channel(frame.channels):
            view = views.get(channel)
            if view is None:
                if self.channel_count >= self.max_channels:
                    self.channels_dropped += 1
                    continue
                view = views[channel] = ChannelView(channel, self.points)
                self.channel_count += 1
            t = times[i]
            if t < view.time:
                continue  # an older frame (a node's backlog after an outage)
            quality = frame.quality[i]
            changed = view.frame is None or view.frame.quality[view.index] != quality
            view.frame, view.index, view.time = frame, i, t
            if changed:  # rare: recount the node's worst quality only when one changes
                node.worst = max(c.quality for c in views.values() if c.frame is not None)
            ring = view.ring
            # a point per step, and every change of quality (a fault shows even between steps)
            if t - ring.last_time >= step or (ring.count and ring.quality[ring.next - 1] != quality):
                value = frame.values[i]
                ring.append(t, value if type(value) in (float, int) else _NAN, quality)

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


_LAYOUTS: dict[tuple, list[tuple[str, int]]] = {}  # a node sends the same channel layout frame after frame
_LAYOUTS_KEPT = 10_000


def _newest_per_channel(channels: Sequence[str]) -> list[tuple[str, int]]:
    """(channel, index of its last record) for each channel of a frame: the
    newest reading, as a node writes readings in time order."""
    key = channels if type(channels) is tuple else tuple(channels)
    found = _LAYOUTS.get(key)
    if found is None:
        found = _layout(key)
        if len(_LAYOUTS) < _LAYOUTS_KEPT:
            _LAYOUTS[key] = found
    return found


def _layout(channels: Sequence[str]) -> list[tuple[str, int]]:
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
