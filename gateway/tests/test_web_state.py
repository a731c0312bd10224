"""The console's in-memory state and sampled figures, on their own: the
newest reading per channel, bounded history, health reports, rates,
rejects in a window, a node's learnt period, passwords and sessions."""

from __future__ import annotations

import pytest

from smemet.gateway.sinks.web.activity import Activity
from smemet.gateway.sinks.web.console import ConsoleState, Ring
from smemet.gateway.sinks.web.passwords import PasswordHash, PasswordHashError, hash_password
from smemet.gateway.sinks.web.sessions import FREE_FAILURES, Sessions, Throttle
from smemet.gateway.spine import BAD, GOOD, KIND_DATA, KIND_STATUS, ProcessedFrame


def frame(node, channels, times, values, quality=None, reasons=None, kind=KIND_DATA, first_id=1, received=None):
    n = len(channels)
    return ProcessedFrame(first_id, 1, node, 1, kind, received if received is not None else max(times),
                          tuple(channels), tuple(times), tuple(values), tuple("Cel" for _ in range(n)),
                          bytes(quality or [GOOD] * n), tuple(reasons or [None] * n))


def test_the_newest_reading_of_each_channel_is_kept():
    state = ConsoleState(step=1.0)
    state.fold([frame("f1", ["a", "b", "a", "b"], [10.0, 10.0, 11.0, 11.5], [1.0, 2.0, 3.0, 4.0], first_id=1)])
    view = state.node("f1")
    assert (view.channels["a"].value, view.channels["a"].time, view.channels["a"].id) == (3.0, 11.0, 3)
    assert (view.channels["b"].value, view.channels["b"].id) == (4.0, 4)
    state.fold([frame("f1", ["a"], [5.0], [99.0])])  # an old frame (a node's backlog) does not replace it
    assert view.channels["a"].value == 3.0
    state.fold([frame("f1", ["a"], [12.0], [None], quality=[BAD], reasons=["wire-break"])])
    a = view.channels["a"]
    assert (a.value, a.quality_name, a.reason) == (None, "bad", "wire-break")
    assert view.worst_quality() == BAD


def test_history_takes_a_point_per_step_and_every_change_of_quality():
    state = ConsoleState(step=2.0, points=4)
    for t in (0.0, 0.5, 1.0, 2.0, 2.5, 4.0):
        state.fold([frame("n", ["x"], [t], [t])])
    times, values, quality = state.node("n").channels["x"].ring.points(since=-1)
    assert times == [0.0, 2.0, 4.0] and values == [0.0, 2.0, 4.0]
    state.fold([frame("n", ["x"], [4.1], [None], quality=[BAD], reasons=["open-circuit"])])
    times, values, quality = state.node("n").channels["x"].ring.points(since=-1)
    assert (times[-1], values[-1], quality[-1]) == (4.1, None, BAD)
    for t in (6.0, 8.0, 10.0):
        state.fold([frame("n", ["x"], [t], [t])])
    times, _, _ = state.node("n").channels["x"].ring.points(since=-1)
    assert times == [4.1, 6.0, 8.0, 10.0]  # bounded: the oldest went
    assert state.node("n").channels["x"].ring.points(since=7.0)[0] == [8.0, 10.0]


def test_ring_wraps_in_order():
    ring = Ring(3)
    for i in range(7):
        ring.append(float(i), float(i * 10), 0)
    assert ring.points(-1) == ([4.0, 5.0, 6.0], [40.0, 50.0, 60.0], [0, 0, 0])


def test_channels_beyond_the_bound_are_counted_not_kept():
    state = ConsoleState(step=1.0, max_channels=2)
    state.fold([frame("n", ["a", "b", "c"], [1.0, 1.0, 1.0], [1, 2, 3])])
    assert state.channel_count == 2 and state.channels_dropped == 1


def test_health_reports_come_from_status_frames():
    state = ConsoleState(step=1.0)
    state.fold([frame("n", ["uptime", "fw", "reset_cause"], [100.0] * 3, [50, "1.2.0", "watchdog"], kind=KIND_STATUS)])
    state.fold([frame("n", ["uptime", "fw"], [90.0] * 2, [40, "1.1.0"], kind=KIND_STATUS)])  # older: ignored
    view = state.node("n")
    assert view.health == {"uptime": 50, "fw": "1.2.0", "reset_cause": "watchdog"} and view.health_time == 100.0
    assert view.channels == {}  # health is not a measurement channel


