"""Words for the codes the console shows: why frames were rejected (the
admission's reason codes, SPEC.md) and what a field engineer checks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Explanation:
    title: str  # a few words for a table cell
    check: str  # what to look at


REJECTS = {
    "bad-mac": Explanation(
        "wrong key (MAC does not verify)",
        "the node's key differs from the gateway's key store: re-provision the node with the key from "
        "`smemet gateway keys add` (or `smemet commission`), or reload the gateway's keys (SIGHUP)"),
    "unknown-node": Explanation(
        "unknown node (no key for it)",
        "add the node's key to the gateway (`smemet gateway keys add NODE`), then SIGHUP the gateway"),
    "replayed": Explanation(
        "replayed sequence number",
        "a node restarted with an old sequence counter (flash restored or reflashed without its state), "
        "or someone replays captured frames"),
    "malformed": Explanation("malformed frame", "not a COSE_Mac0 frame: wrong port, baud rate or a firmware mismatch"),
    "oversize": Explanation("frame too large", "the node's firmware builds frames above the gateway's limit"),
    "unsupported-algorithm": Explanation("unsupported MAC algorithm", "the node's firmware is not this protocol's"),
    "unknown-content-type": Explanation("unknown content type", "firmware and gateway versions disagree"),
    "invalid-senml": Explanation("invalid SenML pack", "the node's firmware wrote a pack the gateway cannot read"),
    "must-understand": Explanation("unknown must-understand field", "the node's firmware is newer than the gateway"),
}

WAITING_CHECKS = (
    "the node is powered and its firmware runs (serial console: `smemet monitor --port ...`)",
    "it has this node id and the key the gateway holds (`smemet commission` writes both)",
    "it can reach the gateway: gateway address and UDP port in its config, Wi-Fi, or the RS-485 cable",
)


def reject(reason: str) -> Explanation:
    return REJECTS.get(reason) or Explanation(reason, "see the gateway log for this reason")


def waiting_checks(rejects: dict[str, int]) -> list[str]:
    """What to check for a node whose key exists but whose first frame has
    not arrived; frames that arrived but were rejected say more."""
    checks = [f"{n} frames arrived but were rejected as {reject(reason).title}: {reject(reason).check}"
              for reason, n in sorted(rejects.items(), key=lambda item: -item[1])]
    return checks + list(WAITING_CHECKS)
