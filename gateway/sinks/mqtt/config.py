"""The ``[[routes]]`` tables of gateway.toml, validated into ``RouteConfig``.

Every mistake raises ``ConfigError`` naming the file and key path
(``gateway.toml: routes[0].broker``) and saying what would be valid, so the
gateway refuses to start with one clear line instead of failing later.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ...agreements import Agreement, parse_agreement
from ...errors import ConfigError
from ...settings import Table, owner_only, read_text, readable_file

FORMATS = ("json", "senml")
KINDS = ("data", "status")
MQTT_VERSIONS = ("auto", "5", "3.1.1")

_KEYS = (
    "name", "broker", "username", "password", "password_file", "tls", "topic_prefix",
    "include", "exclude", "format", "kinds", "mqtt_version", "message_expiry",
    "client_id", "keepalive", "max_in_flight", "gateway_id", "agreement",
)
_TLS_KEYS = ("ca", "cert", "key")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class TlsConfig:
    ca: str | None = None  # None: the system's trusted CAs
    cert: str | None = None  # client certificate (PEM), with ``key``
    key: str | None = None


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """One partner: where to publish, as whom, what, and how."""

    name: str
    host: str
    port: int
    topic_prefix: str
    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    format: str = "json"
    kinds: tuple[str, ...] = ("data",)
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never logged
    tls: TlsConfig | None = None
    mqtt_version: str = "auto"
    message_expiry: int | None = None  # seconds (MQTT 5 only); None: never expires
    client_id: str = ""
    keepalive: int = 30
    max_in_flight: int = 100
    gateway_id: str = ""
    agreement: Agreement | None = None  # its channels fill include/exclude/kinds

    @property
    def checkpoint_topic(self) -> str:
        return f"{self.topic_prefix}/checkpoint"

    @property
    def key_topic(self) -> str:
        return f"{self.topic_prefix}/gateway-key"

    @property
    def url(self) -> str:
        scheme = "mqtts" if self.tls is not None else "mqtt"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def status_topic(self) -> str:
        return f"{self.topic_prefix}/status"


def parse_routes(tables: list[dict], where: str, base: str | None = None,
                 gateway_id: str | None = None) -> list[RouteConfig]:
    """Validate the ``[[routes]]`` tables; ``where`` names the file, ``base``
    is the directory relative file paths start from (the config file's; by
    default the current one), ``gateway_id`` the ``[gateway] id`` a route
    names itself by unless it sets its own."""
    if not isinstance(tables, list):
        raise ConfigError(f"{where}: routes", "must be an array of tables ([[routes]])")
    base = base if base is not None else os.getcwd()
    routes = [_parse_route(table, f"{where}: routes[{i}]", base, gateway_id) for i, table in enumerate(tables)]
    names: dict[str, int] = {}
    clients: dict[tuple[str, int, str], int] = {}
    for i, route in enumerate(routes):
        if route.name in names:
            raise ConfigError(
                f"{where}: routes[{i}].name",
                f"{route.name!r} is already the name of routes[{names[route.name]}]; "
                "each route needs its own name (it keys the route's delivery cursor)",
            )
        names[route.name] = i
        key = (route.host, route.port, route.client_id)
        if key in clients:
            raise ConfigError(
                f"{where}: routes[{i}].client_id",
                f"{route.client_id!r} is also used by routes[{clients[key]}] on the same broker; "
                "two connections with one client id throw each other off",
            )
        clients[key] = i
    return routes


def _parse_route(raw: object, where: str, base: str, default_gateway_id: str | None) -> RouteConfig:
    if not isinstance(raw, dict):
        raise ConfigError(where, "must be a table with name, broker, topic_prefix and include (or an agreement)")
    table = Table(raw, where, _KEYS)
    table.finish()
    name = table.text("name")
    if not _NAME.match(name):
        raise table.error("name", f"{name!r} is not a valid route name: use 1-64 letters, digits, '.', '_' or '-'")
    host, port, secure = _parse_broker(table.text("broker"), table.at("broker"))
    tls = _parse_tls(table.get("tls"), secure, table.at("tls"), base)
    username = table.text("username", None)
    password = _parse_password(table, username, base)
    prefix = _parse_prefix(table.text("topic_prefix", "smemet"), table.at("topic_prefix"))
    agreement = None
    if table.has("agreement"):
        agreement = parse_agreement(table.get("agreement"), table.at("agreement"))
        for key in ("include", "exclude", "kinds"):
            if table.has(key):
                raise table.error(key, f"is set beside an agreement, whose terms say which channels travel; move it "
                                       f"into the agreement ({table.at('agreement')}."
                                       f"{'fields' if key == 'kinds' else key})")
        include, exclude, kinds = agreement.include, agreement.exclude, agreement.kinds
    else:
        include = _parse_patterns(table, "include", required=True)
        exclude = _parse_patterns(table, "exclude", required=False)
        kinds = table.get("kinds", ["data"])
        if not isinstance(kinds, list) or not kinds or any(k not in KINDS for k in kinds):
            raise table.wrong("kinds", 'a non-empty array of "data" and/or "status"', kinds)
        kinds = tuple(dict.fromkeys(kinds))
    fmt = table.choice("format", FORMATS, "json")
    version = table.get("mqtt_version", "auto")
    if version == 5 and not isinstance(version, bool):
        version = "5"  # a bare TOML integer is a natural way to write it
    if version not in MQTT_VERSIONS:
        raise table.wrong("mqtt_version", 'one of "auto", "5" or "3.1.1"', version)
    expiry = table.integer("message_expiry", 0)
    if not 0 <= expiry <= 0xFFFFFFFF:
        raise table.error("message_expiry", f"must be seconds from 0 (never expires) to 4294967295, not {expiry}")
    if expiry and version == "3.1.1":
        raise table.error("message_expiry", "needs MQTT 5; set mqtt_version to \"auto\" or \"5\"")
    keepalive = table.integer("keepalive", 30, 5, 65535)
    in_flight = table.integer("max_in_flight", 100, 1, 65535)
    gateway_id = table.text("gateway_id", "", allow_empty=True) or default_gateway_id or socket.gethostname()
    client_id = table.text("client_id", "", allow_empty=True) or f"smemet-{gateway_id}-{name}"
    if len(client_id.encode()) > 65535 or "\0" in client_id:
        raise table.error("client_id", "must be a UTF-8 string without NUL, up to 65535 bytes")
    return RouteConfig(
        name=name, host=host, port=port, topic_prefix=prefix, include=include,
        exclude=exclude, format=fmt, kinds=kinds, username=username, password=password,
        tls=tls, mqtt_version=version, message_expiry=expiry or None, client_id=client_id,
        keepalive=keepalive, max_in_flight=in_flight, gateway_id=gateway_id, agreement=agreement,
    )


def _parse_broker(url: str, where: str) -> tuple[str, int, bool]:
    hint = "write it as mqtt://host:port or mqtts://host:port"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(where, f"{url!r} is not a valid URL ({exc}); {hint}") from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ConfigError(where, f"{url!r} has scheme {parts.scheme!r}; {hint}")
    if not parts.hostname:
        raise ConfigError(where, f"{url!r} has no host; {hint}")
    if parts.username or parts.password:
        raise ConfigError(where, "must not carry credentials; use the route's username and password_file")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(where, f"{url!r} has a path or query, which MQTT does not use; {hint}")
    secure = parts.scheme == "mqtts"
    return parts.hostname, port or (8883 if secure else 1883), secure


def _parse_tls(raw: object, secure: bool, where: str, base: str) -> TlsConfig | None:
    if raw is None:
        return TlsConfig() if secure else None
    if not isinstance(raw, dict):
        raise ConfigError(where, "must be a table with ca, cert and key (file paths)")
    if not secure:
        raise ConfigError(where, "is set but the broker URL is mqtt://; use mqtts:// for TLS")
    table = Table(raw, where, _TLS_KEYS)
    table.finish()
    paths = {}
    for key in _TLS_KEYS:
        if table.has(key):
            paths[key] = table.path(key, base)
            _readable_file(paths[key], table.at(key))
    if ("cert" in paths) != ("key" in paths):
        raise ConfigError(where, "a client certificate needs both cert and key")
    if "key" in paths:
        _owner_only(paths["key"], f"{where}.key")
    config = TlsConfig(ca=paths.get("ca"), cert=paths.get("cert"), key=paths.get("key"))
    try:
        tls_context(config)  # unreadable PEM files fail now, not at the first connection
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(where, f"cannot load the TLS files ({exc}); check that ca, cert and key are PEM "
                          "and that key belongs to cert") from None
    return config


def tls_context(config: TlsConfig) -> ssl.SSLContext:
    """A client context verifying the broker (certificate and host name)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=config.ca)
    if config.cert:
        context.load_cert_chain(config.cert, config.key)
    return context


