"""Errors a peer's bytes can cause.  Each carries a short ``reason`` code that
the gateway counts by and the vectors name (``error`` field)."""


class ProtocolError(Exception):
    reason = "protocol-error"

    def __init__(self, message=None):
        super().__init__(message or self.reason)
        self.message = message or self.reason

    def __str__(self):
        return self.message


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
