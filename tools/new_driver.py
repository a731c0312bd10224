"""``smemet new-driver NAME --bus i2c|spi|uart|adc``: scaffold a driver
folder, ``firmware/drivers/NAME/``, following the existing drivers'
conventions (docs/driver-author.md): the driver, its settings (schema.py),
a register-level simulation of the chip (sim.py), a test run inside
MicroPython and a README.

The scaffold works as it is: ``smemet firmware build`` compiles it, its
test passes in the firmware test runner (``pytest firmware/tests``; in
another tree given with ``--firmware-dir`` the printed MicroPython command,
and ``smemet firmware build --firmware-dir`` builds that tree), and a
config.json channel ``{"name": "x", "driver": "NAME"}`` runs on the sim
board.  It models a generic chip on the chosen bus; replace the register map
with the datasheet's.  The templates are in driver_templates.py.
"""

from __future__ import annotations

import keyword
import re
import sys
from pathlib import Path

from . import driver_templates
from .errors import UserError

BUSES = ("i2c", "spi", "uart", "adc")
_NAME = re.compile(r"^[a-z][a-z0-9_]{1,23}$")
_RESERVED = ("health", "schema", "sim", "test", "drivers", "node", "boards", "protocol")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "new-driver",
        help="scaffold a sensor driver with its chip simulation, test and README",
        description="Create firmware/drivers/NAME/ (driver, schema.py settings, sim.py register-level chip "
        "simulation, a MicroPython test, README) for a chip on the given bus. It builds, its test passes and "
        "config.json can use it without further edits; then adapt it to your chip (docs/driver-author.md).",
    )
    parser.add_argument("name", metavar="NAME", help="driver name as config.json will use it: lower case, digits, _ "
                        "(2-24 characters, starting with a letter), e.g. tmp117")
    parser.add_argument("--bus", required=True, choices=BUSES, help="how the chip is connected")
    parser.add_argument("--firmware-dir", metavar="DIR",
                        help="the firmware tree to add it to (default: firmware/ of this checkout)")
    parser.set_defaults(func=run)


def validate_name(name: str) -> None:
    if not _NAME.match(name):
        raise UserError(f"driver name {name!r} is not valid: 2-24 characters of lower-case letters, digits and _, "
                        "starting with a letter (it is a Python module name and config.json's \"driver\")")
    if keyword.iskeyword(name) or name in _RESERVED:
        raise UserError(f"driver name {name!r} is reserved; pick another (e.g. the chip's part number)")


def firmware_dir(given: str | None) -> Path:
    if given:
        path = Path(given)
    else:
        from .firmware_tool import FIRMWARE

        path = FIRMWARE
    if not (path / "drivers" / "__init__.py").is_file():
        raise UserError(f"{path} is not a firmware tree (no drivers/__init__.py): give --firmware-dir "
                        "pointing at a checkout's firmware/ folder")
    return path


def scaffold(name: str, bus: str, firmware: Path) -> list[Path]:
    """Write the driver folder; returns the files created."""
    validate_name(name)
    if bus not in BUSES:
        raise UserError(f"--bus {bus!r}: choose one of {', '.join(BUSES)}")
    folder = Path(firmware) / "drivers" / name
    if folder.exists():
        raise UserError(f"{folder} already exists: a driver named {name!r} is there; pick another name "
                        "(nothing was overwritten)")
    files = driver_templates.render(name, bus)
    folder.mkdir()
    written = []
    for filename, text in files.items():
        path = folder / filename.replace("NAME", name)
        path.write_text(text)
        written.append(path)
    return written


def next_steps(name: str, given: str | None, firmware: Path) -> tuple[str, str]:
    """(how to run the driver's test, how to build it), as commands that
    work from any folder: in this checkout the firmware test runner; in
    another tree its test run inside MicroPython as that runner does, and
    ``firmware build --firmware-dir`` (which includes it)."""
    from .firmware_tool import FIRMWARE, REPO

    if not given:
        return f"pytest {FIRMWARE / 'tests'} -k {name}", "smemet firmware build"
    from .simnode import micropython_path

    tree = firmware.resolve()
    runner = FIRMWARE / "tests" / "mp"
    test = (f"MICROPYPATH=.frozen:{tree}:{REPO}:{runner} {micropython_path()} -X heapsize=512K "
            f"{runner / 'mptest.py'} drivers.{name}.test_{name}")
    return test, f"smemet firmware build --firmware-dir {tree}"


def run(args) -> int:
    firmware = firmware_dir(args.firmware_dir)
    written = scaffold(args.name, args.bus, firmware)
    for path in written:
        print(f"created {path}")
    test, build = next_steps(args.name, args.firmware_dir, firmware)
    print(f"\nnext: run its test     {test}\n"
          f"      build it          {build}\n"
          f"      use it            config.json channel {{\"name\": \"x1\", \"driver\": \"{args.name}\"}}\n"
          f"      then adapt the register map in {written[0].parent}/ to your chip (docs/driver-author.md)",
          file=sys.stderr)
    return 0
