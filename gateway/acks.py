"""ACK frames to nodes (SPEC.md §4): COSE_Mac0 under the node's key, listing
the sequence numbers now durably stored and carrying the gateway's clock.
Sealed by the opener (compiled twin, or the protocol's reference).

The ACK's own sequence number (its Partial IV) must rise strictly per node;
``max(last + 1, now in ms)`` does so without persisting anything, as long as
the clock does not jump back further than the gateway was down.  A Partial IV
holds 40 bits and Unix milliseconds no longer fit (2**40 ms after 1970 was
2004), so "now" counts milliseconds since 2024-01-01 UTC: that lasts until
2058."""

from __future__ import annotations

import logging
import time

from smemet.protocol import gateway_side, messages

from . import opener

SEQ_EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
ACK_OK = gateway_side.ACK_OK
ACK_FULL = messages.ACK_FULL

log = logging.getLogger("smemet.gateway.acks")


class Acker:
    """Seals ACKs and sends them back on the link each frame came from."""

    def __init__(self, key_for, clock=time.time) -> None:
        self.key_for = key_for
        self._clock = clock
        self._last: dict[bytes, int] = {}
        self.sent: dict[str, int] = {"ok": 0, "full": 0}  # ACK frames by status (read by the metrics)

    def next_seq(self, kid: bytes, now_ms: int) -> int:
        seq = max(self._last.get(kid, -1) + 1, now_ms - SEQ_EPOCH_MS)
        self._last[kid] = seq
        return seq

    def frames(self, kid: bytes, seqs: list[int], status: int = ACK_OK) -> list[bytes]:
        """ACK frames naming ``seqs`` (split at the protocol's per-ACK limit);
        one frame with no seqs for ACK_FULL."""
        key = self.key_for(kid)
        if key is None:  # the key was removed since the frame arrived
            return []
        now_ms = int(self._clock() * 1000)
        limit = gateway_side.MAX_ACK_SEQS
        chunks = [seqs[i:i + limit] for i in range(0, len(seqs), limit)] or [[]]
        return [opener.seal_ack(key, kid, self.next_seq(kid, now_ms), chunk, now_ms, status) for chunk in chunks]

    def send(self, kid: bytes, seqs: list[int], status: int, replies) -> None:
        """ACK ``seqs`` to each (link, address) in ``replies``; never raises
        (a node that misses an ACK retransmits and is ACKed again)."""
        try:
            frames = self.frames(kid, seqs, status)
        except Exception:  # noqa: BLE001 - a bug here must not stop the committer; nodes retransmit
            log.exception("cannot build ACK", extra={"node": messages.node_name(kid)})
            return
        for link, address in replies:
            for data in frames:
                try:
                    link.send(data, address)
                except OSError as exc:  # a link that just went away: the node retransmits
                    log.debug("ACK not sent", extra={"link": link.name, "error": str(exc)})
        name = "ok" if status == ACK_OK else "full"
        self.sent[name] += len(frames) * len(replies)
