"""The physical world of the ``sim`` board, read from a scenario file.

``sim.json`` in the flash directory gives, per channel name, named signals
(a constant or ``[[t_s, value], ...]`` breakpoints, linearly interpolated over
scenario time) and fault windows ``{"from": t_s, "to": t_s, "fault": name}``.
Scenario time is node uptime times ``sim.time_scale``.  The file is re-read
when it changes, so a bench can inject faults while a node runs.
"""

import os
import json
import time


class Signal:
    """The signals and faults of one channel."""

    def __init__(self, scenario, name):
        self._scenario = scenario
        self._name = name

    def _entry(self):
        return self._scenario.channel(self._name)

    def value(self, key="value", default=0.0):
        entry = self._entry()
        if entry is None or key not in entry:
            return default
        return interpolate(entry[key], self._scenario.now_s())

    def fault(self):
        """Name of the fault active now, or None."""
        entry = self._entry()
        if not entry:
            return None
        now = self._scenario.now_s()
        for window in entry.get("faults", ()):
            if window.get("from", 0) <= now < window.get("to", 1e30):
                return window.get("fault")
        return None


def interpolate(points, t):
    if not isinstance(points, list):
        return points
    if not points:
        return 0.0
    if t <= points[0][0]:
        return points[0][1]
    for i in range(1, len(points)):
        t1, v1 = points[i]
        if t <= t1:
            t0, v0 = points[i - 1]
            if t1 == t0:
                return v1
            return v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    return points[-1][1]


class Scenario:
    def __init__(self, path="sim.json", time_scale=1.0, clock_ms=None):
        self.path = path
        self.time_scale = time_scale
        self._start = time.ticks_ms()
        self._clock_ms = clock_ms  # tests inject scenario time
        self._stamp = None
        self._checked = None
        self._channels = {}
        self.error = None
        self._reload()

    def now_s(self):
        if self._clock_ms is not None:
            return self._clock_ms() / 1000
        return time.ticks_diff(time.ticks_ms(), self._start) * self.time_scale / 1000

    def _reload(self):
        try:
            st = os.stat(self.path)
        except OSError:
            self._channels = {}
            self._stamp = None
            return
        stamp = (st[6], st[8])
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            with open(self.path) as f:
                data = json.load(f)
            self._channels = data.get("channels", {})
            self.error = None
        except (ValueError, AttributeError) as exc:
            self.error = "%s: not a valid scenario (%s); keeping the previous one" % (self.path, exc)
            print(self.error)

    def channel(self, name):
        now = time.ticks_ms()
        if self._checked is None or time.ticks_diff(now, self._checked) > 1000:
            self._checked = now
            self._reload()
        return self._channels.get(name)

    def signal(self, name):
        return Signal(self, name)
