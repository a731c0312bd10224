"""The ``[sparkplug]`` table of gateway.toml, validated into ``SparkplugConfig``.

The broker, credentials and TLS keys are read exactly as a ``[[routes]]``
table's (the helpers are the MQTT sink's), so an operator writes them one
way; the rest is what Sparkplug adds: the edge node's ``group_id`` and
``edge_node_id``, an optional ``primary_host_id``, when a silent node counts
as dead.  Every mistake raises ``ConfigError`` naming the key path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ...settings import Table
from ..mqtt.config import MQTT_VERSIONS, TlsConfig
from ..mqtt.config import _parse_broker as parse_broker
from ..mqtt.config import _parse_password as parse_password
from ..mqtt.config import _parse_patterns as parse_patterns
from ..mqtt.config import _parse_tls as parse_tls

KINDS = ("data", "status")

_KEYS = (
    "broker", "username", "password", "password_file", "tls", "group_id", "edge_node_id", "primary_host_id",
    "device_timeout", "include", "exclude", "kinds", "mqtt_version", "client_id", "keepalive", "max_in_flight",
    "confirm_topic", "state_file",
)
# Sparkplug 3.0 §4.1: group, edge node and device ids are UTF-8 without + / #.
_RESERVED = re.compile(r"[+/#\0]")
_CONFIRM_BAD = re.compile(r"[+#\0]")


@dataclass(frozen=True, slots=True)
class SparkplugConfig:
    """The gateway as one Sparkplug B edge node on one broker."""

    host: str
    port: int
    group_id: str
    edge_node_id: str
    primary_host_id: str | None = None
    device_timeout: float = 600.0  # s without a frame from a node before its DDEATH; 0: never
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ("data",)
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never logged
    tls: TlsConfig | None = None
    mqtt_version: str = "auto"
    client_id: str = ""
    keepalive: int = 30
    max_in_flight: int = 16  # deliveries whose confirming QoS 1 PUBACK is awaited at once
    confirm_topic: str = ""
    state_file: str | None = None  # where bdSeq survives restarts; None: beside the outbox
    gateway_id: str = ""

    @property
    def name(self) -> str:
        """The sink's name: it keys the durable cursor.  A ':' cannot occur
        in a route name, so it never collides with one."""
        return f"sparkplug:{self.group_id}/{self.edge_node_id}"

    @property
    def url(self) -> str:
        scheme = "mqtts" if self.tls is not None else "mqtt"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


def parse_sparkplug(raw: object, where: str, base: str, gateway_id: str) -> SparkplugConfig:
    table = Table(raw, where, _KEYS)
    table.finish()
    if not table.has("broker"):
        raise table.missing("broker", "the broker URL (mqtt://host:port or mqtts://host:port)")
    host, port, secure = parse_broker(table.text("broker"), table.at("broker"))
    tls = parse_tls(table.get("tls"), secure, table.at("tls"), base)
    username = table.text("username", None)
    password = parse_password(table, username, base)
    group_id = _sparkplug_id(table, "group_id", None)
    edge_node_id = _sparkplug_id(table, "edge_node_id", gateway_id)
    primary = _sparkplug_id(table, "primary_host_id", "") or None
    timeout = table.duration("device_timeout", 600.0, 0.0, 365 * 86400.0)
    include = parse_patterns(table, "include", required=False) or ("*",)
    exclude = parse_patterns(table, "exclude", required=False)
    kinds = table.get("kinds", ["data"])
    if not isinstance(kinds, list) or not kinds or any(k not in KINDS for k in kinds):
        raise table.wrong("kinds", 'a non-empty array of "data" and/or "status"', kinds)
    version = table.get("mqtt_version", "auto")
    if version == 5 and not isinstance(version, bool):
        version = "5"
    if version not in MQTT_VERSIONS:
        raise table.wrong("mqtt_version", 'one of "auto", "5" or "3.1.1"', version)
    keepalive = table.integer("keepalive", 30, 5, 65535)
    in_flight = table.integer("max_in_flight", 16, 1, 1000)
    client_id = table.text("client_id", "", allow_empty=True) or f"smemet-{gateway_id}-sparkplug-{edge_node_id}"
    if len(client_id.encode()) > 65535 or "\0" in client_id:
        raise table.error("client_id", "must be a UTF-8 string without NUL, up to 65535 bytes")
    confirm = table.text("confirm_topic", "", allow_empty=True) or f"smemet/{edge_node_id}/sparkplug-confirm"
    if _CONFIRM_BAD.search(confirm) or confirm.startswith(("spBv1.0/", "$")):
        raise table.error("confirm_topic", f"{confirm!r} must be a plain topic outside spBv1.0/ "
                                           "(no wildcards, no leading $): it carries the QoS 1 confirmations")
    state_file = table.path("state_file", base, None)
    return SparkplugConfig(
        host=host, port=port, group_id=group_id, edge_node_id=edge_node_id, primary_host_id=primary,
        device_timeout=timeout, include=include, exclude=exclude, kinds=tuple(dict.fromkeys(kinds)),
        username=username, password=password, tls=tls, mqtt_version=version, client_id=client_id,
        keepalive=keepalive, max_in_flight=in_flight, confirm_topic=confirm, state_file=state_file,
        gateway_id=gateway_id,
    )


def _sparkplug_id(table: Table, key: str, default: str | None) -> str:
    if default is None and not table.has(key):
        raise table.missing(key, "a Sparkplug id (UTF-8, without + / #)")
    value = table.text(key, default, allow_empty=default == "")
    if _RESERVED.search(value):
        raise table.error(key, f"{value!r} contains + / # or NUL, which Sparkplug reserves; use e.g. "
                               f"{_RESERVED.sub('-', value)!r}")
    return value
