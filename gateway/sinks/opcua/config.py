"""The ``[opcua]`` section of gateway.toml, validated into ``OpcuaConfig``.

Every mistake raises ``ConfigError`` naming the key path
(``gateway.toml: opcua.port``) through ``settings.Table``.  Files are
relative to the config file.  Security follows what plants expect of an
OPC UA server: SignAndEncrypt with username/password users; the None policy
and anonymous sessions only on a loopback address, or when the operator
asks for them in so many words.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass

from ...settings import Table

DEFAULT_PORT = 4840
NAMESPACE_URI = "urn:smemet-edge:measurements"  # the namespace of every node the gateway adds (docs/integrator.md)

# Message security policies a server may offer (always in mode SignAndEncrypt,
# except "None").  Basic128Rsa15 and Basic256 are deprecated by OPC UA 1.04.
POLICIES = ("Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss", "None")
SECURE_POLICIES = POLICIES[:3]

_KEYS = (
    "bind", "port", "hostname", "certificate", "private_key", "pki", "users_file", "security_policies",
    "allow_anonymous", "include", "exclude", "history", "stale_periods", "stale_min", "max_sessions",
)


@dataclass(frozen=True, slots=True)
class OpcuaConfig:
    bind: str
    port: int
    hostname: str  # in the endpoint URL clients are told about
    certificate: str  # PEM; made with ``private_key`` at first start when absent
    private_key: str  # PEM, mode 0600
    pki: str  # directory: trusted/ and rejected/ client certificates
    users_file: str | None  # TOML of username -> scrypt hash (mode 0600); None: no user logins
    security_policies: tuple[str, ...]
    allow_anonymous: bool
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    history: float = 3600.0  # seconds of processed measurements the outbox keeps for HistoryRead
    stale_periods: float = 3.0  # a node silent this many of its periods is stale...
    stale_min: float = 10.0  # ...and never sooner than this (seconds)
    max_sessions: int = 50
    gateway_id: str = ""

    @property
    def endpoint(self) -> str:
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"opc.tcp://{host}:{self.port}"

    @property
    def application_uri(self) -> str:
        return f"urn:smemet-edge:gateway:{self.gateway_id}"

    @property
    def loopback(self) -> bool:
        return is_loopback(self.bind)


def is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


def parse_opcua(raw: object, where: str, base: str, gateway_id: str) -> OpcuaConfig | None:
    """Validate ``[opcua]``; None when it is switched off (``port = 0``)."""
    table = Table(raw, where, _KEYS)
    table.finish()
    port = table.integer("port", DEFAULT_PORT, 0, 65535)
    if port == 0:
        return None
    bind = table.address("bind", "127.0.0.1")
    loopback = is_loopback(bind)
    default_host = bind if loopback or not ipaddress.ip_address(bind).is_unspecified else socket.gethostname()
    hostname = table.text("hostname", default_host)
    certificate = table.path("certificate", base, "opcua/server-cert.pem")
    private_key = table.path("private_key", base, "opcua/server-key.pem")
    pki = table.path("pki", base, "opcua/pki")
    users_file = table.path("users_file", base, None)
    if users_file is not None and not os.path.isfile(users_file):
        raise table.error("users_file", f"{users_file} does not exist; create it with "
                                        f"smemet gateway opcua-user add NAME --config <gateway.toml>")
    default_policies = list(SECURE_POLICIES) + (["None"] if loopback else [])
    policies = table.strings("security_policies", tuple(default_policies), non_empty=True,
                             what="security policies such as [\"Basic256Sha256\"]")
    for i, policy in enumerate(policies):
        if policy not in POLICIES:
            raise table.error(f"security_policies[{i}]",
                              f"{policy!r} is not a policy this server offers; valid: {', '.join(POLICIES)}")
    policies = tuple(dict.fromkeys(policies))
    # Anonymous sessions are read access for anyone who can reach the port:
    # fine on loopback (the operator's own tools), an explicit choice otherwise.
    allow_anonymous = table.boolean("allow_anonymous", loopback)
    if users_file is None and not allow_anonymous:
        raise table.error("users_file", "is missing: without users and without allow_anonymous = true nobody could "
                                        "log in; create users with smemet gateway opcua-user add NAME")
    include = table.strings("include", ("*",), non_empty=True, what='node/channel patterns such as ["furnace-*/*"]')
    exclude = table.strings("exclude", (), what='node/channel patterns such as ["test-*/*"]')
    history = table.duration("history", 3600.0, 0.0, 366 * 86400.0)
    stale_periods = table.number("stale_periods", 3.0, above=1.0)
    stale_min = table.duration("stale_min", 10.0, 0.0)
    max_sessions = table.integer("max_sessions", 50, 1, 10_000)
    return OpcuaConfig(
        bind=bind, port=port, hostname=hostname, certificate=certificate, private_key=private_key, pki=pki,
        users_file=users_file, security_policies=policies, allow_anonymous=allow_anonymous, include=include,
        exclude=exclude, history=history, stale_periods=stale_periods, stale_min=stale_min,
        max_sessions=max_sessions, gateway_id=gateway_id,
    )
