"""The ``[modbus]`` table of gateway.toml, validated into ``ModbusConfig``.

Every mistake raises ``ConfigError`` naming the file and key path
(``gateway.toml: modbus.devices[0].registers[2].type``) and saying what would
be valid, so the gateway refuses to start with one clear line.  See
docs/modbus.md for a complete example.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import ConfigError

TABLES = ("holding", "input")
# register type -> (number of 16-bit registers, struct format character)
TYPES = {
    "int16": (1, "h"),
    "uint16": (1, "H"),
    "int32": (2, "i"),
    "uint32": (2, "I"),
    "float32": (2, "f"),
    "float64": (4, "d"),
}
ORDERS = ("big", "little")
PARITIES = ("N", "E", "O")
MAX_READ = 125  # registers in one read request (Modbus application protocol, 6.3/6.4)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")  # a node id: no "/"
_CHANNEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")  # SenML name characters
_DEVICE_KEYS = (
    "name", "transport", "host", "port", "serial_port", "baudrate", "parity", "stopbits",
    "bytesize", "unit", "period", "timeout", "retries", "backoff", "max_registers", "merge_gap",
    "registers",
)
_REGISTER_KEYS = (
    "channel", "table", "address", "type", "byte_order", "word_order", "scale", "offset", "unit",
)
_SERVER_KEYS = ("enabled", "host", "port", "unit", "read_only", "channels")


@dataclass(frozen=True, slots=True)
class RegisterSpec:
    """One channel of an instrument: where it lives and how to decode it."""

    channel: str
    table: str  # "holding" or "input"
    address: int  # 0-based protocol address
    type: str = "uint16"
    byte_order: str = "big"  # of the two bytes inside each register
    word_order: str = "big"  # of the registers of a 32/64-bit value ("big": high word first)
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None  # SenML unit

    @property
    def count(self) -> int:
        return TYPES[self.type][0]


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One polled instrument; ``name`` is the virtual node id of its readings."""

    name: str
    transport: str  # "tcp" or "rtu"
    registers: tuple[RegisterSpec, ...]
    host: str = ""
    port: int = 502
    serial_port: str = ""
    baudrate: int = 19200
    parity: str = "E"  # Modbus over serial line, 2.5.1: even parity is the default
    stopbits: int = 1
    bytesize: int = 8
    unit: int = 1
    period: float = 1.0  # seconds between polls
    timeout: float = 1.0  # seconds per request
    retries: int = 2  # extra attempts after a timeout or a garbled frame
    backoff: float = 0.1  # seconds before the first retry; doubles each time
    max_registers: int = MAX_READ  # largest read the instrument accepts
    merge_gap: int = 0  # unused registers a merged read may span

    @property
    def bus(self) -> str:
        """Devices with the same bus share one client (and, for RTU, take turns)."""
        if self.transport == "rtu":
            return f"rtu:{self.serial_port}"
        return f"tcp:{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServerChannel:
    key: str  # "node/channel"
    writable: bool = False


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """The Modbus TCP server that PLC/SCADA systems read (map: docs/modbus.md)."""

    channels: tuple[ServerChannel, ...]
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 5020
    unit: int = 1  # 0: answer every unit id
    read_only: bool = True


@dataclass(frozen=True, slots=True)
class ModbusConfig:
    devices: tuple[DeviceSpec, ...] = ()
    server: ServerSpec | None = None


def parse_modbus(table: dict, where: str) -> ModbusConfig:
    """Validate the ``[modbus]`` table; ``where`` names the file."""
    here = f"{where}: modbus"
    if not isinstance(table, dict):
        raise ConfigError(here, "must be a table ([modbus])")
    _no_unknown(table, ("devices", "server"), here)
    devices_raw = table.get("devices", [])
    if not isinstance(devices_raw, list):
        raise ConfigError(f"{here}.devices", "must be an array of tables ([[modbus.devices]])")
    devices = tuple(_parse_device(d, f"{here}.devices[{i}]") for i, d in enumerate(devices_raw))
    seen: dict[str, int] = {}
    for i, device in enumerate(devices):
        if device.name in seen:
            raise ConfigError(
                f"{here}.devices[{i}].name",
                f"{device.name!r} is already the name of devices[{seen[device.name]}]; "
                "each device is a virtual node and needs its own name",
            )
        seen[device.name] = i
    _check_shared_buses(devices, here)
    server = None
    if "server" in table:
        server = _parse_server(table["server"], f"{here}.server")
    return ModbusConfig(devices=devices, server=server)