class FakeStatus:
    """The few GatewayStatus figures Activity samples."""

    def __init__(self):
        self.frames_stored = 0
        self.measurements_processed = 0
        self.reject_counts = {}
        self.seen = {}

    def rejects(self):
        return dict(self.reject_counts)

    def last_seen(self):
        return dict(self.seen)

    def sinks(self):
        return []


def test_rates_rejects_and_periods_from_samples():
    status, now = FakeStatus(), [0.0]
    activity = Activity(status, clock=lambda: now[0])
    for second in range(12):
        now[0] = float(second)
        status.frames_stored = second * 10
        status.measurements_processed = second * 320
        status.reject_counts = {"bad-mac": second // 2}
        status.seen = {"n": second * 2.0 - (second % 2)}  # a frame every two seconds, sampled each second
        activity.sample()
    rates = activity.rates()
    assert rates.frames_per_s == pytest.approx(10.0) and rates.measurements_per_s == pytest.approx(320.0)
    window, recent = activity.recent_rejects()
    assert window == 11.0 and recent == {"bad-mac": 5}  # since the oldest snapshot (t = 0), within 5 minutes
    assert activity.period("n") == pytest.approx(2.0, abs=1.0)
    assert activity.period("never") is None


def test_password_hashes():
    text = hash_password("s3cret-pass")
    stored = PasswordHash.parse(text)
    assert stored.matches("s3cret-pass") and not stored.matches("s3cret-pasS")
    assert hash_password("s3cret-pass") != text  # salted
    for bad in ("plain", "scrypt$3$8$1$AAAA$AAAA", "scrypt$16384$8$1$!!$AAAA", "bcrypt$1$2$3$4$5"):
        with pytest.raises(PasswordHashError):
            PasswordHash.parse(bad)


def test_sessions_expire_and_end():
    now = [1000.0]
    sessions = Sessions(ttl=60.0, clock=lambda: now[0])
    token, session = sessions.create("anna")
    assert sessions.get(token) == session and sessions.get("forged") is None
    now[0] += 59
    assert sessions.get(token) is not None
    now[0] += 2
    assert sessions.get(token) is None
    token, _ = sessions.create("anna")
    sessions.end(token)
    assert sessions.get(token) is None


def test_throttle_doubles_the_wait_after_the_free_tries():
    now = [0.0]
    throttle = Throttle(clock=lambda: now[0])
    for _ in range(FREE_FAILURES):
        throttle.failed("10.0.0.9")
        assert throttle.wait("10.0.0.9") == 0
    throttle.failed("10.0.0.9")
    assert throttle.wait("10.0.0.9") == 2.0
    throttle.failed("10.0.0.9")
    assert throttle.wait("10.0.0.9") == 4.0 and throttle.wait("10.0.0.10") == 0
    throttle.succeeded("10.0.0.9")
    assert throttle.wait("10.0.0.9") == 0


def test_of_one_delivery_only_the_newest_frame_of_each_node_is_folded():
    state = ConsoleState(step=0.5)
    state.fold([frame("a", ["x"], [1.0], [1.0]), frame("b", ["x"], [1.5], [7.0]), frame("a", ["x"], [2.0], [2.0]),
                frame("a", ["y"], [1.8], [5.0])])
    a = state.node("a")
    assert a.channels["x"].value == 2.0 and a.channels["x"].ring.points(-1)[0] == [2.0]  # t = 1.0 skipped
    assert a.channels["y"].value == 5.0  # another channel layout of the same node: folded too
    assert state.node("b").channels["x"].value == 7.0
    assert a.last_received == 2.0


def test_the_console_takes_every_frame_whole():
    from smemet.gateway.sinks.web.config import WebConfig
    from smemet.gateway.sinks.web.sink import WebSink

    sink = WebSink(WebConfig(), status=None)
    status_frame = frame("n", ["fw"], [1.0], ["1.0"], kind=KIND_STATUS)
    data_frame = frame("n", ["x", "y"], [1.0, 1.0], [1.0, 2.0])
    assert sink.selection.of(status_frame) is status_frame and sink.selection.of(data_frame) is data_frame
    assert not sink.durable
