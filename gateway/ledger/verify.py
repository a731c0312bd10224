"""Checking, on the partner's side, what a route delivered: a capture of MQTT
messages (topic and payload, in arrival order) against the gateway's public
key.  ``smemet verify`` prints the report; docs/integrator.md explains it.

For each route in the capture (a ``<prefix>/checkpoint`` topic names one):

* every checkpoint must verify with the key (a COSE_Sign1, checkpoint.py);
* from each signed head, the chain is followed back: message ``n`` is
  **authentic** when its link (``chain.link_hash`` of its payload, its
  ``link_seq`` and ``link_prev``) is the one the signed chain expects; its
  ``link_prev`` is then the link expected of message ``n - 1``;
* a number the capture lacks (from its first message on, or from
  ``from_seq``) is **missing**; a message whose link is not
  the expected one is **altered** (or, only after a gateway crash, a copy
  the gateway sent but never got acknowledged and later replaced); messages
  below a missing or altered one, down to the previous checkpoint, cannot
  be vouched for from this capture (**unverifiable**);
* identical copies of one message are **repeated** (a resend after a
  reconnect, or a replay) and count once; messages that arrived after a
  higher number are **out of order**; messages after the newest checkpoint
  are **pending** (the next checkpoint covers them).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .chain import link_hash
from .checkpoint import Checkpoint, CheckpointError, verify as verify_checkpoint
from .signing import fingerprint, public_from_cose_key

CONTROL_SUFFIXES = ("/checkpoint", "/gateway-key", "/status")


@dataclass(frozen=True, slots=True)
class Captured:
    topic: str
    payload: bytes


@dataclass(slots=True)
class _Message:
    seq: int
    prev: bytes
    link: bytes
    topic: str
    payload: bytes
    agreement: str | None
    version: int | None
    arrivals: int = 1


@dataclass
class RouteReport:
    prefix: str
    route: str | None = None
    gateway: str | None = None
    key_fingerprint: str | None = None
    messages: int = 0  # distinct linked messages
    first_seq: int | None = None
    last_seq: int | None = None
    checkpoints: int = 0  # valid
    covered_upto: int = 0  # the highest signed head
    invalid_checkpoints: list[str] = field(default_factory=list)
    authentic: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    altered: list[int] = field(default_factory=list)
    unverifiable: list[int] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    repeated: dict[int, int] = field(default_factory=dict)  # seq -> copies received
    out_of_order: list[tuple[int, int]] = field(default_factory=list)  # (seq, arrived after this seq)
    unlinked: int = 0  # data messages without link fields
    agreements: dict[str, int] = field(default_factory=dict)  # "id v2" -> messages
    topics: dict[int, str] = field(default_factory=dict)  # seq -> topic, to name a message
    before_capture: tuple[int, int] | None = None  # signed before the first message received (not checked)

    @property
    def complete(self) -> bool:
        """Every message up to the newest checkpoint is here and authentic."""
        return (self.checkpoints > 0 and not self.missing and not self.altered and not self.unverifiable
                and not self.invalid_checkpoints and not self.unlinked)


@dataclass
class Report:
    key_source: str  # "pinned fingerprint", "key file", "published key (not pinned)"
    key_fingerprint: str | None
    routes: list[RouteReport]
    problems: list[str] = field(default_factory=list)  # about the key itself

    @property
    def complete(self) -> bool:
        return bool(self.routes) and not self.problems and all(r.complete for r in self.routes)


def verify_capture(messages: Sequence[Captured], *, public: bytes | None = None, pinned: str | None = None,
                   from_seq: int | None = None) -> Report:
    """Check ``messages`` (arrival order).  ``public``: the key to trust (raw
    Ed25519); else the key published in the capture, which must match the
    ``pinned`` fingerprint (64 hex digits) when given."""
    prefixes = sorted({m.topic.rsplit("/", 1)[0] for m in messages if m.topic.endswith(("/checkpoint", "/gateway-key"))},
                      key=len, reverse=True)
    problems: list[str] = []
    published = {}
    for m in messages:
        if m.topic.endswith("/gateway-key"):
            try:
                published[m.topic.rsplit("/", 1)[0]] = public_from_cose_key(m.payload)
            except ValueError as exc:
                problems.append(f"{m.topic}: not a usable public key ({exc})")
    if public is not None:
        source = "key file"
        for prefix, key in published.items():
            if key != public:
                problems.append(f"{prefix}/gateway-key is not the key you trust (fingerprint {fingerprint(key)})")
    else:
        keys = set(published.values())
        if not keys:
            return Report("none", None, [], ["the capture holds no gateway-key message and no key was given: "
                                             "pass --key FILE or capture the retained <prefix>/gateway-key"])
        if len(keys) > 1:
            problems.append("the capture holds different gateway keys")
        public = next(iter(keys))
        if pinned is not None:
            source = "pinned fingerprint"
            if hashlib.sha256(public).hexdigest() != pinned:
                problems.append(f"the published key (fingerprint {fingerprint(public)}) is NOT the one you pinned: "
                                "do not trust this capture")
        else:
            source = "published key (not pinned)"
    routes = [_route(prefix, [m for m in messages if _belongs(m.topic, prefix, prefixes)], public, from_seq)
              for prefix in sorted(prefixes)]
    return Report(source, fingerprint(public), routes, problems)


def _belongs(topic: str, prefix: str, prefixes: Sequence[str]) -> bool:
    """``topic`` is under ``prefix`` and under no longer prefix (a route nested in another's)."""
    if not topic.startswith(prefix + "/"):
        return False
    return not any(len(other) > len(prefix) and topic.startswith(other + "/") for other in prefixes)


def link_fields(payload: bytes) -> tuple[int, bytes, str | None, int | None] | None:
    """(link_seq, link_prev, agreement, version) of a json or senml payload, or None."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    record = doc[-1] if isinstance(doc, list) and doc and isinstance(doc[-1], dict) else doc
    if not isinstance(record, dict):
        return None
    seq, prev = record.get("link_seq"), record.get("link_prev")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1 or not isinstance(prev, str):
        return None
    try:
        prev_bytes = bytes.fromhex(prev)
    except ValueError:
        return None
    if len(prev_bytes) != 32:
        return None
    return seq, prev_bytes, record.get("agreement"), record.get("agreement_version")


def _route(prefix: str, messages: Iterable[Captured], public: bytes, from_seq: int | None) -> RouteReport:
    report = RouteReport(prefix)
    signed: list[Checkpoint] = []
    versions: dict[int, list[_Message]] = {}
    highest = 0
    for m in messages:
        if m.topic.endswith("/checkpoint") and m.topic.rsplit("/", 1)[0] == prefix:
            try:
                signed.append(verify_checkpoint(m.payload, public))
            except CheckpointError as exc:
                report.invalid_checkpoints.append(str(exc))
            continue
        if m.topic.endswith(CONTROL_SUFFIXES):
            continue
        fields = link_fields(m.payload)
        if fields is None:
            report.unlinked += 1
            continue
        seq, prev, agreement, version = fields
        link = link_hash(prev, seq, m.payload)
        known = versions.setdefault(seq, [])
        same = next((v for v in known if v.link == link), None)
        if same is not None:
            same.arrivals += 1
            report.repeated[seq] = same.arrivals
            continue
        if seq < highest and not known:
            report.out_of_order.append((seq, highest))
        highest = max(highest, seq)
        known.append(_Message(seq, prev, link, m.topic, m.payload, agreement, version))
        report.topics.setdefault(seq, m.topic)
        name = f"{agreement} v{version}" if agreement is not None else "no agreement"
        report.agreements[name] = report.agreements.get(name, 0) + 1
    report.messages = len(versions)
    if versions:
        report.first_seq, report.last_seq = min(versions), max(versions)
    report.checkpoints = len(signed)
    if signed:
        newest = max(signed, key=lambda c: (c.seq, c.time))
        report.route, report.gateway = newest.route, newest.gateway
    _follow_chain(report, versions, signed, from_seq)
    return report


def _follow_chain(report: RouteReport, versions: dict[int, list[_Message]], signed: list[Checkpoint],
                  from_seq: int | None) -> None:
    heads = sorted({(c.seq, c.head) for c in signed}, reverse=True)
    top = heads[0][0] if heads else 0
    report.covered_upto = top
    if from_seq is not None:
        start = from_seq
    else:  # a capture may begin mid-stream: what came before its first message is not in it
        start = min(versions) if versions else top + 1
        lowest_checkpoint = min((seq for seq, _ in heads), default=top)
        if lowest_checkpoint + 1 < start:
            report.before_capture = (lowest_checkpoint + 1, start - 1)
    authentic: dict[int, bytes] = {}
    broken: set[int] = set()  # numbers the walk could not vouch for
    for seq, head in heads:
        expected = head
        n = seq
        while n >= start:
            if n in authentic:
                if authentic[n] != expected:
                    report.invalid_checkpoints.append(f"checkpoints disagree about link {n}")
                break
            match = next((v for v in versions.get(n, ()) if v.link == expected), None)
            if match is None:
                broken.add(n)
                break
            authentic[n] = expected
            expected = match.prev
            n -= 1
    report.authentic = sorted(authentic)
    for n in range(start, top + 1):
        if n in authentic:
            continue
        if not versions.get(n):
            report.missing.append(n)
        elif n in broken:  # here, where the signed chain expected another message
            report.altered.append(n)
        else:
            report.unverifiable.append(n)
    # a number with an authentic message and other versions: those others are altered copies
    for n in sorted(authentic):
        if len(versions.get(n, ())) > 1:
            report.altered.append(n)
    report.altered = sorted(set(report.altered))
    report.pending = sorted(n for n in versions if n > top)


def ranges(numbers: Iterable[int]) -> str:
    """57, 60-64, 70"""
    out, run = [], []
    for n in sorted(set(numbers)):
        if run and n == run[-1] + 1:
            run.append(n)
            continue
        if run:
            out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [n]
    if run:
        out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ", ".join(out)
