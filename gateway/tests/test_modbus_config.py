"""``[modbus]`` validation, register decoding and the read plan."""

import math
import struct

import pytest
from pymodbus.client import AsyncModbusTcpClient

from smemet.gateway.errors import ConfigError
from smemet.gateway.modbus import parse_modbus
from smemet.gateway.modbus.codec import decode, encode, float32_words, plan_reads
from smemet.gateway.modbus.config import MAX_READ, RegisterSpec


def _device(**over):
    device = {
        "name": "offgas-1", "transport": "tcp", "host": "10.0.0.5", "port": 502, "unit": 3,
        "period": 2.0, "timeout": 0.5, "retries": 1, "backoff": 0.2,
        "registers": [
            {"channel": "co", "table": "input", "address": 0, "type": "float32", "unit": "%"},
            {"channel": "flow", "table": "holding", "address": 10, "type": "int16", "scale": 0.1,
             "offset": -1.5, "unit": "l/s", "byte_order": "big", "word_order": "little"},
        ],
    }
    device.update(over)
    return device


def test_modbus_config_full_example():
    config = parse_modbus({
        "devices": [
            _device(),
            {"name": "flow-7", "transport": "rtu", "serial_port": "/dev/ttyUSB0", "baudrate": 9600,
             "parity": "N", "stopbits": 2, "unit": 7,
             "registers": [{"channel": "total", "address": 0, "type": "uint32", "unit": "m3"}]},
        ],
        "server": {"port": 1502, "channels": ["offgas-1/co", {"channel": "flow-7/total", "writable": False}]},
    }, "gateway.toml")
    tcp, rtu = config.devices
    assert (tcp.name, tcp.host, tcp.port, tcp.unit, tcp.period, tcp.timeout, tcp.retries, tcp.backoff) == (
        "offgas-1", "10.0.0.5", 502, 3, 2.0, 0.5, 1, 0.2)
    assert tcp.bus == "tcp:10.0.0.5:502"
    assert tcp.registers[1].scale == 0.1 and tcp.registers[1].offset == -1.5
    assert tcp.registers[1].word_order == "little" and tcp.registers[0].count == 2
    assert (rtu.serial_port, rtu.baudrate, rtu.parity, rtu.stopbits, rtu.bytesize) == ("/dev/ttyUSB0", 9600, "N", 2, 8)
    assert rtu.registers[0].table == "holding"  # the default table
    assert rtu.bus == "rtu:/dev/ttyUSB0"
    server = config.server
    assert (server.host, server.port, server.unit, server.read_only, server.enabled) == ("127.0.0.1", 1502, 1, True, True)
    assert [c.key for c in server.channels] == ["offgas-1/co", "flow-7/total"]


def test_modbus_config_empty_section_is_valid():
    config = parse_modbus({}, "gateway.toml")
    assert config.devices == () and config.server is None


BAD = [
    ({"devices": {}}, "modbus.devices", "array of tables"),
    ({"devices": [_device(name="a/b")]}, "devices[0].name", "no '/'"),
    ({"devices": [_device(transport="udp")]}, "devices[0].transport", "'tcp', 'rtu'"),
    ({"devices": [_device(host=None)]}, "devices[0].host", "must be a string"),
    ({"devices": [_device(port=70000)]}, "devices[0].port", "1..65535"),
    ({"devices": [_device(unit=True)]}, "devices[0].unit", "integer"),
    ({"devices": [_device(period=0)]}, "devices[0].period", "out of range"),
    ({"devices": [_device(timeout="1s")]}, "devices[0].timeout", "finite number"),
    ({"devices": [_device(serial_port="/dev/ttyS0")]}, "devices[0].serial_port", "rtu' only"),
    ({"devices": [_device(colour="red")]}, "devices[0].colour", "valid keys are"),
    ({"devices": [_device(registers=[])]}, "devices[0].registers", "non-empty"),
    ({"devices": [_device(registers=[{"channel": "x", "address": 0, "type": "float16"}])]},
     "devices[0].registers[0].type", "int16, uint16, int32, uint32, float32, float64"),
    ({"devices": [_device(registers=[{"channel": "x", "address": 0, "table": "coils"}])]},
     "devices[0].registers[0].table", "'holding', 'input'"),
    ({"devices": [_device(registers=[{"channel": "x"}])]}, "devices[0].registers[0].address", "is required"),
    ({"devices": [_device(registers=[{"channel": "x", "address": 65535, "type": "uint32"}])]},
     "devices[0].registers[0].address", "runs past"),
    ({"devices": [_device(registers=[{"channel": "x", "address": 0, "word_order": "middle"}])]},
     "devices[0].registers[0].word_order", "'big', 'little'"),
    ({"devices": [_device(registers=[{"channel": "x", "address": 0, "scale": 0}])]},
     "devices[0].registers[0].scale", "must not be 0"),
    ({"devices": [_device(registers=[{"channel": "x", "address": 0}, {"channel": "x", "address": 1}])]},
     "devices[0].registers[1].channel", "already used"),
    ({"devices": [_device(), _device()]}, "devices[1].name", "already the name"),
    ({"devices": [_device(), _device(name="other")]}, "devices[1].unit", "already devices[0]"),
    ({"devices": [{"name": "r", "transport": "rtu", "registers": [{"channel": "x", "address": 0}]}]},
     "devices[0].serial_port", "is required"),
    ({"devices": [{"name": "r", "transport": "rtu", "serial_port": "/dev/x", "parity": "X",
                   "registers": [{"channel": "x", "address": 0}]}]}, "devices[0].parity", "'N', 'E', 'O'"),
    ({"devices": [
        {"name": "a", "transport": "rtu", "serial_port": "/dev/x", "unit": 1, "baudrate": 9600,
         "registers": [{"channel": "x", "address": 0}]},
        {"name": "b", "transport": "rtu", "serial_port": "/dev/x", "unit": 2, "baudrate": 19200,
         "registers": [{"channel": "x", "address": 0}]}]}, "devices[1].baudrate", "same line settings"),
    ({"devices": [{"name": "r", "transport": "rtu", "serial_port": "/dev/x", "unit": 0,
                   "registers": [{"channel": "x", "address": 0}]}]}, "devices[0].unit", "1..247"),
    ({"server": {"channels": []}}, "modbus.server.channels", "non-empty"),
    ({"server": {"channels": ["nochannel"]}}, "server.channels[0]", '"node/channel"'),
    ({"server": {"channels": ["a/x", "a/x"]}}, "server.channels[1]", "already exposed"),
    ({"server": {"channels": [{"channel": "a/x", "writable": True}]}}, "server.channels[0].writable",
     "read_only = false"),
    ({"server": {"host": "", "channels": ["a/x"]}}, "modbus.server.host", "listen on"),
    ({"server": {"channels": ["a/x"], "port": "502"}}, "modbus.server.port", "integer"),
    ({"server": {"channels": ["a/x"], "bind": "0.0.0.0"}}, "modbus.server.bind", "valid keys"),
    ({"extra": 1}, "modbus.extra", "valid keys"),
]


