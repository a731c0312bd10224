"""The gateway's outputs, each a sink (``delivery/sink.py``) under the one
delivery loop.

A kind of sink is a module listed in ``KINDS`` that offers:

* ``SECTION``: the gateway.toml key it is configured under (``routes``,
  ``web``, ...);
* ``parse(value, context) -> config``: validate that section (raise
  ``ConfigError`` naming ``context.where(...)`` and what would be valid);
* ``sinks(config, context) -> list[Sink]``: the sinks to run.

Adding an output is one module here, one line in ``KINDS`` and its section
in docs/gateway.toml; the loop, cursors, lag, backoff and metrics come with
the interface (docs/architecture.md).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from prometheus_client import CollectorRegistry

KINDS = (
    "smemet.gateway.sinks.mqtt",
    "smemet.gateway.sinks.sparkplug",
    "smemet.gateway.sinks.opcua",
    "smemet.gateway.sinks.web",
)


@dataclass(frozen=True, slots=True)
class ParseContext:
    """What a sink's config parser may need besides its own section."""

    source: str  # the config file, for messages
    base: str  # its directory: relative paths are relative to it
    gateway_id: str

    def where(self, key: str) -> str:
        return f"{self.source}: {key}"


@dataclass(frozen=True, slots=True)
class SinkContext:
    """What a sink may use when it is built."""

    gateway_id: str
    outbox: object  # the Outbox (read-only use: history, stats)
    registry: CollectorRegistry | None = None
    status: object = None  # the GatewayStatus (status.py): nodes, sinks, storage, for sinks that show them
    ledger: object = None  # the [ledger] settings (ledger.LedgerConfig), for sinks that sign what they deliver


def kinds() -> list[ModuleType]:
    return [importlib.import_module(name) for name in KINDS]


def sections() -> tuple[str, ...]:
    return tuple(kind.SECTION for kind in kinds())
