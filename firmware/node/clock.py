"""The node's clocks: a monotonic millisecond count that does not wrap
(``time.ticks_ms`` does) and the Unix time learnt from the gateway's ACKs.

Before the first ACK the node is unsynced: readings are stamped with the
monotonic clock and packs use SenML relative time (SPEC.md §3.4).
"""

import time

from micropython import const

_RTT_SLACK_MS = const(100)


class Clock:
    def __init__(self):
        self._last = time.ticks_ms()
        self._mono = 0
        self._offset = None  # Unix ms minus monotonic ms, once synced
        self._rtt = None  # round trip (ms) of the ACK the offset came from, if known
        self.synced = False
        self.syncs = 0

    def mono_ms(self):
        """Milliseconds since boot; call at least once a few days."""
        now = time.ticks_ms()
        self._mono += time.ticks_diff(now, self._last)
        self._last = now
        return self._mono

    def sync(self, unix_ms, sent_mono_ms=None):
        """Adopt the gateway's time from an ACK: its time plus half the round
        trip of the send it acknowledges (``sent_mono_ms``, when known).
        Returns whether the clock was set.

        Once synced, an ACK whose round trip is unknown (a duplicate, or for a
        retransmitted frame) is not used: it may have been held up in the
        network for any time, and its time would set the clock back by that
        much.  Nor is one whose round trip is much longer than the one in
        use (its time is only good to +-rtt/2); the reference creeps towards
        such round trips, so a link that became slower for good is followed.
        """
        now = self.mono_ms()
        if sent_mono_ms is None:
            if self.synced:
                return False
            rtt = None
            offset = unix_ms - now
        else:
            rtt = now - sent_mono_ms
            if self._rtt is not None and rtt > 2 * self._rtt + _RTT_SLACK_MS:
                self._rtt += (rtt - self._rtt) >> 3
                return False
            offset = unix_ms + rtt // 2 - now
        self._offset = offset
        self._rtt = rtt
        self.synced = True
        self.syncs += 1
        return True

    def to_unix_ms(self, mono_ms):
        return mono_ms + self._offset if self._offset is not None else None
