"""Structured logs: one line per event, ``logfmt`` (key=value) or JSON lines,
on stderr (journald keeps them).  ``RateLimiter`` keeps a flood of bad frames
from flooding the log: one line per key per interval, with how many were
suppressed."""

from __future__ import annotations

import json
import logging
import sys
import time

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict:
    fields = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for key, value in record.__dict__.items():
        if key not in _RESERVED and not key.startswith("_"):
            fields[key] = value
    if record.exc_info:
        fields["exc"] = logging.Formatter().formatException(record.exc_info)
    return fields


def _logfmt_value(value) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\n\t'):
        return json.dumps(text)
    return text


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in _fields(record).items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str)


def setup(level: str = "info", fmt: str = "logfmt", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger("smemet")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


class RateLimiter:
    """``allow(key)`` is True at most once per ``interval`` seconds per key;
    ``suppressed(key)`` is how many calls were refused since the last allowed
    one (reset by allow)."""

    def __init__(self, interval: float = 10.0, clock=time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._last: dict = {}
        self._suppressed: dict = {}

    def allow(self, key) -> tuple[bool, int]:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False, 0
        self._last[key] = now
        return True, self._suppressed.pop(key, 0)


class Spell:
    """A failure that repeats while a condition lasts (a full disk): one line
    when it starts, one when it ends, nothing for every retry in between."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._log = logger
        self.what = what
        self.failures = 0  # in the current spell; 0: none

    def failed(self, why: str, **fields) -> None:
        if not self.failures:
            self._log.warning(f"{self.what} failed, retrying every second until it works: {why}", extra=fields)
        self.failures += 1

    def ok(self) -> None:
        if self.failures:
            self._log.info(f"{self.what} works again", extra={"failed_attempts": self.failures})
            self.failures = 0
