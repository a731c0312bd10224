"""OPC UA server for a plant's DCS, MES and historians (asyncua): the
latest value of every channel with its source timestamp and a status code
mapped from its quality, engineering units and ranges, node diagnostics,
and raw history from what the outbox holds.  Configured by ``[opcua]``
(docs/gateway.toml); what clients see: docs/integrator.md "OPC UA".

Modules: ``config`` (the section), ``sink`` (the server as a sink),
``space`` (the address space), ``statuscodes`` (quality -> StatusCode),
``units`` (SenML -> UNECE), ``history`` (HistoryRead from the outbox),
``security`` (read-only access, the client trust list), ``users`` (the
users file), ``certs`` (the server certificate).
"""

from __future__ import annotations

from .config import NAMESPACE_URI, OpcuaConfig, parse_opcua

SECTION = "opcua"

__all__ = ["NAMESPACE_URI", "SECTION", "OpcuaConfig", "parse", "sinks"]


def parse(value, context) -> OpcuaConfig | None:
    return parse_opcua(value, context.where("opcua"), context.base, context.gateway_id)


def sinks(config: OpcuaConfig | None, context) -> list[OpcuaSink]:
    if config is None:
        return []
    from .sink import OpcuaSink  # asyncua is imported only by a gateway that serves OPC UA

    return [OpcuaSink(config, context.outbox, context.status)]
