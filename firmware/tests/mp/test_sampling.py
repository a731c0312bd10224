"""The sampling schedule (node/app.py next_slot): a channel samples on its
period grid; a read that overruns skips the missed slots instead of reading
again at once."""

import time

from node.app import next_slot


def test_on_time_reads_follow_the_grid():
    assert next_slot(1000, 250, 1100) == 1250
    assert next_slot(1000, 250, 1250) == 1250  # due exactly now: sample now


def test_an_overrun_skips_to_the_next_slot_still_ahead():
    assert next_slot(1000, 250, 1300) == 1500  # the read took 300 ms: slot 1250 is skipped
    assert next_slot(1000, 250, 2000) == 2250  # slots 1250..2000 are gone
    assert next_slot(1000, 250, 1251) == 1500


def test_consecutive_readings_of_a_channel_are_at_least_a_period_apart():
    # a slow device: every read takes between 0 and 2.3 periods
    period, slot, now, starts = 100, 0, 0, []
    for cost in (0, 230, 10, 120, 99, 101, 0, 200, 5):
        starts.append(now)
        now += cost
        slot = next_slot(slot, period, now)
        assert slot >= now and slot % period == 0, (slot, now)
        now = slot
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert min(gaps) >= period, gaps


def test_the_grid_survives_the_tick_counter_wrapping():
    near_wrap = time.ticks_add(0, -100)  # 100 ms before ticks_ms wraps to 0
    slot = next_slot(near_wrap, 250, time.ticks_add(near_wrap, 400))
    assert time.ticks_diff(slot, near_wrap) == 500
