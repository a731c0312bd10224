"""ACK frames to nodes (SPEC.md §4): COSE_Mac0 under the node's key, listing
the sequence numbers now durably stored and carrying the gateway's clock.

The ACK's own sequence number (its Partial IV) must rise strictly per node;
``max(last + 1, now in ms)`` does so without persisting anything, as long as
the clock does not jump back further than the gateway was down.  A Partial IV
holds 40 bits and Unix milliseconds no longer fit (2**40 ms after 1970 was
2004), so "now" counts milliseconds since 2024-01-01 UTC: that lasts until
2058."""

from __future__ import annotations

import time

from smemet.protocol import cose, gateway_side, messages


SEQ_EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z


class Acker:
    def __init__(self, key_for, clock=time.time) -> None:
        self._key_for = key_for
        self._clock = clock
        self._last: dict[bytes, int] = {}

    def next_seq(self, kid: bytes, now_ms: int) -> int:
        seq = max(self._last.get(kid, -1) + 1, now_ms - SEQ_EPOCH_MS)
        self._last[kid] = seq
        return seq

    def frames(self, kid: bytes, seqs: list[int], status: int = gateway_side.ACK_OK) -> list[bytes]:
        """ACK frames naming ``seqs`` (split at the protocol's per-ACK limit);
        one frame with no seqs for ACK_FULL."""
        key = self._key_for(kid)
        if key is None:  # the key was removed since the frame arrived
            return []
        now_ms = int(self._clock() * 1000)
        chunks = [seqs[i : i + gateway_side.MAX_ACK_SEQS] for i in range(0, len(seqs), gateway_side.MAX_ACK_SEQS)] or [[]]
        return [
            cose.create(key, kid, self.next_seq(kid, now_ms), messages.CT_ACK, gateway_side.encode_ack(chunk, now_ms, status))
            for chunk in chunks
        ]
