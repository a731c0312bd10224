"""MQTT routes to partners: each ``[[routes]]`` table of gateway.toml is one
``MqttSink`` publishing to one partner's broker (json or senml, QoS 1,
MQTT 5 where the broker speaks it).  See docs/integrator.md for what
partners receive."""

from __future__ import annotations

import asyncio
import contextlib

from .config import RouteConfig, TlsConfig, parse_routes
from .sink import BrokerRefused, MqttSink, explain

SECTION = "routes"
CURSOR_FLUSH_INTERVAL = 0.05  # seconds, run_routes only

__all__ = ["SECTION", "BrokerRefused", "MqttSink", "RouteConfig", "TlsConfig", "explain", "parse", "parse_routes",
           "run_routes", "sinks"]


def parse(value, context) -> list[RouteConfig]:
    return parse_routes(value, context.source, base=context.base, gateway_id=context.gateway_id)


def sinks(config: list[RouteConfig], context) -> list[MqttSink]:
    """One sink per route, sharing the gateway's signing key and ledger
    (made beside the outbox at the first start; GatewayError when it cannot be)."""
    from ...ledger import Ledger

    ledger = Ledger.open(context.outbox.path, getattr(context, "ledger", None), context.gateway_id)
    status = getattr(context, "status", None)  # which channels are processed: binary32 readings printed as such
    return [MqttSink(route, ledger, status) for route in config]


async def run_routes(routes: list[RouteConfig], outbox, stop, registry=None, ledger=None) -> None:
    """Run MQTT sinks for ``routes`` from ``outbox`` until ``stop`` is set (tools,
    tests and benchmarks; the gateway runs every sink kind together).
    ``ledger``: the ``[ledger]`` settings (default: the key beside the outbox)."""
    from ...delivery import make_loops, run_loops
    from .. import SinkContext

    async def store_cursors() -> None:
        # No writer thread here to carry the cursors the loops note (the
        # gateway's does): store them now and then, and at the end.
        try:
            while not stop.is_set():
                await asyncio.sleep(CURSOR_FLUSH_INTERVAL)
                if outbox.cursors_waiting:
                    outbox.flush_cursors()
        finally:
            outbox.flush_cursors()

    gateway_id = routes[0].gateway_id if routes else "smemet"
    built = sinks(routes, SinkContext(gateway_id, outbox, registry, ledger=ledger))
    started = []
    flusher = asyncio.create_task(store_cursors())
    try:
        for sink in built:
            await sink.start()
            started.append(sink)
        await run_loops(make_loops(built, outbox, registry), stop)
    finally:
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        for sink in started:
            await sink.stop()
