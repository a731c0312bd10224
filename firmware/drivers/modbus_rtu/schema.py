"""modbus_rtu settings and register-map checks, run at boot by
node/config.py (then unloaded)."""

from drivers.modbus_rtu import TYPES

NAME = "modbus_rtu"
BUS = "uart"
UNITS = ("Cel", "K", "Pa", "A", "V", "W", "%", "%RH", "m3/s", "kg/s", "m/s", "m", "Hz", "")
SETTINGS = (
    ("bus", "str", "uart1", None),
    ("baudrate", "int", 9600, (1200, 115200)),
    ("slave", "int", 1, (1, 247)),
    ("timeout_ms", "int", 200, (10, 5000)),
    ("retries", "int", 2, (0, 10)),
    ("de_pin", "int", None, (0, 64)),
    ("registers", "list", [], None),
)


def validate(ch, where, problems):
    regs = ch["registers"]
    if not regs:
        problems.append("%s.registers: list at least one register to read" % where)
    names = []
    for i in range(len(regs)):
        r = regs[i]
        here = "%s.registers[%d]" % (where, i)
        if not isinstance(r, dict):
            problems.append("%s: must be an object" % here)
            continue
        if not isinstance(r.get("name"), str) or not r["name"] or r["name"] in names:
            problems.append("%s.name: missing or used twice" % here)
        names.append(r.get("name"))
        address = r.get("address")
        if not isinstance(address, int) or not 0 <= address <= 65535:
            problems.append("%s.address: missing or not 0..65535" % here)
        r.setdefault("type", "uint16")
        if r["type"] not in TYPES:
            problems.append("%s.type: %r is not one of %s" % (here, r["type"], ", ".join(sorted(TYPES))))
        r.setdefault("function", 3)
        if r["function"] not in (3, 4):
            problems.append("%s.function: %r is not 3 (holding) or 4 (input)" % (here, r["function"]))
        r.setdefault("word_order", "big")
        if r["word_order"] not in ("big", "little"):
            problems.append("%s.word_order: %r is not big or little" % (here, r["word_order"]))
        r.setdefault("scale", 1.0)
        if not isinstance(r["scale"], (int, float)):
            problems.append("%s.scale: must be a number" % here)
        r.setdefault("unit", "")
        if r["unit"] not in UNITS:
            problems.append("%s.unit: %r is not one of %s" % (here, r["unit"], ", ".join(UNITS)))