def _parse_device(table: object, where: str) -> DeviceSpec:
    if not isinstance(table, dict):
        raise ConfigError(where, "must be a table ([[modbus.devices]])")
    _no_unknown(table, _DEVICE_KEYS, where)
    name = _require(table, "name", str, where)
    if not _NAME.match(name):
        raise ConfigError(
            f"{where}.name",
            f"{name!r} is not a valid node id: 1-64 letters, digits, '.', '_', ':' or '-' "
            "(no '/'), starting with a letter or digit",
        )
    transport = _optional(table, "transport", str, where, "tcp")
    if transport not in ("tcp", "rtu"):
        raise ConfigError(f"{where}.transport", f"{transport!r} is not one of 'tcp', 'rtu'")
    fields: dict = {"name": name, "transport": transport}
    if transport == "tcp":
        for key in ("serial_port", "baudrate", "parity", "stopbits", "bytesize"):
            if key in table:
                raise ConfigError(f"{where}.{key}", "applies to transport = 'rtu' only")
        host = _require(table, "host", str, where)
        if not host.strip():
            raise ConfigError(f"{where}.host", "must name the instrument (IP address or host name)")
        fields["host"] = host
        fields["port"] = _int_in(table, "port", 1, 65535, where, 502)
    else:
        for key in ("host", "port"):
            if key in table:
                raise ConfigError(f"{where}.{key}", "applies to transport = 'tcp' only")
        serial_port = _require(table, "serial_port", str, where)
        if not serial_port.strip():
            raise ConfigError(f"{where}.serial_port", "must be a serial device such as '/dev/ttyUSB0'")
        fields["serial_port"] = serial_port
        fields["baudrate"] = _int_in(table, "baudrate", 300, 4_000_000, where, 19200)
        parity = _optional(table, "parity", str, where, "E")
        if parity not in PARITIES:
            raise ConfigError(f"{where}.parity", f"{parity!r} is not one of 'N', 'E', 'O'")
        fields["parity"] = parity
        fields["stopbits"] = _int_in(table, "stopbits", 1, 2, where, 1)
        fields["bytesize"] = _int_in(table, "bytesize", 7, 8, where, 8)
    # RTU unit 0 is broadcast: nobody answers a broadcast read.
    fields["unit"] = _int_in(table, "unit", 0 if transport == "tcp" else 1, 255 if transport == "tcp" else 247,
                             where, 1)
    fields["period"] = _seconds(table, "period", 0.001, 86400.0, where, 1.0)
    fields["timeout"] = _seconds(table, "timeout", 0.001, 60.0, where, 1.0)
    fields["retries"] = _int_in(table, "retries", 0, 10, where, 2)
    fields["backoff"] = _seconds(table, "backoff", 0.0, 60.0, where, 0.1)
    fields["max_registers"] = _int_in(table, "max_registers", 1, MAX_READ, where, MAX_READ)
    fields["merge_gap"] = _int_in(table, "merge_gap", 0, MAX_READ, where, 0)
    regs_raw = table.get("registers")
    if not isinstance(regs_raw, list) or not regs_raw:
        raise ConfigError(
            f"{where}.registers",
            "must be a non-empty array of tables ([[modbus.devices.registers]]), one per channel",
        )
    registers = tuple(_parse_register(r, f"{where}.registers[{i}]") for i, r in enumerate(regs_raw))
    channels: dict[str, int] = {}
    for i, reg in enumerate(registers):
        if reg.channel in channels:
            raise ConfigError(
                f"{where}.registers[{i}].channel",
                f"{reg.channel!r} is already used by registers[{channels[reg.channel]}]",
            )
        channels[reg.channel] = i
        if reg.count > fields["max_registers"]:
            raise ConfigError(
                f"{where}.registers[{i}].type",
                f"{reg.type} needs {reg.count} registers but max_registers is {fields['max_registers']}",
            )
    fields["registers"] = registers
    return DeviceSpec(**fields)


def _parse_register(table: object, where: str) -> RegisterSpec:
    if not isinstance(table, dict):
        raise ConfigError(where, "must be a table ([[modbus.devices.registers]])")
    _no_unknown(table, _REGISTER_KEYS, where)
    channel = _require(table, "channel", str, where)
    if not _CHANNEL.match(channel):
        raise ConfigError(
            f"{where}.channel",
            f"{channel!r} is not a valid channel name: 1-64 letters, digits, '.', '_', ':', '/' or '-'",
        )
    kind = _optional(table, "table", str, where, "holding")
    if kind not in TABLES:
        raise ConfigError(f"{where}.table", f"{kind!r} is not one of 'holding', 'input'")
    address = _int_in(table, "address", 0, 65535, where, None)
    reg_type = _optional(table, "type", str, where, "uint16")
    if reg_type not in TYPES:
        raise ConfigError(f"{where}.type", f"{reg_type!r} is not one of {', '.join(TYPES)}")
    count = TYPES[reg_type][0]
    if address + count > 65536:
        raise ConfigError(f"{where}.address", f"{reg_type} at {address} runs past register 65535")
    byte_order = _optional(table, "byte_order", str, where, "big")
    word_order = _optional(table, "word_order", str, where, "big")
    for key, value in (("byte_order", byte_order), ("word_order", word_order)):
        if value not in ORDERS:
            raise ConfigError(f"{where}.{key}", f"{value!r} is not one of 'big', 'little'")
    scale = _number(table, "scale", where, 1.0)
    if scale == 0.0:
        raise ConfigError(f"{where}.scale", "must not be 0 (every reading would be 0)")
    offset = _number(table, "offset", where, 0.0)
    unit = _optional(table, "unit", str, where, None)
    if unit is not None and (not unit or any(c.isspace() for c in unit)):
        raise ConfigError(f"{where}.unit", f"{unit!r} is not a SenML unit (for example 'Cel', '%', 'm3/s')")
    return RegisterSpec(channel, kind, address, reg_type, byte_order, word_order, scale, offset, unit)


