"""The ``smemet`` command line: one entry point for field engineers, driver
authors and integrators.  Each command lives in its own module exposing
``register(subparsers)``; a user mistake ends in one clear line on stderr and
a non-zero exit, never a traceback."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import UserError

# Modules that add commands, in the order they appear in ``smemet --help``.
COMMAND_MODULES = (
    "smemet.decode",
    "smemet.firmware_tool",
    "smemet.gateway.cli",
    "smemet.gateway.calibration.cli",
    "smemet.nodes",
    "smemet.commission",
    "smemet.flash",
    "smemet.sim",
    "smemet.monitor",
    "smemet.new_driver",
    "smemet.demo",
    "smemet.agreements",
    "smemet.ledger",
    "smemet.verify",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smemet",
        description="SME-MET Edge: sensor nodes, gateway and tools for industrial measurement.",
    )
    parser.add_argument("--version", action="version", version=f"smemet {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency inside the module
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"smemet {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
