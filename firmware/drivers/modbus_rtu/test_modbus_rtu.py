from mptest import FakeBoard, FakeSignal, channel, read_all, approx
import drivers.modbus_rtu as drv
import drivers.modbus_rtu.sim as sim

REGS = [
    {"name": "flow", "address": 100, "type": "float32", "unit": "m3/s"},
    {"name": "flow_le", "address": 102, "type": "float32", "word_order": "little"},
    {"name": "p", "address": 4, "function": 4, "type": "int16", "scale": 0.1, "unit": "Pa"},
    {"name": "count", "address": 10, "type": "uint32"},
    {"name": "delta", "address": 12, "type": "int32", "word_order": "little"},
    {"name": "raw", "address": 14, "type": "uint16"},
]


def make(**values):
    sig = FakeSignal(**values)
    board = FakeBoard(sig)
    d = drv.Driver(board, channel("modbus_rtu", registers=[dict(r) for r in REGS], timeout_ms=30, retries=1))
    d.setup()
    return d, sig, board.chip


def test_crc16_known_vector():
    # 01 03 00 00 00 0A -> CRC C5 CD (low byte first on the wire)
    assert drv.crc16(bytes((1, 3, 0, 0, 0, 10))) == 0xCDC5


def test_reads_every_type_and_word_order():
    d, _, _ = make(flow=1.5, flow_le=-2.25, p=-12.3, count=70000, delta=-70000, raw=65535)
    out = dict((name, (unit, value, reason)) for name, unit, value, reason in read_all(d))
    assert out["c.flow"] == ("m3/s", 1.5, None), out
    assert out["c.flow_le"][1] == -2.25, out
    assert approx(out["c.p"][1], -12.3, 1e-4) and out["c.p"][0] == "Pa", out
    assert out["c.count"][1] == 70000 and out["c.delta"][1] == -70000 and out["c.raw"][1] == 65535, out


def test_word_order_bytes():
    assert sim.encode_value(1.5, "float32", "big") == b"\x3f\xc0\x00\x00"
    assert sim.encode_value(1.5, "float32", "little") == b"\x00\x00\x3f\xc0"
    assert drv.decode_value(b"\x00\x00\x3f\xc0", 0, "float32", "little") == 1.5


def test_faults_and_retries():
    d, sig, chip = make(flow=1.0)
    cases = (("no-response", "modbus-timeout"), ("crc-error", "modbus-crc"),
             ("busy", "modbus-exception-busy"), ("device-failure", "modbus-exception-device-failure"))
    for fault, reason in cases:
        sig.fault_name = fault
        before = chip.requests
        out = read_all(d)
        assert all(r[2] is None and r[3] == reason for r in out), (fault, out)
        per_register = (chip.requests - before) // len(REGS)
        assert per_register == (2 if fault in ("no-response", "crc-error") else 1), (fault, per_register)


def test_a_late_answer_never_passes_for_another_registers_value():
    # The instrument answers 45 ms after each request, the driver waits
    # 30 ms and does not retry: each answer arrives while the next register
    # is being asked for, and would be read as that register's value.
    values = {"flow": 1.5, "flow_le": -2.25, "p": -12.3, "count": 70000, "delta": -70000, "raw": 4242}
    sig = FakeSignal(response_ms=45, **values)
    board = FakeBoard(sig)
    d = drv.Driver(board, channel("modbus_rtu", registers=[dict(r) for r in REGS], timeout_ms=30, retries=0))
    d.setup()
    sig.fault_name = "slow-response"
    for name, unit, value, reason in read_all(d):
        assert reason == "modbus-timeout" and value is None, (name, value, reason)
    sig.fault_name = None  # the instrument is fast again: its own values come back
    out = dict((name, value) for name, unit, value, reason in read_all(d))
    assert out["c.flow"] == 1.5 and out["c.flow_le"] == -2.25 and out["c.raw"] == 4242, out
    assert out["c.count"] == 70000 and out["c.delta"] == -70000, out


def test_illegal_address_exception():
    sig = FakeSignal()
    board = FakeBoard(sig)
    d = drv.Driver(board, channel("modbus_rtu", registers=[{"name": "x", "address": 1}], timeout_ms=30))
    board.chip.map = {}  # the instrument has no such register
    out = read_all(d)
    assert out == [("c.x", None, None, "modbus-exception-illegal-address")], out