def _parse_server(table: object, where: str) -> ServerSpec:
    if not isinstance(table, dict):
        raise ConfigError(where, "must be a table ([modbus.server])")
    _no_unknown(table, _SERVER_KEYS, where)
    enabled = _optional(table, "enabled", bool, where, True)
    host = _optional(table, "host", str, where, "127.0.0.1")
    if not host.strip():
        raise ConfigError(f"{where}.host", "must be the address to listen on, e.g. '127.0.0.1' or '0.0.0.0'")
    port = _int_in(table, "port", 1, 65535, where, 5020)
    unit = _int_in(table, "unit", 0, 255, where, 1)
    read_only = _optional(table, "read_only", bool, where, True)
    raw = table.get("channels")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(
            f"{where}.channels",
            "must be a non-empty array of \"node/channel\" strings (or tables {channel = ..., writable = false})",
        )
    channels = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(raw):
        here = f"{where}.channels[{i}]"
        writable = False
        if isinstance(entry, dict):
            _no_unknown(entry, ("channel", "writable"), here)
            key = _require(entry, "channel", str, here)
            writable = _optional(entry, "writable", bool, here, False)
        elif isinstance(entry, str):
            key = entry
        else:
            raise ConfigError(here, 'must be a "node/channel" string or a table {channel = "node/channel"}')
        node, sep, channel = key.partition("/")
        if not sep or not _NAME.match(node) or not _CHANNEL.match(channel):
            raise ConfigError(here, f'{key!r} is not "node/channel" (for example "offgas-1/co")')
        if key in seen:
            raise ConfigError(here, f"{key!r} is already exposed as channels[{seen[key]}]")
        if writable and read_only:
            raise ConfigError(
                f"{here}.writable", "the server is read-only; set read_only = false to accept writes"
            )
        seen[key] = i
        channels.append(ServerChannel(key, writable))
    if 4 * len(channels) > 65536:
        raise ConfigError(f"{where}.channels", f"at most 16384 channels fit the register map, not {len(channels)}")
    return ServerSpec(tuple(channels), enabled, host, port, unit, read_only)


def _check_shared_buses(devices: tuple[DeviceSpec, ...], where: str) -> None:
    """Devices sharing a serial port must agree on its line settings and
    have distinct unit ids (the same holds for a shared TCP gateway)."""
    first: dict[str, int] = {}
    units: dict[tuple[str, int], int] = {}
    for i, dev in enumerate(devices):
        j = first.setdefault(dev.bus, i)
        other = devices[j]
        if dev.transport == "rtu" and j != i:
            for key in ("baudrate", "parity", "stopbits", "bytesize"):
                if getattr(dev, key) != getattr(other, key):
                    raise ConfigError(
                        f"{where}.devices[{i}].{key}",
                        f"devices[{j}] uses {dev.serial_port} with {key} = {getattr(other, key)!r}; "
                        "devices on one serial bus need the same line settings",
                    )
        if (dev.bus, dev.unit) in units:
            raise ConfigError(
                f"{where}.devices[{i}].unit",
                f"unit {dev.unit} on {dev.bus} is already devices[{units[(dev.bus, dev.unit)]}]",
            )
        units[(dev.bus, dev.unit)] = i


def _no_unknown(table: dict, allowed: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}", f"unknown key; valid keys are {', '.join(allowed)}")


def _require(table: dict, key: str, kind: type, where: str):
    if key not in table:
        raise ConfigError(f"{where}.{key}", "is required")
    return _optional(table, key, kind, where)


def _optional(table: dict, key: str, kind: type, where: str, default=None):
    value = table.get(key, default)
    if key in table and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
        raise ConfigError(f"{where}.{key}", f"must be {_KIND_NAMES[kind]}, not {value!r}")
    return value


_KIND_NAMES = {str: "a string", bool: "true or false", int: "an integer"}


def _int_in(table: dict, key: str, low: int, high: int, where: str, default: int | None) -> int:
    if default is None and key not in table:
        raise ConfigError(f"{where}.{key}", "is required")
    value = _optional(table, key, int, where, default)
    if not low <= value <= high:
        raise ConfigError(f"{where}.{key}", f"{value} is out of range {low}..{high}")
    return value


def _number(table: dict, key: str, where: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}.{key}", f"must be a finite number, not {value!r}")
    return float(value)


def _seconds(table: dict, key: str, low: float, high: float, where: str, default: float) -> float:
    value = _number(table, key, where, default)
    if not low <= value <= high:
        raise ConfigError(f"{where}.{key}", f"{value} s is out of range {low}..{high} s")
    return value
