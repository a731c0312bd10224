"""The ``[web]`` table of gateway.toml, validated into ``WebConfig``.

The console is read-only, but what it shows (node names, plant topology,
partners) is not for everyone: bound to a loopback address it may be open;
bound anywhere else it needs at least one user, and the gateway refuses to
start without one.  Passwords are stored hashed (``passwords.py``), inline
in ``[web.users]`` or in a users file of their own (mode 0600).
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field

from ...errors import ConfigError
from ...settings import Table, owner_only, readable_file
from .passwords import USER_NAME, PasswordHash, PasswordHashError, read_users_file

DEFAULT_PORT = 8470
_KEYS = ("bind", "port", "users", "users_file", "tls", "session_ttl", "history", "refresh", "expected_period")
_TLS_KEYS = ("cert", "key")


@dataclass(frozen=True, slots=True)
class WebTls:
    cert: str  # PEM certificate chain
    key: str  # PEM private key, owner-only


@dataclass(frozen=True, slots=True)
class WebConfig:
    bind: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    users: dict[str, PasswordHash] = field(default_factory=dict, repr=False)  # never logged
    tls: WebTls | None = None
    session_ttl: float = 8 * 3600.0  # seconds a login lasts (a shift)
    history: float = 300.0  # seconds of each channel kept for its sparkline
    refresh: float = 1.0  # seconds between live updates
    expected_period: float = 60.0  # a node's frame period until the console has learnt it
    users_file: str | None = None  # where ``users`` came from (for messages)
    where: str = "web"  # the table, for messages ("gateway.toml: web")

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.bind).is_loopback

    @property
    def login_required(self) -> bool:
        """Users configured: always; none: only allowed on loopback (config refuses the rest)."""
        return bool(self.users)


def parse_web(raw: object, where: str, base: str) -> WebConfig | None:
    """Validate ``[web]``; None when ``port = 0`` (the console is off).
    ``where`` names the table (``gateway.toml: web``)."""
    table = Table(raw, where, _KEYS)
    table.finish()
    port = table.integer("port", DEFAULT_PORT, 0, 65535)
    if port == 0:
        return None
    bind = table.address("bind", "127.0.0.1")
    users = _inline_users(table)
    users_file = None
    if table.has("users_file"):
        users_file = table.path("users_file", base)
        for name, hashed in _file_users(users_file, table.at("users_file")).items():
            if name in users:
                raise table.error("users_file", f"user {name!r} is also in [web.users]; keep one of them")
            users[name] = hashed
    if not ipaddress.ip_address(bind).is_loopback and not users:
        raise table.error(
            "bind", f"{bind} is reachable from the network, so the console needs a login: add a user with "
            "`smemet gateway web-user add NAME --config <gateway.toml>` and set users_file, or bind 127.0.0.1",
        )
    return WebConfig(
        bind=bind, port=port, users=users, tls=_tls(table, base),
        session_ttl=table.duration("session_ttl", 8 * 3600.0, 60.0, 30 * 86400.0),
        history=table.duration("history", 300.0, 30.0, 3600.0),
        refresh=table.duration("refresh", 1.0, 0.2, 10.0),
        expected_period=table.duration("expected_period", 60.0, 1.0, 86400.0),
        users_file=users_file, where=where,
    )


def _inline_users(table: Table) -> dict[str, PasswordHash]:
    users = table.get("users", {})
    if not isinstance(users, dict):
        raise table.wrong("users", 'a table of name = "scrypt$..." (smemet gateway web-user add prints one)', users)
    out = {}
    for name, text in users.items():
        at = f"users.{name}"
        if not USER_NAME.match(name):
            raise table.error(at, "user names are 1-64 letters, digits, '.', '_', '@' or '-'")
        if not isinstance(text, str):
            raise table.wrong(at, 'a password hash "scrypt$..."', text)
        try:
            out[name] = PasswordHash.parse(text)
        except PasswordHashError as exc:
            raise table.error(at, str(exc)) from None
    return out


def _file_users(path: str, where: str) -> dict[str, PasswordHash]:
    readable_file(path, where)
    owner_only(path, where)
    try:
        users = read_users_file(path)
    except PasswordHashError as exc:
        raise ConfigError(where, f"{path}: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(where, f"cannot read {path} ({exc})") from None
    if not users:
        raise ConfigError(where, f"{path} holds no user; add one with `smemet gateway web-user add NAME "
                                 f"--users-file {path}`")
    return {name: PasswordHash.parse(text) for name, text in users.items()}


def _tls(table: Table, base: str) -> WebTls | None:
    if not table.has("tls"):
        return None
    tls = table.table("tls", _TLS_KEYS)
    tls.finish()
    cert, key = tls.path("cert", base), tls.path("key", base)
    readable_file(cert, tls.at("cert"))
    readable_file(key, tls.at("key"))
    owner_only(key, tls.at("key"))
    config = WebTls(cert, key)
    try:
        server_context(config)  # a broken PEM fails now, not at the first browser
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(table.at("tls"), f"cannot load the certificate and key ({exc}); both must be PEM and "
                                           "the key must belong to the certificate") from None
    return config


def server_context(tls: WebTls) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert, tls.key)
    return context
