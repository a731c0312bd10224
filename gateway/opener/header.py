"""The outer layer of a node frame, as both opener backends give it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Header:
    """A frame's COSE_Mac0 layer, parsed but not yet authenticated."""

    kid: bytes
    seq: int
    content_type: int
    protected: bytes
    payload: bytes
    tag: bytes
    age_ms: int | None
    age_floor: bool = False  # the node says age_ms is only a lower bound (SPEC §3.4)
