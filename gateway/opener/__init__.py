"""Opening node frames and sealing ACKs: the gateway side of SPEC.md §2-§4.

The contract is the protocol's reference codec (``protocol/cose.py``,
``cbor.py``, ``resolve.py``): ``reference.py`` is that codec with its
results as columns, and ``_opener.pyx`` is its compiled twin -- the same
checks in the same order, the same exceptions and messages, the same values.
Which one runs is chosen once per process like the kernels
(``SMEMET_PUREPYTHON=1`` forces the reference; ``native.py``); the one test
suite (``test_opener.py``) runs every vector and generated frame through
both.  There is no per-frame fallback: a backend judges every frame itself.

Opening a frame takes three steps, so the gateway can look at the replay
window before paying for the payload:

1. ``read_header(frame) -> Header``: size and COSE_Mac0 structure
   (``oversize``, ``malformed``, ``unsupported-algorithm``);
2. ``authenticate(header, key_for)``: the node's key, the MAC, the content
   type (``unknown-node``, ``bad-mac``, ``unknown-content-type``);
3. ``decode(frame, header, received) -> OpenedFrame``: the SenML pack
   resolved into columns (``malformed``, ``invalid-senml``,
   ``must-understand``).

``seal_ack`` builds the ACK frame for a node (the reverse direction).
"""

from __future__ import annotations

from smemet.protocol.errors import ProtocolError

from .. import native
from .header import Header


def load(name: str | None = None):
    """The backend module by name ("cython" or "pure"), or the one in use."""
    return native.load("smemet.gateway.opener._opener", "smemet.gateway.opener.reference", name)


_backend = load()
IMPLEMENTATION: str = _backend.IMPLEMENTATION

read_header = _backend.read_header
authenticate = _backend.authenticate
decode = _backend.decode
seal_ack = _backend.seal_ack


def open_frame(frame: bytes, key_for, received: float):
    """All three steps (for tools and tests; the gateway checks the replay
    window between them)."""
    header = read_header(frame)
    authenticate(header, key_for)
    return decode(frame, header, received)


__all__ = ["Header", "IMPLEMENTATION", "ProtocolError", "authenticate", "decode", "load", "open_frame", "read_header",
           "seal_ack"]
