"""The ``[modbus]`` table of gateway.toml, validated into ``ModbusConfig``.

Every mistake raises ``ConfigError`` naming the file and key path
(``gateway.toml: modbus.devices[0].registers[2].type``) and saying what would
be valid, so the gateway refuses to start with one clear line.  See
docs/modbus.md for a complete example.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigError
from ..settings import Table

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
    modbus = Table(table, here, ("devices", "server"))
    modbus.finish()
    devices_raw = modbus.get("devices", [])
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


def _parse_device(raw: object, where: str) -> DeviceSpec:
    if not isinstance(raw, dict):
        raise ConfigError(where, "must be a table ([[modbus.devices]])")
    table = Table(raw, where, _DEVICE_KEYS)
    table.finish()
    name = table.text("name")
    if not _NAME.match(name):
        raise ConfigError(
            f"{where}.name",
            f"{name!r} is not a valid node id: 1-64 letters, digits, '.', '_', ':' or '-' "
            "(no '/'), starting with a letter or digit",
        )
    transport = table.choice("transport", ("tcp", "rtu"), "tcp")
    fields: dict = {"name": name, "transport": transport}
    if transport == "tcp":
        for key in ("serial_port", "baudrate", "parity", "stopbits", "bytesize"):
            if table.has(key):
                raise table.error(key, "applies to transport = 'rtu' only")
        host = table.text("host", allow_empty=True)
        if not host.strip():
            raise ConfigError(f"{where}.host", "must name the instrument (IP address or host name)")
        fields["host"] = host
        fields["port"] = table.integer("port", 502, 1, 65535)
    else:
        for key in ("host", "port"):
            if table.has(key):
                raise table.error(key, "applies to transport = 'tcp' only")
        serial_port = table.text("serial_port", allow_empty=True)
        if not serial_port.strip():
            raise ConfigError(f"{where}.serial_port", "must be a serial device such as '/dev/ttyUSB0'")
        fields["serial_port"] = serial_port
        fields["baudrate"] = table.integer("baudrate", 19200, 300, 4_000_000)
        fields["parity"] = table.choice("parity", PARITIES, "E")
        fields["stopbits"] = table.integer("stopbits", 1, 1, 2)
        fields["bytesize"] = table.integer("bytesize", 8, 7, 8)
    # RTU unit 0 is broadcast: nobody answers a broadcast read.
    fields["unit"] = table.integer("unit", 1, 0 if transport == "tcp" else 1, 255 if transport == "tcp" else 247)
    fields["period"] = table.number("period", 1.0, 0.001, 86400.0)
    fields["timeout"] = table.number("timeout", 1.0, 0.001, 60.0)
    fields["retries"] = table.integer("retries", 2, 0, 10)
    fields["backoff"] = table.number("backoff", 0.1, 0.0, 60.0)
    fields["max_registers"] = table.integer("max_registers", MAX_READ, 1, MAX_READ)
    fields["merge_gap"] = table.integer("merge_gap", 0, 0, MAX_READ)
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


def _parse_register(raw: object, where: str) -> RegisterSpec:
    if not isinstance(raw, dict):
        raise ConfigError(where, "must be a table ([[modbus.devices.registers]])")
    table = Table(raw, where, _REGISTER_KEYS)
    table.finish()
    channel = table.text("channel")
    if not _CHANNEL.match(channel):
        raise ConfigError(
            f"{where}.channel",
            f"{channel!r} is not a valid channel name: 1-64 letters, digits, '.', '_', ':', '/' or '-'",
        )
    kind = table.choice("table", TABLES, "holding")
    address = table.integer("address", low=0, high=65535)
    reg_type = table.get("type", "uint16")
    if reg_type not in TYPES:
        raise table.wrong("type", f"one of {', '.join(TYPES)}", reg_type)
    count = TYPES[reg_type][0]
    if address + count > 65536:
        raise ConfigError(f"{where}.address", f"{reg_type} at {address} runs past register 65535")
    byte_order = table.choice("byte_order", ORDERS, "big")
    word_order = table.choice("word_order", ORDERS, "big")
    scale = table.number("scale", 1.0)
    if scale == 0.0:
        raise ConfigError(f"{where}.scale", "must not be 0 (every reading would be 0)")
    offset = table.number("offset", 0.0)
    unit = table.text("unit", None, allow_empty=True)
    if unit is not None and (not unit or any(c.isspace() for c in unit)):
        raise ConfigError(f"{where}.unit", f"{unit!r} is not a SenML unit (for example 'Cel', '%', 'm3/s')")
    return RegisterSpec(channel, kind, address, reg_type, byte_order, word_order, scale, offset, unit)


def _parse_server(raw: object, where: str) -> ServerSpec:
    if not isinstance(raw, dict):
        raise ConfigError(where, "must be a table ([modbus.server])")
    table = Table(raw, where, _SERVER_KEYS)
    table.finish()
    enabled = table.boolean("enabled", True)
    host = table.text("host", "127.0.0.1", allow_empty=True)
    if not host.strip():
        raise ConfigError(f"{where}.host", "must be the address to listen on, e.g. '127.0.0.1' or '0.0.0.0'")
    port = table.integer("port", 5020, 1, 65535)
    unit = table.integer("unit", 1, 0, 255)
    read_only = table.boolean("read_only", True)
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
            item = Table(entry, here, ("channel", "writable"))
            item.finish()
            key = item.text("channel")
            writable = item.boolean("writable", False)
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
