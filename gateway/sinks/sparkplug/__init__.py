"""Sparkplug B 3.0 output: the gateway as one edge node (``[sparkplug]`` in
gateway.toml), each sensor node and Modbus virtual node a device, each
channel a metric.  ``session.py`` is the protocol (sans-IO), ``sink.py`` the
connection under the delivery loop, ``schema.py`` the payload's protobuf
schema.  See docs/integrator.md for what hosts receive and what is
guaranteed."""

from __future__ import annotations

import os

from ...status import VERSION
from .config import SparkplugConfig, parse_sparkplug
from .sink import SparkplugSink

SECTION = "sparkplug"

__all__ = ["SECTION", "SparkplugConfig", "SparkplugSink", "parse", "sinks"]


def parse(value, context) -> SparkplugConfig:
    return parse_sparkplug(value, context.where(SECTION), context.base, context.gateway_id)


def sinks(config: SparkplugConfig, context) -> list[SparkplugSink]:
    outbox = getattr(context, "outbox", None)
    state_file = config.state_file
    if state_file is None and getattr(outbox, "path", None):
        name = f"sparkplug-{config.group_id}-{config.edge_node_id}.bdseq".replace(os.sep, "_")
        state_file = os.path.join(os.path.dirname(os.path.abspath(outbox.path)), name)
    return [SparkplugSink(config, outbox, state_file, software=f"SME-MET Edge {VERSION}")]
