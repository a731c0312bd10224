from mptest import FakeBoard, FakeSignal, channel, read_all, approx
import drivers.max31856 as drv


def make(tc_type="S", **values):
    sig = FakeSignal(**values)
    board = FakeBoard(sig)
    d = drv.Driver(board, channel("max31856", tc_type=tc_type))
    d.setup()
    return d, sig, board.chip


def test_setup_programs_type_and_auto_mode():
    for t, code in (("K", 3), ("S", 6), ("R", 5), ("B", 0)):
        d, _, chip = make(t)
        assert chip.regs[1] & 0x0F == code and chip.regs[0] & 0x80, (t, chip.regs[0], chip.regs[1])


def test_reads_tc_and_cold_junction():
    d, _, _ = make("S", value=1550.5, cj=31.25)
    out = read_all(d)
    assert out[0] == ("c", "Cel", out[0][2], None) and approx(out[0][2], 1550.5), out
    assert out[1][0] == "c.cj" and approx(out[1][2], 31.25), out


def test_type_b_range_fault_is_uncertain():
    d, _, _ = make("B", value=100.0)  # type B is specified from 250 Cel
    out = read_all(d)
    assert approx(out[0][2], 100.0) and out[0][3] == "tc-out-of-range", out


def test_open_circuit_has_no_value():
    d, sig, _ = make("K", value=300.0)
    sig.fault_name = "open-circuit"
    out = read_all(d)
    assert out[0][2] is None and out[0][3] == "open-circuit", out
    sig.fault_name = "over-under-voltage"
    assert read_all(d)[0][3] == "over-under-voltage"


def test_missing_chip():
    sig = FakeSignal(value=20.0)
    sig.fault_name = "no-response"
    d = drv.Driver(FakeBoard(sig), channel("max31856"))
    try:
        d.setup()
        assert False, "setup should fail without a chip"
    except OSError:
        pass
    out = read_all(d)
    assert out == [("c", "Cel", None, "no-response")], out


def test_decode_negative():
    regs = bytearray(6)
    t = (-2000 << 5) & 0xFFFFFF  # -15.625 Cel
    regs[2], regs[3], regs[4] = t >> 16, (t >> 8) & 0xFF, t & 0xFF
    tc, cj, reason, no_value, cj_reason = drv.decode(regs)
    assert tc == -15.625 and reason is None
