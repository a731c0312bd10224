"""Reading one TOML table of gateway.toml, with one error style for every
section (the gateway's own, routes, Modbus, processing steps, and any sink a
new module adds).

Every mistake raises ``ConfigError`` whose ``where`` is the file and key path
(``gateway.toml: routes[0].keepalive``) and whose message says what would be
valid and what was found::

    is missing; an integer is required
    must be an integer 5..65535, not 1
    must be one of 'json', 'senml', not 'xml'
    unknown key; valid keys are name, broker, ...

``finish()`` rejects keys nobody asked for: a typo must never be ignored.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import stat
import tomllib
from collections.abc import Iterable, Sequence
from typing import Any

from .errors import ConfigError

REQUIRED = object()

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    None: 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def quoted(names: Iterable[Any]) -> str:
    return ", ".join(repr(n) for n in names)


def type_name(value: Any) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number"}.get(type(value), type(value).__name__)


def _range(low: float | None, high: float | None, integer: bool) -> str:
    text = (lambda x: str(int(x))) if integer else (lambda x: f"{x:g}")
    if low is not None and high is not None:
        return f" {text(low)}..{text(high)}"
    if low is not None:
        return f" of at least {text(low)}"
    if high is not None:
        return f" of at most {text(high)}"
    return ""


class Table:
    """One table being validated.  ``where`` names it (``gateway.toml:
    routes[0]``; the file alone for the root, ending in ": "); ``keys`` are
    the keys it may have; ``context`` is added to the unknown-key message
    (" for a 'hampel' step")."""

    def __init__(self, data: Any, where: str, keys: Sequence[str], *, context: str = "") -> None:
        if not isinstance(data, dict):
            raise ConfigError(where.rstrip(": ") if where.endswith(": ") else where,
                              f"must be a table, not {type_name(data)}")
        self.data = data
        self.where = where
        self.keys = tuple(keys)
        self.context = context

    # -- paths and errors --------------------------------------------------

    def at(self, key: str) -> str:
        return f"{self.where}{key}" if self.where.endswith(": ") else f"{self.where}.{key}"

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.at(key), message)

    def missing(self, key: str, kind: str) -> ConfigError:
        return self.error(key, f"is missing; {kind} is required")

    def wrong(self, key: str, expected: str, value: Any) -> ConfigError:
        return self.error(key, f"must be {expected}, not {value!r}")

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def _value(self, key: str, default: Any, kind: str) -> Any:
        if key not in self.data:
            if default is REQUIRED:
                raise self.missing(key, kind)
            return default
        return self.data[key]

    # -- typed values ------------------------------------------------------

    def text(self, key: str, default: Any = REQUIRED, *, allow_empty: bool = False) -> Any:
        value = self._value(key, default, "a string")
        if key in self.data and (not isinstance(value, str) or (not value and not allow_empty)):
            raise self.wrong(key, "a string" if allow_empty else "a non-empty string", value)
        return value

    def integer(self, key: str, default: Any = REQUIRED, low: int | None = None, high: int | None = None) -> Any:
        value = self._value(key, default, "an integer")
        if key not in self.data:
            return value
        expected = "an integer" + _range(low, high, True)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.wrong(key, expected, value)
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.error(key, f"{value} is out of range; must be {expected}")
        return value

    def number(self, key: str, default: Any = REQUIRED, low: float | None = None, high: float | None = None, *,
               above: float | None = None) -> Any:
        """A finite number (int or float), as a float."""
        value = self._value(key, default, "a number")
        if key not in self.data:
            return value
        expected = ("a finite number" if above is None else f"a number greater than {above:g}") + _range(low, high, False)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.wrong(key, expected, value)
        if (above is not None and not value > above) or (low is not None and value < low) \
                or (high is not None and value > high):
            raise self.error(key, f"{value!r} is out of range; must be {expected}")
        return float(value)

    def boolean(self, key: str, default: Any = REQUIRED) -> Any:
        value = self._value(key, default, "true or false")
        if key in self.data and not isinstance(value, bool):
            raise self.wrong(key, "true or false", value)
        return value

    def choice(self, key: str, options: Sequence[Any], default: Any = REQUIRED) -> Any:
        value = self._value(key, default, f"one of {quoted(options)}")
        if key in self.data and value not in options:
            raise self.wrong(key, f"one of {quoted(options)}", value)
        return value

    def numbers(self, key: str) -> tuple[float, ...]:
        """A non-empty array of finite numbers."""
        raw = self._value(key, REQUIRED, "an array of numbers")
        if not isinstance(raw, (list, tuple)) or not raw:
            raise self.wrong(key, "a non-empty array of numbers", raw)
        for i, item in enumerate(raw):
            if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item):
                raise self.wrong(f"{key}[{i}]", "a finite number", item)
        return tuple(float(item) for item in raw)

    def strings(self, key: str, default: Any = REQUIRED, *, non_empty: bool = False, what: str = "strings") -> Any:
        """An array of non-empty strings, as a tuple."""
        value = self._value(key, default, f"an array of {what}")
        if key not in self.data:
            return value
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.wrong(key, f"an array of {what}", value)
        if non_empty and not value:
            raise self.error(key, f"is empty; at least one of the {what} is required")
        return tuple(value)

    def size(self, key: str, default: Any = REQUIRED) -> Any:
        """Bytes: an integer, or text such as 500MB, 2GiB."""
        value = self._value(key, default, "a size such as 500MB")
        if key not in self.data:
            return value
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        match = _SIZE.match(value) if isinstance(value, str) else None
        if not match or float(match.group(1)) <= 0:
            raise self.wrong(key, "a size such as 500MB, 2GiB or a byte count", value)
        unit = match.group(2).lower() if match.group(2) else None
        return int(float(match.group(1)) * _SIZE_UNITS[unit])

    def duration(self, key: str, default: Any = REQUIRED, low: float | None = None, high: float | None = None) -> Any:
        """Seconds: a number, or text such as 30s, 15m, 12h, 7d, 5ms."""
        value = self._value(key, default, "a duration such as 30s")
        if key not in self.data:
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
            seconds = float(value)
        else:
            match = _DURATION.match(value) if isinstance(value, str) else None
            if not match:
                raise self.wrong(key, "a duration such as 30s, 15m, 12h, 7d or seconds", value)
            seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        if (low is not None and seconds < low) or (high is not None and seconds > high):
            raise self.error(key, f"{value!r} is out of range; must be a duration{_range(low, high, False)} s")
        return seconds

    def path(self, key: str, base: str, default: Any = REQUIRED) -> Any:
        """A file path, relative to ``base`` (the config file's directory)."""
        value = self.text(key, default)
        if value is None:
            return None
        return os.path.normpath(os.path.join(base, os.path.expanduser(value)))

    def address(self, key: str, default: Any = REQUIRED) -> Any:
        """An IPv4 or IPv6 address (to bind to)."""
        value = self.text(key, default)
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise self.wrong(key, "an IPv4 or IPv6 address such as 0.0.0.0, ::, 127.0.0.1", value) from None
        return value

    # -- nested tables -----------------------------------------------------

    def table(self, key: str, keys: Sequence[str], *, context: str = "") -> Table:
        """The sub-table ``key`` (empty when absent)."""
        return Table(self.data.get(key, {}), self.at(key), keys, context=context)

    def tables(self, key: str, keys: Sequence[str]) -> list[Table]:
        """The array of tables ``key`` (``[[key]]``), each as a Table."""
        value = self.data.get(key, [])
        if not isinstance(value, list):
            raise self.error(key, f"must be an array of tables ([[{key}]]), not {type_name(value)}")
        return [Table(item, f"{self.at(key)}[{i}]", keys) for i, item in enumerate(value)]

    def finish(self) -> None:
        for key in self.data:
            if key not in self.keys:
                raise self.error(key, f"unknown key{self.context}; valid keys are {', '.join(self.keys)}")


# -- reading the files ------------------------------------------------------

UTF8_BOM = b"\xef\xbb\xbf"


def read_text(path: str, what: str, hint: str = "") -> str:
    """A UTF-8 text file (a leading BOM, as Notepad writes, is dropped).
    Every failure is a ConfigError naming the file: missing, a directory,
    unreadable, or not UTF-8 -- then with the line, column and byte, and
    what the byte would be in Windows-1252, the usual culprit."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ConfigError(path, f"{what} not found" + (f" ({hint})" if hint else "")) from None
    except IsADirectoryError:
        raise ConfigError(path, f"is a directory, not the {what}") from None
    except PermissionError:
        raise ConfigError(path, f"cannot read the {what}: permission denied (run as its owner, "
                          "e.g. sudo -u smemet ..., or fix its mode)") from None
    except OSError as exc:
        raise ConfigError(path, f"cannot read the {what} ({exc.strerror})") from None
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise not_utf8(path, data, exc) from None


def not_utf8(path: str, data: bytes, exc: UnicodeDecodeError) -> ConfigError:
    line = data.count(b"\n", 0, exc.start) + 1
    line_start = data.rfind(b"\n", 0, exc.start) + 1
    column = len(data[line_start:exc.start].decode("utf-8", "replace")) + 1
    byte = data[exc.start]
    guess = bytes([byte]).decode("cp1252", "replace")
    looks = f" (in Windows-1252 that byte is {guess!r}: the file was saved in a Windows code page)" \
        if guess != "\ufffd" and byte >= 0x80 else ""
    return ConfigError(f"{path}: line {line}, column {column}",
                       f"byte 0x{byte:02x} is not UTF-8{looks}; save the file as UTF-8")


def read_toml(path: str, what: str, hint: str = "") -> dict:
    """A TOML file as a dict (``read_text`` rules); ConfigError otherwise."""
    text = read_text(path, what, hint)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, f"not valid TOML ({exc})") from None


# -- files named by the config --------------------------------------------

def readable_file(path: str, where: str) -> None:
    """Raise ConfigError at ``where`` unless ``path`` is a file this user can read."""
    if not os.path.isfile(path):
        raise ConfigError(where, f"{path} does not exist or is not a file")
    if not os.access(path, os.R_OK):
        raise ConfigError(where, f"{path} is not readable by this user")


def owner_only(path: str, where: str) -> None:
    """Raise ConfigError at ``where`` when group or others may access
    ``path``: a secret others can read is a leaked secret (as for node keys)."""
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(where, f"{path} is {who_may_access(mode)} (mode {stat.S_IMODE(mode):04o}); "
                          f"run chmod 600 {path}")


def who_may_access(mode: int) -> str:
    """"readable by its group", "writable by others", ... for a mode that
    lets more than the owner in."""
    parts = []
    for name, read, write, execute in (("its group", stat.S_IRGRP, stat.S_IWGRP, stat.S_IXGRP),
                                       ("others", stat.S_IROTH, stat.S_IWOTH, stat.S_IXOTH)):
        rights = [word for bit, word in ((read, "readable"), (write, "writable")) if mode & bit]
        if not rights and mode & execute:
            rights = ["accessible"]
        if rights:
            parts.append(f"{' and '.join(rights)} by {name}")
    return ", ".join(parts) or "accessible by others"
