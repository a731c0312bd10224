"""OPC UA users: a TOML file of user names and scrypt password hashes,
readable only by the gateway user (mode 0600), managed with
``smemet gateway opcua-user add|remove|list``::

    # OPC UA users of the SME-MET gateway (smemet gateway opcua-user add NAME)
    [users]
    mes = "scrypt$16384$8$1$<salt, base64>$<hash, base64>"

The file is read again when it changes, so a user added or removed takes
effect at the next login, without a restart.  Passwords are never stored or
logged; a wrong one is refused (BadUserAccessDenied) and logged with the
user name only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
import tomllib

from ...errors import ConfigError

log = logging.getLogger("smemet.gateway.sinks.opcua")

_N, _R, _P = 2**14, 8, 1  # scrypt: ~16 MiB and tens of ms per check, so guessing is slow
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_HASH = re.compile(r"^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$")
_HEADER = "# OPC UA users of the SME-MET gateway: smemet gateway opcua-user add|remove NAME --config gateway.toml\n"


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(stored: str, password: str) -> bool:
    match = _HASH.match(stored)
    if match is None:
        return False
    n, r, p = (int(match.group(i)) for i in (1, 2, 3))
    salt, expected = base64.b64decode(match.group(4)), base64.b64decode(match.group(5))
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(expected),
                            maxmem=256 * n * r + 2**20)
    return hmac.compare_digest(digest, expected)


def check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a valid user name: 1-64 letters, digits, '.', '_', '@' or '-'")


def load_users(path: str, where: str) -> dict[str, str]:
    """user name -> stored hash; raises ConfigError (``where`` names the key)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ConfigError(where, f"cannot read {path} ({exc.strerror})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(where, f"{path} is accessible by group or others (mode {stat.S_IMODE(mode):o}); "
                                 f"run chmod 600 {path}")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(where, f"cannot read {path} ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(where, f"{path} is not valid TOML ({exc})") from None
    users = data.get("users", {})
    if set(data) - {"users"} or not isinstance(users, dict):
        raise ConfigError(where, f"{path} must hold one [users] table of name = \"scrypt$...\" entries")
    for name, stored in users.items():
        if not isinstance(stored, str) or not _HASH.match(stored) or not _NAME.match(name):
            raise ConfigError(where, f"{path}: user {name!r} has no valid scrypt hash; set it again with "
                                     f"smemet gateway opcua-user add {name}")
    return dict(users)


def save_users(path: str, users: dict[str, str]) -> None:
    """Write the file atomically, mode 0600."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(_HEADER + "[users]\n")
        for name in sorted(users):
            f.write(f'"{name}" = "{users[name]}"\n')
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


class UserFile:
    """asyncua's UserManager over the users file (and anonymous access when
    the configuration allows it).  Every user may only read: the
    permission ruleset (security.py) and the read-only attribute service
    refuse the rest."""

    def __init__(self, path: str | None, allow_anonymous: bool, where: str) -> None:
        self.path = path
        self.allow_anonymous = allow_anonymous
        self.where = where
        self._users: dict[str, str] = {}
        self._stamp: tuple[float, int] | None = None
        self.refused = 0
        if path is not None:
            self._reload()

    def _reload(self) -> None:
        assert self.path is not None
        info = os.stat(self.path)
        stamp = (info.st_mtime, info.st_size)
        if stamp != self._stamp:
            self._users = load_users(self.path, self.where)
            self._stamp = stamp

    def get_user(self, iserver, username: str | None = None, password: str | None = None, certificate=None):
        from asyncua.crypto.permission_rules import User, UserRole  # the CLI uses this module without asyncua

        if username is None:
            if self.allow_anonymous:
                return User(role=UserRole.User, name=None)
            self.refused += 1
            log.warning("opcua: anonymous session refused (set [opcua] allow_anonymous = true to allow it)")
            return None
        if self.path is not None:
            try:
                self._reload()
            except (OSError, ConfigError) as exc:  # keep the users we have; say why once per change
                log.error("opcua: users file not reloaded, the previous users stay: %s", exc)
        stored = self._users.get(username)
        if stored is not None and password is not None and verify_password(stored, password):
            return User(role=UserRole.User, name=username)
        self.refused += 1
        log.warning("opcua: login refused for user %r (unknown user or wrong password)", username)
        return None
