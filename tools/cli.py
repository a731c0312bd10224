"""The ``smemet`` command line: one entry point for field engineers, driver
authors and integrators.  Each command lives in its own module exposing
``register(subparsers)``.

Conventions every command follows (docs/field-engineer.md, "The command
line"):

* exit codes: 0 ok; 1 the command ran but what it did or checked failed (a
  commissioning step, a file that did not verify) or an internal error;
  2 a mistake of the user (argument, config, file); 130 Ctrl-C; 141 the
  reader of our output went away (``| head``), as other Unix tools;
* a user mistake is one line on stderr, ``smemet COMMAND: error: ...``,
  never a traceback; a mistyped option shows that command's usage;
* ``-q/--quiet`` silences progress lines, ``-v/--verbose`` adds details (and
  the traceback of an internal error); both work before or after the command;
* ``smemet`` alone prints help (exit 0), ``smemet help COMMAND`` a command's,
  ``smemet -V`` the version, ``smemet completion bash|zsh`` a completion script.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import traceback

from . import __version__, term
from .errors import UserError
from .gateway.errors import GatewayError

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
    "smemet.completion",
)
EXIT_FAILED, EXIT_USER_ERROR, EXIT_INTERRUPTED, EXIT_PIPE_CLOSED = 1, 2, 130, 141


class _Parser(argparse.ArgumentParser):
    """Errors say which command they are about: ``smemet nodes: error: ...``
    after that command's usage."""

    def error(self, message: str):  # argparse's hook
        self.print_usage(sys.stderr)
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message}\n")


def _global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else False
    parser.add_argument("-q", "--quiet", action="store_true", default=default, help="no progress lines on stderr")
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="more detail (and the traceback of an internal error)")


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """A parser's commands by name (empty for a leaf)."""
    for action in parser._actions:  # argparse keeps subparsers as an action; there is no public accessor
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _leaves(parser: argparse.ArgumentParser):
    children = subcommands(parser)
    if not children:
        yield parser
    for child in dict.fromkeys(children.values()):  # aliases name one parser twice
        yield from _leaves(child)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="smemet",
        description="SME-MET Edge: sensor nodes, gateway and tools for industrial measurement. "
        "Exit codes: 0 ok, 1 failed (a step or check did not pass) or internal error, 2 usage or input mistake.",
        epilog="smemet help COMMAND shows a command's options; docs/field-engineer.md has the workflows.",
    )
    parser.add_argument("-V", "--version", action="version", version=f"smemet {__version__}")
    _global_options(parser, suppress=False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency inside the module
                raise
            continue
        module.register(subparsers)
    helper = subparsers.add_parser("help", help="show the help of a command, e.g. smemet help gateway keys add")
    helper.add_argument("topic", nargs="*", metavar="COMMAND")
    helper.set_defaults(func=lambda args: _help(parser, args.topic))
    for leaf in _leaves(parser):
        if leaf is not parser:
            _global_options(leaf, suppress=True)
            leaf.set_defaults(_parser=leaf)
    return parser


def _help(parser: argparse.ArgumentParser, topic: list[str]) -> int:
    target = parser
    for word in topic:
        children = subcommands(target)
        if word not in children:
            known = ", ".join(sorted(children)) or "none"
            raise UserError(f"no command {' '.join(topic)!r}; commands here: {known}")
        target = children[word]
    target.print_help()
    return 0


def main(argv: list[str] | None = None) -> int:
    term.install_fallbacks()
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        parser.print_help()
        return 0
    args, extra = parser.parse_known_args(argv)
    if extra:  # a mistyped option: the usage of the command it was typed to
        getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    term.configure(quiet=getattr(args, "quiet", False), verbose=getattr(args, "verbose", False))
    leaf = getattr(args, "_parser", None)
    command = leaf.prog.removeprefix("smemet ") if leaf is not None else "smemet"
    if not getattr(args, "func", None):
        getattr(args, "_parser", parser).print_help()
        return 0
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()
        return code
    except (UserError, GatewayError) as exc:
        return _user_error(command, str(exc))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _pipe_closed()
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            return _pipe_closed()
        if exc.filename is None:
            return _internal(command, exc)
        return _user_error(command, _file_problem(exc))
    except Exception as exc:  # noqa: BLE001 - a bug: one line and a way to report it, the traceback with -v
        return _internal(command, exc)


def _user_error(command: str, message: str) -> int:
    print(f"smemet {command}: error: {message}", file=sys.stderr)
    return EXIT_USER_ERROR


def _file_problem(exc: OSError) -> str:
    """A file the user named that cannot be used: which, why, what to do."""
    path = exc.filename
    why = {
        errno.ENOENT: "does not exist", errno.EACCES: "permission denied (run as its owner, or fix its mode)",
        errno.EPERM: "operation not permitted", errno.EISDIR: "is a directory, not a file",
        errno.ENOTDIR: "a part of the path is not a directory", errno.EROFS: "is on a read-only file system",
        errno.ENOSPC: "the disk is full", errno.EEXIST: "already exists",
    }.get(exc.errno, exc.strerror or str(exc))
    return f"{path}: {why}"


def _pipe_closed() -> int:
    # The reader left (smemet nodes | head): stop quietly.  Point stdout at
    # /dev/null so the interpreter's final flush does not complain again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_PIPE_CLOSED


def _internal(command: str, exc: BaseException) -> int:
    if term.VERBOSE:
        traceback.print_exception(exc)
    print(f"smemet {command}: internal error: {type(exc).__name__}: {exc} (a bug: please report it with the "
          "output of the same command with --verbose)", file=sys.stderr)
    return EXIT_FAILED
