"""The gateway's per-node replay window (SPEC.md §5.3), sliding as in RFC 9147
§4.5.1 / OSCORE: the highest sequence number accepted and a bitmap of the
WINDOW numbers below it.

Classification is separate from acceptance so the gateway can commit a frame
durably first and only then mark it seen."""

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):
        return value


WINDOW = const(64)

NEW = const(0)  # never seen: deliver
SEEN = const(1)  # inside the window and already accepted: a retransmission
TOO_OLD = const(2)  # below the window: cannot tell, reject as replay


class ReplayWindow:
    def __init__(self, highest=-1, bitmap=0):
        self.highest = highest  # -1: nothing accepted yet
        self.bitmap = bitmap  # bit i set: highest - i accepted (bit 0 = highest)

    def check(self, seq):
        if seq > self.highest:
            return NEW
        offset = self.highest - seq
        if offset >= WINDOW:
            return TOO_OLD
        return SEEN if (self.bitmap >> offset) & 1 else NEW

    def accept(self, seq):
        """Mark ``seq`` seen (call after ``check`` returned NEW)."""
        if seq > self.highest:
            shift = seq - self.highest
            self.bitmap = ((self.bitmap << shift) | 1) & ((1 << WINDOW) - 1) if shift < WINDOW else 1
            self.highest = seq
        elif self.highest - seq < WINDOW:
            self.bitmap |= 1 << (self.highest - seq)
        # else: below the window -- a frame held for the same commit as a much
        # higher number (admitted while both were new).  It is stored; a copy
        # of it is TOO_OLD then (its tag is looked up in the outbox).  Setting
        # its bit would grow the bitmap by up to 2**32 bits (512 MiB).

    def seen(self):
        """Sequence numbers inside the window that were accepted, ascending."""
        return [self.highest - i for i in range(WINDOW - 1, -1, -1) if (self.bitmap >> i) & 1]
