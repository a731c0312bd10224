"""MQTT routes to partners: each ``[[routes]]`` table of gateway.toml is one
``MqttSink`` publishing to one partner's broker (json or senml, QoS 1,
MQTT 5 where the broker speaks it).  See docs/integrator.md for what
partners receive."""

from __future__ import annotations

from .config import RouteConfig, TlsConfig, parse_routes
from .sink import BrokerRefused, MqttSink, explain

SECTION = "routes"

__all__ = ["SECTION", "BrokerRefused", "MqttSink", "RouteConfig", "TlsConfig", "explain", "parse", "parse_routes",
           "run_routes", "sinks"]


def parse(value, context) -> list[RouteConfig]:
    return parse_routes(value, context.source, base=context.base, gateway_id=context.gateway_id)


def sinks(config: list[RouteConfig], context) -> list[MqttSink]:
    status = getattr(context, "status", None)  # which channels are processed: binary32 readings printed as such
    return [MqttSink(route, status) for route in config]


async def run_routes(routes: list[RouteConfig], outbox, stop, registry=None) -> None:
    """Run MQTT sinks for ``routes`` from ``outbox`` until ``stop`` is set (tools,
    tests and benchmarks; the gateway runs every sink kind together)."""
    from ...delivery import make_loops, run_loops

    await run_loops(make_loops(sinks(routes, None), outbox, registry), stop)
