"""ads1115 settings, checked at boot by node/config.py (then unloaded)."""

NAME = "ads1115"
BUS = "i2c"
UNITS = ("A", "Cel", "Pa", "V", "%", "%RH", "m", "m3/s", "kg/s", "m/s", "K", "W")
SETTINGS = (
    ("bus", "str", "i2c0", None),
    ("address", "int", 0x48, (0x48, 0x4B)),
    ("input", "int", 0, (0, 3)),
    ("shunt_ohm", "float", 100.0, (1.0, 1000.0)),
    ("lrv", "float", 0.0, None),
    ("urv", "float", 100.0, None),
    ("unit", "str", "%", UNITS),
    ("report_current", "bool", False, None),  # also report <name>.current in A
)


def validate(ch, where, problems):
    if ch["lrv"] == ch["urv"]:
        problems.append("%s.urv: must differ from lrv" % where)
    if 0.022 * ch["shunt_ohm"] > 6.144:
        problems.append("%s.shunt_ohm: 22 mA across %r ohm exceeds the ADC's 6.144 V" % (where, ch["shunt_ohm"]))
