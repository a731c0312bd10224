import math
from mptest import FakeBoard, FakeSignal, channel, read_all
import drivers.adxl345 as drv


def make(amp, **settings):
    sig = FakeSignal(value=amp, freq=13.0)
    settings.setdefault("window_ms", 300)
    settings.setdefault("rate_hz", 200)
    d = drv.Driver(FakeBoard(sig), channel("adxl345", **settings))
    d.setup()
    return d, sig


def test_rms_and_peak_of_a_sine():
    d, _ = make(4.0)
    out = read_all(d)
    assert out[0][0] == "c.rms" and out[0][1] == "m/s2" and out[1][0] == "c.peak", out
    rms, peak = out[0][2], out[1][2]
    assert 4.0 / math.sqrt(2) * 0.75 < rms < 4.0 / math.sqrt(2) * 1.25, rms
    assert 3.0 < peak < 5.0, peak


def test_still_sensor_reads_near_zero():
    d, _ = make(0.0)
    out = read_all(d)
    assert out[0][2] < 0.05 and out[1][2] < 0.05, out


def test_stats_removes_gravity():
    samples = [0, 0, 256, 10, 0, 256, -10, 0, 256, 0, 0, 256]
    rms, peak = drv.stats(samples, 4)
    k = 0.0039 * 9.80665
    assert abs(rms - math.sqrt(50) * k) < 1e-6 and abs(peak - 10 * k) < 1e-6, (rms, peak)


def test_faults():
    d, sig = make(1.0)
    sig.fault_name = "no-response"
    out = read_all(d)
    assert out[0][2] is None and out[0][3] == "no-response", out
    sig.fault_name = "wrong-device"
    out = read_all(d)
    assert out[0][3] == "wrong-device", out
