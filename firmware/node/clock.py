"""The node's clocks: a monotonic millisecond count that does not wrap
(``time.ticks_ms`` does) and the Unix time learnt from the gateway's ACKs.

Before the first ACK the node is unsynced: readings are stamped with the
monotonic clock and packs use SenML relative time (SPEC.md §3.4).
"""

import time


class Clock:
    def __init__(self):
        self._last = time.ticks_ms()
        self._mono = 0
        self._offset = None  # Unix ms minus monotonic ms, once synced
        self.synced = False
        self.syncs = 0

    def mono_ms(self):
        """Milliseconds since boot; call at least once a few days."""
        now = time.ticks_ms()
        self._mono += time.ticks_diff(now, self._last)
        self._last = now
        return self._mono

    def sync(self, unix_ms, sent_mono_ms=None):
        """Adopt the gateway's time from an ACK; half the round trip (when the
        send time is known) approximates the ACK's travel time."""
        now = self.mono_ms()
        delay = (now - sent_mono_ms) // 2 if sent_mono_ms is not None else 0
        self._offset = unix_ms + delay - now
        self.synced = True
        self.syncs += 1

    def to_unix_ms(self, mono_ms):
        return mono_ms + self._offset if self._offset is not None else None
