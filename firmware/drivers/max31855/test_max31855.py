from mptest import FakeBoard, FakeSignal, channel, read_all, approx
import drivers.max31855 as drv


def make(**values):
    sig = FakeSignal(**values)
    d = drv.Driver(FakeBoard(sig), channel("max31855", cold_junction=True))
    d.setup()
    return d, sig


def test_reads_hot_and_cold_junction():
    d, _ = make(value=1234.5, cj=27.25)
    out = read_all(d)
    assert out[0][0] == "c" and out[0][1] == "Cel" and approx(out[0][2], 1234.5), out
    assert out[1][0] == "c.cj" and approx(out[1][2], 27.25), out


def test_negative_temperature():
    d, _ = make(value=-100.25, cj=-5.0)
    out = read_all(d)
    assert approx(out[0][2], -100.25) and approx(out[1][2], -5.0), out


def test_faults():
    d, sig = make(value=500)
    for fault, reason in (("open-circuit", "open-circuit"), ("short-gnd", "short-to-gnd"),
                          ("short-vcc", "short-to-vcc"), ("no-response", "no-response")):
        sig.fault_name = fault
        out = read_all(d)
        assert out[0][2] is None and out[0][3] == reason, (fault, out)
    sig.fault_name = None
    assert approx(read_all(d)[0][2], 500)