def _parse_password(table: Table, username: str | None, base: str) -> str | None:
    if table.has("password") and table.has("password_file"):
        raise table.error("password", "set password or password_file, not both")
    if table.has("password_file"):
        path = table.path("password_file", base)
        _readable_file(path, table.at("password_file"))
        _owner_only(path, table.at("password_file"))
        password = read_text(path, "password file").strip("\r\n")
        if not password:
            raise table.error("password_file", f"{path} is empty")
    else:
        password = table.text("password", None)
    if password is not None and username is None:
        raise table.error("username", "is missing; a password needs a username")
    return password


_readable_file = readable_file
_owner_only = owner_only  # a secret others can read is a leaked secret: refuse, as for node keys


def _parse_prefix(prefix: str, where: str) -> str:
    bad = (
        not prefix or prefix.startswith(("/", "$")) or prefix.endswith("/")
        or "//" in prefix or any(c in prefix for c in "+#\0")
    )
    if bad:
        raise ConfigError(
            where,
            f"{prefix!r} is not a valid topic prefix: use levels like \"plant1/partner-a\", "
            "without wildcards (+ #), empty levels, or a leading $ or /",
        )
    return prefix


def _parse_patterns(table: Table, key: str, required: bool) -> tuple[str, ...]:
    if not table.has(key):
        if required:
            raise table.error(key, "is missing; list the node/channel patterns this partner may receive, "
                                   "e.g. [\"furnace-*/tc*\"] or [\"*\"] for everything")
        return ()
    patterns = table.strings(key, what='node/channel patterns such as ["furnace-*/tc*"]')
    if required and not patterns:
        raise table.error(key, "is empty, so the route would deliver nothing")
    return patterns
