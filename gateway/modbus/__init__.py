"""Modbus for the gateway: instruments in, PLC/SCADA out (pymodbus).

* ``parse_modbus(table, where) -> ModbusConfig`` validates the ``[modbus]``
  table of gateway.toml (``config.py``).
* ``run_pollers(config, sink, stop, registry=None, states=None)`` polls Modbus
  TCP and RTU instruments and submits their readings as virtual nodes to a
  ``ReadingSink`` (``poller.py``, ``links.py``, ``codec.py``); ``states``
  receives each device's live ``DeviceState`` (polled or failing, last error).
* ``ModbusServerSink(spec)`` serves the latest cleaned values to PLC/SCADA
  systems over Modbus TCP, fed by the delivery loop like every output;
  ``run_server(config, latest, stop)`` serves a register map from any
  ``latest`` look-up (``server.py``).

Server register map, per channel ``i`` of ``[modbus.server] channels``, at
``base = 4 * i`` in both the input and the holding registers: float32 value
(base, base + 1; high word first), status (base + 2; 0 good, 1 uncertain,
2 bad, 3 no data), age in seconds (base + 3; saturating at 65535).  Details
and a configuration example: docs/modbus.md.
"""

from .config import DeviceSpec, ModbusConfig, RegisterSpec, ServerChannel, ServerSpec, parse_modbus
from .poller import DeviceState, run_pollers
from .server import ModbusServer, ModbusServerSink, run_server

__all__ = [
    "DeviceSpec",
    "DeviceState",
    "ModbusConfig",
    "RegisterSpec",
    "ServerChannel",
    "ServerSpec",
    "parse_modbus",
    "run_pollers",
    "run_server",
    "ModbusServer",
    "ModbusServerSink",
]
