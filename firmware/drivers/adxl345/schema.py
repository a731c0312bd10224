"""adxl345 settings, checked at boot by node/config.py (then unloaded)."""

NAME = "adxl345"
BUS = "i2c"
UNITS = ("m/s2",)
SETTINGS = (
    ("bus", "str", "i2c0", None),
    ("address", "int", 0x53, (0x1D, 0x53)),
    ("range_g", "int", 16, (2, 16)),
    ("rate_hz", "int", 100, (25, 400)),
    ("window_ms", "int", 1000, (50, 10000)),
)


def validate(ch, where, problems):
    if ch["address"] not in (0x1D, 0x53):
        problems.append("%s.address: must be 0x1D (29) or 0x53 (83)" % where)
    if ch["range_g"] not in (2, 4, 8, 16):
        problems.append("%s.range_g: %r is not one of 2, 4, 8, 16" % (where, ch["range_g"]))
    if ch["rate_hz"] not in (25, 50, 100, 200, 400):
        problems.append("%s.rate_hz: %r is not one of 25, 50, 100, 200, 400" % (where, ch["rate_hz"]))
    if ch["window_ms"] * ch["rate_hz"] // 1000 > 512:
        problems.append("%s.window_ms: at most 512 samples per window" % where)
