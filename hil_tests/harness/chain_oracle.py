"""An independent checker of what a route delivered, for the tests: written
from RFC 9052 (COSE_Sign1, §4.2-§4.4), RFC 8032/9053 (Ed25519, EdDSA) and
the link definition in docs/integrator.md, with cbor2 and cryptography only
-- it imports nothing from the gateway, so a mistake in the gateway's own
chain or checkpoint code cannot hide behind the same mistake here.
``pycose_verifies`` checks a checkpoint once more with pycose, a COSE
implementation nobody in this project wrote.

``Oracle(messages, public_key).result()`` names what is wrong: missing,
altered, repeated and out-of-order messages and bad checkpoints.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

CONTROL = ("/status", "/checkpoint", "/gateway-key")


def cose_key_public(data: bytes) -> bytes:
    """RFC 9052 §7 / RFC 9053 §7.2: an OKP key (kty 1) on Ed25519 (crv 6), x at label -2."""
    key = cbor2.loads(data)
    assert key[1] == 1 and key[-1] == 6, f"not an Ed25519 OKP COSE_Key: {key}"
    assert key.get(3) in (None, -8), "the key's algorithm is not EdDSA"
    return key[-2]


def open_sign1(data: bytes, public: bytes) -> dict:
    """Verify a tagged COSE_Sign1 (tag 18) with Ed25519; return its payload, decoded."""
    tagged = cbor2.loads(data)
    assert isinstance(tagged, cbor2.CBORTag) and tagged.tag == 18, "not a tagged COSE_Sign1"
    protected, unprotected, payload, signature = tagged.value
    header = cbor2.loads(protected)
    assert header[1] == -8, f"alg is {header[1]}, not EdDSA (-8)"
    assert isinstance(unprotected, Mapping)  # cbor2 gives a frozendict inside an array
    to_be_signed = cbor2.dumps(["Signature1", protected, b"", payload])  # Sig_structure, RFC 9052 §4.4
    Ed25519PublicKey.from_public_bytes(public).verify(signature, to_be_signed)  # raises InvalidSignature
    return cbor2.loads(payload)


def pycose_verifies(data: bytes, public: bytes) -> bool:
    from pycose.keys import OKPKey
    from pycose.keys.curves import Ed25519
    from pycose.messages import Sign1Message

    tagged = cbor2.loads(data)
    assert tagged.tag == 18
    protected, unprotected, payload, signature = tagged.value  # cbor2 6 decodes a tagged array as a tuple,
    message = Sign1Message.from_cose_obj([protected, dict(unprotected), payload, signature], True)  # pycose wants a list
    message.key = OKPKey(crv=Ed25519, x=public)
    return message.verify_signature()


def link_fields(payload: bytes) -> dict | None:
    doc = json.loads(payload)
    record = doc[-1] if isinstance(doc, list) else doc
    if "link_seq" not in record:
        return None
    return record


def link_of(payload: bytes) -> tuple[int, bytes, bytes]:
    """(n, link n-1, link n) of a message:
    link n = SHA-256(link n-1 || n as 8 bytes big-endian || SHA-256(payload))."""
    record = link_fields(payload)
    seq, prev = record["link_seq"], bytes.fromhex(record["link_prev"])
    digest = hashlib.sha256(prev + seq.to_bytes(8, "big") + hashlib.sha256(payload).digest()).digest()
    return seq, prev, digest


@dataclass
class OracleResult:
    checkpoints: list[dict] = field(default_factory=list)
    bad_checkpoints: int = 0
    authentic: set[int] = field(default_factory=set)
    missing: list[int] = field(default_factory=list)
    altered: list[int] = field(default_factory=list)
    repeated: list[int] = field(default_factory=list)
    out_of_order: list[int] = field(default_factory=list)
    highest_signed: int = 0
    seqs: set[int] = field(default_factory=set)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.altered or self.bad_checkpoints) and bool(self.checkpoints)


class Oracle:
    """``messages``: (topic, payload) in arrival order, for one route (one prefix)."""

    def __init__(self, messages, public: bytes) -> None:
        self.messages = list(messages)
        self.public = public

    def result(self, start: int = 1) -> OracleResult:
        out = OracleResult()
        by_seq: dict[int, list[tuple[bytes, bytes]]] = {}  # seq -> [(prev, link)] distinct
        highest = 0
        for topic, payload in self.messages:
            if topic.endswith("/checkpoint"):
                try:
                    out.checkpoints.append(open_sign1(payload, self.public))
                except (InvalidSignature, AssertionError, ValueError, KeyError, TypeError):
                    out.bad_checkpoints += 1
                continue
            if topic.endswith(CONTROL):
                continue
            seq, prev, link = link_of(payload)
            versions = by_seq.setdefault(seq, [])
            if (prev, link) in versions:
                out.repeated.append(seq)
                continue
            if seq < highest and not versions:
                out.out_of_order.append(seq)
            versions.append((prev, link))
            highest = max(highest, seq)
        out.seqs = set(by_seq)
        heads = sorted({(c["seq"], c["head"]) for c in out.checkpoints}, reverse=True)
        out.highest_signed = heads[0][0] if heads else 0
        for seq, head in heads:  # walk back from every signed head
            expected, n = head, seq
            while n >= start and n not in out.authentic:
                match = [v for v in by_seq.get(n, []) if v[1] == expected]
                if not match:
                    (out.altered if by_seq.get(n) else out.missing).append(n)
                    break
                out.authentic.add(n)
                expected = match[0][0]
                n -= 1
        for n in range(start, out.highest_signed + 1):
            if n not in by_seq and n not in out.missing:
                out.missing.append(n)
            elif n in out.authentic and len(by_seq[n]) > 1 and n not in out.altered:
                out.altered.append(n)
        out.missing.sort()
        out.altered.sort()
        return out


def route_messages(received, prefix: str) -> list[tuple[str, bytes]]:
    """(topic, payload) of the messages under ``prefix``, in arrival order."""
    return [(m.topic, m.payload) for m in received if m.topic.startswith(prefix + "/")]


def published_key(received, prefix: str) -> bytes:
    keys = {cose_key_public(m.payload) for m in received if m.topic == f"{prefix}/gateway-key"}
    assert len(keys) == 1, f"expected one gateway key on {prefix}/gateway-key, got {len(keys)}"
    return keys.pop()
