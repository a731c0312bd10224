from mptest import FakeBoard, FakeSignal, channel, read_all, approx
import drivers.ads1115 as drv


def make(ma, **settings):
    sig = FakeSignal(value=ma)
    settings.setdefault("lrv", 0.0)
    settings.setdefault("urv", 1600.0)
    settings.setdefault("unit", "Cel")
    d = drv.Driver(FakeBoard(sig), channel("ads1115", **settings))
    d.setup()
    return d, sig


def test_scaling_lrv_urv():
    for ma, expect in ((4.0, 0.0), (12.0, 800.0), (20.0, 1600.0)):
        d, _ = make(ma)
        out = read_all(d)
        assert approx(out[0][2], expect, 0.2) and out[0][3] is None, (ma, out)


def test_namur_ne43():
    cases = ((3.5, None, "namur-fail-low"), (3.6, None, "namur-fail-low"), (3.7, -9.9, "namur-under-range"),
             (3.8, -20.0, None), (20.5, 1650.0, None), (20.8, 1680.0, "namur-over-range"),
             (21.0, None, "namur-fail-high"), (22.0, None, "namur-fail-high"))
    for ma, value, reason in cases:
        assert drv.classify(ma)[1] == reason, (ma, drv.classify(ma))
        d, _ = make(ma + (0.001 if reason is None or "range" in reason else 0))
        out = read_all(d)
        assert out[0][3] == reason, (ma, out)
        if value is None:
            assert out[0][2] is None, out


def test_wire_break_and_no_chip():
    d, sig = make(12.0, report_current=True)
    sig.fault_name = "wire-break"
    out = read_all(d)
    assert out[0][2] is None and out[0][3] == "namur-fail-low", out
    assert approx(out[1][2], 0.0, 1e-6) and out[1][1] == "A", out
    sig.fault_name = "no-response"
    assert read_all(d)[0] == ("c", "Cel", None, "no-response")


def test_current_report_in_amperes():
    d, _ = make(16.0, report_current=True, shunt_ohm=250.0)
    out = read_all(d)
    assert approx(out[1][2], 0.016, 1e-5), out
