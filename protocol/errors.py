"""Errors a peer's bytes can cause.  Each carries a short ``reason`` code that
the gateway counts by and the vectors name (``error`` field).

Code shared with the node raises them through ``error(reason, message)``.
On CPython that gives the subclass for the reason (``MalformedFrame``,
``BadMac``, ... in error_classes.py, which registers them here when the
package is imported); a MicroPython node, whose heap cannot spare a class per
reason, gets a ``ProtocolError`` carrying the same ``reason``.
"""


class ProtocolError(Exception):
    reason = "protocol-error"

    def __init__(self, message=None, reason=None):
        if reason:
            self.reason = reason
        super().__init__(message or self.reason)  # str(exc) is the message
        self.message = message or self.reason


_CLASSES = {}  # reason -> subclass; error_classes.py fills it (CPython only)


def register(cls):
    """Make ``error(cls.reason, ...)`` raise ``cls``."""
    _CLASSES[cls.reason] = cls
    return cls


def error(reason, message):
    """The exception to raise for ``reason`` (a ProtocolError)."""
    cls = _CLASSES.get(reason)
    return cls(message) if cls else ProtocolError(message, reason)
