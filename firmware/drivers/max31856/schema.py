"""max31856 settings, checked at boot by node/config.py (then unloaded)."""

NAME = "max31856"
BUS = "spi"
UNITS = ("Cel",)
SETTINGS = (
    ("bus", "str", "spi0", None),
    ("cs", "int", 5, (0, 64)),
    ("tc_type", "str", "K", ("B", "E", "J", "K", "N", "R", "S", "T")),
    ("averaging", "int", 1, (1, 16)),
    ("mains_hz", "int", 50, (50, 60)),
)


def validate(ch, where, problems):
    if ch["averaging"] not in (1, 2, 4, 8, 16):
        problems.append("%s.averaging: %r is not one of 1, 2, 4, 8, 16" % (where, ch["averaging"]))
