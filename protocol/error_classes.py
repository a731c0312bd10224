"""The ProtocolError subclasses, one per reason, for CPython users (the
gateway and tools catch them by class).  Importing this module registers
them with ``errors.error``; the package does so on CPython.  A node never
imports it (its heap cannot spare a class per reason)."""

from .errors import ProtocolError, register

__all__ = ["MalformedFrame", "Oversize", "UnsupportedAlgorithm", "UnknownContentType", "UnknownNode", "BadMac",
           "Replayed", "InvalidSenML", "MustUnderstand", "InvalidMessage"]


class MalformedFrame(ProtocolError):
    """The bytes are not a well-formed frame (bad CBOR, wrong structure)."""
    reason = "malformed"


class Oversize(ProtocolError):
    reason = "oversize"


class UnsupportedAlgorithm(ProtocolError):
    reason = "unsupported-algorithm"


class UnknownContentType(ProtocolError):
    reason = "unknown-content-type"


class UnknownNode(ProtocolError):
    reason = "unknown-node"


class BadMac(ProtocolError):
    reason = "bad-mac"


class Replayed(ProtocolError):
    reason = "replayed"


class InvalidSenML(ProtocolError):
    reason = "invalid-senml"


class MustUnderstand(InvalidSenML):
    reason = "must-understand"


class InvalidMessage(ProtocolError):
    """An ACK or config payload that does not follow SPEC.md."""
    reason = "invalid-message"


for _cls in (MalformedFrame, Oversize, UnsupportedAlgorithm, UnknownContentType, UnknownNode, BadMac, Replayed,
             InvalidSenML, MustUnderstand, InvalidMessage):
    register(_cls)
