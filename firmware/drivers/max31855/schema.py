"""max31855 settings, checked at boot by node/config.py (then unloaded)."""

NAME = "max31855"
BUS = "spi"
UNITS = ("Cel",)
SETTINGS = (
    ("bus", "str", "spi0", None),
    ("cs", "int", 5, (0, 64)),
    ("cold_junction", "bool", False, None),  # also report <name>.cj
)