@pytest.mark.parametrize("table, where, hint", BAD)
def test_modbus_config_errors_name_the_key_and_the_remedy(table, where, hint):
    with pytest.raises(ConfigError) as caught:
        parse_modbus(table, "gateway.toml")
    error = caught.value
    assert error.where.startswith("gateway.toml: modbus")
    assert error.where.endswith(where), error.where
    assert hint in error.message, error.message
    assert "\n" not in str(error)


TYPE_CASES = [
    ("int16", -12345), ("uint16", 54321), ("int32", -123456789), ("uint32", 4_000_000_000),
    ("float32", 1234.5), ("float64", -9.87654321e120),
]


@pytest.mark.parametrize("reg_type, value", TYPE_CASES)
@pytest.mark.parametrize("word_order", ["big", "little"])
def test_modbus_codec_matches_pymodbus_conversion(reg_type, value, word_order):
    spec = RegisterSpec("x", "holding", 0, reg_type, "big", word_order)
    words = encode(spec, value)
    assert len(words) == spec.count
    datatype = getattr(AsyncModbusTcpClient.DATATYPE, reg_type.upper())
    theirs = AsyncModbusTcpClient.convert_from_registers(words, datatype, word_order=word_order)
    assert theirs == value
    assert decode(spec, words) == value


def test_modbus_codec_byte_and_word_order_layouts():
    # 0x11223344 in the four layouts instruments use (ABCD, CDAB, BADC, DCBA).
    layouts = {
        ("big", "big"): [0x1122, 0x3344],
        ("big", "little"): [0x3344, 0x1122],
        ("little", "big"): [0x2211, 0x4433],
        ("little", "little"): [0x4433, 0x2211],
    }
    for (byte_order, word_order), words in layouts.items():
        spec = RegisterSpec("x", "holding", 0, "uint32", byte_order, word_order)
        assert decode(spec, words) == 0x11223344, (byte_order, word_order)
        assert encode(spec, 0x11223344) == words


def test_modbus_codec_scale_offset_and_float32_words():
    spec = RegisterSpec("t", "input", 0, "int16", scale=0.1, offset=-50.0)
    assert decode(spec, [0xFFF6]) == pytest.approx(-51.0)  # -10 * 0.1 - 50
    assert float32_words(1.0) == (0x3F80, 0x0000)
    hi, lo = float32_words(float("nan"))
    assert math.isnan(struct.unpack(">f", struct.pack(">HH", hi, lo))[0])
    assert float32_words(1e300) == float32_words(float("inf"))


def _reg(address, reg_type="uint16", table="holding", channel=None):
    return RegisterSpec(channel or f"c{table[0]}{address}", table, address, reg_type)


def test_modbus_plan_merges_contiguous_registers_per_table():
    regs = [_reg(0, "float32"), _reg(2, "float32"), _reg(4), _reg(10), _reg(0, "int32", "input"), _reg(2, table="input")]
    blocks = plan_reads(regs)
    assert [(b.table, b.address, b.count, len(b.members)) for b in blocks] == [
        ("holding", 0, 5, 3), ("holding", 10, 1, 1), ("input", 0, 3, 2)]


def test_modbus_plan_spans_gaps_only_when_allowed():
    regs = [_reg(0), _reg(3), _reg(9)]
    assert [(b.address, b.count) for b in plan_reads(regs)] == [(0, 1), (3, 1), (9, 1)]
    assert [(b.address, b.count) for b in plan_reads(regs, merge_gap=2)] == [(0, 4), (9, 1)]
    assert [(b.address, b.count) for b in plan_reads(regs, merge_gap=5)] == [(0, 10)]


def test_modbus_plan_respects_the_request_size_limit():
    regs = [_reg(2 * i, "float32") for i in range(100)]  # 200 contiguous registers
    blocks = plan_reads(regs)
    assert all(b.count <= MAX_READ for b in blocks)
    assert [(b.address, b.count) for b in blocks] == [(0, 124), (124, 76)]  # no float split in two
    assert sum(len(b.members) for b in blocks) == 100
    small = plan_reads(regs, max_registers=10)
    assert all(b.count <= 10 for b in small) and len(small) == 20


def test_modbus_plan_overlapping_channels_share_a_request():
    regs = [_reg(0, "uint32", channel="whole"), _reg(1, "uint16", channel="low")]
    (block,) = plan_reads(regs)
    assert (block.address, block.count) == (0, 2)
