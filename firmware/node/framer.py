"""Batches readings into SenML packs and seals them into stored frames.

Readings are stamped with the monotonic clock; when a pack is sealed they are
written in Unix time if the clock is synced, else as SenML relative time.
A pack is sealed when it reaches ``max_records``, when its estimated size
nears the frame limit, or ``max_latency_ms`` after its first reading.
"""

from micropython import const

from protocol import cose, messages, senml

_SEAL_BYTES = const(800)  # estimated pack bytes: leaves room for headers and age


class Framer:
    def __init__(self, key, kid, seqs, store, clock, max_records=16, max_latency_ms=5000):
        self.key = key
        self.kid = kid
        self.seqs = seqs
        self.store = store
        self.clock = clock
        self.max_records = max_records
        self.max_latency_ms = max_latency_ms
        self.builder = senml.PackBuilder(max_records)
        self._frame = bytearray()  # frames are written here: grows once to the largest, then reused
        self._unix = None  # the builder whose times a failed seal already mapped to Unix ms
        self._estimate = 0
        self._first_ms = None
        self.frames = 0
        self.refused = 0

    def emit(self, name, unit, value, reason=None):
        """Add a reading taken now; seal the pack when it is full."""
        if len(self.builder) >= self.max_records:
            self.seal()  # a seal that failed (no heap) left the pack full: try again first
        self.builder.add(name, unit, value, self.clock.mono_ms(), reason)
        if self._first_ms is None:
            self._first_ms = self.builder.last_time()
        self._estimate += 12 + len(name) + (len(unit) if unit else 0) + (len(reason) if reason else 0)
        if len(self.builder) >= self.max_records or self._estimate >= _SEAL_BYTES:
            self.seal()

    def due(self, now_ms):
        """ms until the open pack must be sealed (None: nothing open)."""
        if self._first_ms is None:
            return None
        return self._first_ms + self.max_latency_ms - now_ms

    def seal(self):
        if len(self.builder):
            self.seal_pack(self.builder, messages.CT_SENML)
        self._estimate = 0
        self._first_ms = None

    def seal_pack(self, builder, content_type):
        """Encode ``builder`` (times in monotonic ms), frame it, store it.
        Failure-atomic: if anything fails (e.g. MemoryError) the readings
        stay in ``builder`` and the next seal stores them."""
        now = self.clock.mono_ms()
        if self.clock.synced:
            if builder is not self._unix:
                builder.map_times(self.clock.to_unix_ms)
                self._unix = builder  # its times are Unix ms now: never map them twice
            payload = builder.encode(self.clock.to_unix_ms(now), True, False)
            built = 0  # absolute times: the frame needs no age
        else:
            payload = builder.encode(now, False, False)
            built = now + 1  # monotonic build time + 1: the frame carries an age
        seq = self.seqs.take()
        frame = cose.create(self.key, self.kid, seq, content_type, payload, None, self._frame)
        if self.store.append(seq, frame, built):
            self.frames += 1  # the sender sees the store grow
        else:
            self.refused += 1
        builder.clear()
        self._unix = None
        return seq
