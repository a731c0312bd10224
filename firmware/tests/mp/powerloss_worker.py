"""Power-loss worker: stores, reads back and ACKs frames in a loop, printing
each step after it is durable, until the test SIGKILLs it.  Run in the
flash directory; ``argv[1]`` seeds its choices."""

import sys
import random

from node.store import FrameStore
from node.seqno import SequenceCounter


def say(text):
    sys.stdout.write(text + "\n")  # one write: a kill cannot cut a line in two


def content(seq):
    return bytes((seq * 7 + i) & 0xFF for i in range(20 + seq % 180))


random.seed(int(sys.argv[1]))
store = FrameStore("store", 4 * 1024 * 1024, 2048)  # never full here: no drops
seqs = SequenceCounter("seq", floor=store.highest_seq + 1, k=8)
pending = store.pending()
say("BOOT " + " ".join(str(s) for s in pending))
for seq in pending:  # what a sender would transmit: it must be intact
    frame, _, _ = store.read(seq)
    say("READ %d %s" % (seq, "ok" if frame == content(seq) else "CORRUPT"))
while True:
    seq = seqs.take()
    say("TAKE %d" % seq)
    store.append(seq, content(seq), 0)
    say("STORED %d" % seq)
    while store.depth and random.getrandbits(2) < 2:
        oldest = store.oldest()
        frame, _, _ = store.read(oldest)
        if frame != content(oldest):
            say("READ %d CORRUPT" % oldest)
        say("ACKING %d" % oldest)
        store.ack(oldest)
        say("ACKED %d" % oldest)
