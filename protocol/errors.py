"""Errors a peer's bytes can cause.  Each carries a short ``reason`` code that
the gateway counts by and the vectors name (``error`` field).

Code shared with the node raises them through ``error(reason, message)``.
On CPython that gives the subclass for the reason (``MalformedFrame``,
``BadMac``, ... in error_classes.py, importable from here); a MicroPython
node, whose heap cannot spare a class per reason, gets a ``ProtocolError``
carrying the same ``reason``.
"""

import sys


class ProtocolError(Exception):
    reason = "protocol-error"

    def __init__(self, message=None, reason=None):
        if reason:
            self.reason = reason
        super().__init__(message or self.reason)  # str(exc) is the message
        self.message = message or self.reason


_CLASSES = None  # reason -> subclass, where the subclasses exist


def error(reason, message):
    """The exception to raise for ``reason`` (a ProtocolError)."""
    cls = _CLASSES.get(reason) if _CLASSES else None
    return cls(message) if cls else ProtocolError(message, reason)


if sys.implementation.name != "micropython":
    from .error_classes import *  # noqa: E402,F401,F403
    from .error_classes import CLASSES as _CLASSES  # noqa: E402,F811
