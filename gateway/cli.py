"""``smemet gateway …``: run the service, check a config, manage node keys.

``register(subparsers)`` adds the ``gateway`` command to the ``smemet``
command line; each leaf sets ``func(args) -> exit code``.  A user mistake
(bad config, open key file, missing serial port, a port in use) prints one
line on stderr and exits 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from .errors import GatewayError

EXIT_USER_ERROR = 2
RELOAD_HINT = "reload the gateway so it knows the node: sudo systemctl reload smemet-gateway (or kill -HUP its pid)"


def register(subparsers) -> argparse.ArgumentParser:
    gateway = subparsers.add_parser("gateway", help="the gateway service: run it, check its config, manage node keys and OPC UA users",
                                    description="The gateway service: run it, check its config, manage node keys and "
                                    "the OPC UA and web console users.")
    commands = gateway.add_subparsers(dest="gateway_command", metavar="COMMAND", required=True)

    run = commands.add_parser("run", help="run the gateway until SIGTERM/SIGINT (SIGHUP reloads the key file)")
    run.add_argument("--config", required=True, metavar="FILE", help="gateway.toml (reference: docs/gateway.toml)")
    run.set_defaults(func=_guard(_run))

    check = commands.add_parser("check-config", help="check a config, its key file and what running it needs, then exit",
                                description="Validate gateway.toml and its key file, and check what `gateway run` "
                                "needs: the outbox folder writable, the serial ports there and ours, the UDP and "
                                "listening ports free. Exit 0 when it would start, 2 when not (each problem one line).")
    check.add_argument("--config", required=True, metavar="FILE")
    check.add_argument("--no-ports", action="store_true",
                       help="skip the port checks (the gateway is running and holds them)")
    check.add_argument("--json", action="store_true", help="print the result as JSON")
    check.set_defaults(func=_guard(_check_config))

    keys = commands.add_parser("keys", help="node keys")
    key_commands = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    add = key_commands.add_parser("add", help="generate a key for a node, store it, print it once (give it to the node)")
    add.add_argument("node", help="node id (the node's kid), e.g. ladle-7")
    _key_file_arguments(add)
    add.add_argument("--key-hex", metavar="HEX", help="use this key instead of generating one")
    add.set_defaults(func=_guard(_keys_add))
    listing = key_commands.add_parser("list", help="list the node ids in the key file (not the keys)")
    _key_file_arguments(listing)
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(func=_guard(_keys_list))
    from .sinks.opcua import users_cli

    users_cli.register(commands, _guard)

    from .sinks.web.users import register as register_web_users

    register_web_users(commands, _guard)

    signing = commands.add_parser("signing-key", help="the gateway's signing key (checkpoints of the routes)")
    signing_commands = signing.add_subparsers(dest="signing_command", metavar="COMMAND", required=True)
    show = signing_commands.add_parser("show", help="print the public key and its fingerprint (give both to partners)")
    show.add_argument("--config", required=True, metavar="FILE", help="gateway.toml ([ledger] signing_key)")
    show.add_argument("--pem", action="store_true", help="only the public key, PEM (a file for partners: --key)")
    show.set_defaults(func=_guard(_signing_key_show))
    return gateway


def _key_file_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--key-file", metavar="FILE", help="the key file (TOML or .json)")
    source.add_argument("--config", metavar="FILE", help="take the key file from this gateway.toml")


def _guard(command):
    """A gateway command as the smemet command line runs it: a GatewayError
    (what the operator must fix) is one line, exit 2 (smemet/cli.py)."""
    return command


def _run(args) -> int:
    from . import logs, preflight, service
    from .config import load_config

    config = load_config(args.config)
    report = preflight.check(config)
    if not report.ok:
        raise GatewayError(report.problems[0] + (f" (and {len(report.problems) - 1} more: smemet gateway "
                                                 f"check-config --config {args.config})" if len(report.problems) > 1 else ""))
    logs.setup(config.log.level, config.log.format)
    asyncio.run(service.run(config))
    return 0


def _check_config(args) -> int:
    from . import preflight
    from .config import load_config

    config = load_config(args.config)
    report = preflight.check(config, ports=not args.no_ports)
    summary = {
        "config": args.config, "ok": report.ok, "problems": report.problems, "warnings": report.warnings,
        "nodes": report.nodes, "serial_ports": len(config.serial), "processed_channels": len(config.channels),
        "routes": len(config.routes), "gateway_id": config.gateway_id, "outbox": config.outbox.path,
        "key_file": config.keys_file,
    }
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0 if report.ok else EXIT_USER_ERROR
    for warning in report.warnings:
        print(f"smemet gateway check-config: warning: {warning}", file=sys.stderr)
    if not report.ok:
        for problem in report.problems:
            print(f"smemet gateway check-config: error: {problem}", file=sys.stderr)
        return EXIT_USER_ERROR
    print(f"{args.config}: ok ({_count(report.nodes, 'node')}, {_count(len(config.serial), 'serial port')}, "
          f"{_count(len(config.channels), 'processed channel')}, {_count(len(config.routes), 'route')})")
    return 0


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def _key_file(args) -> str:
    if args.key_file:
        return args.key_file
    from .config import load_config

    return load_config(args.config, sinks=False).keys_file


def _keys_add(args) -> int:
    from .keys import KeyFileError, add_key

    key = None
    if args.key_hex:
        try:
            key = bytes.fromhex(args.key_hex)
        except ValueError:
            raise KeyFileError("--key-hex is not valid hex") from None
    path = _key_file(args)
    key = add_key(path, args.node, key)
    print(key.hex())
    print(f"added node {args.node} to {path}; give the node this key (it is not shown again); "
          f"a running gateway does not know it yet: {RELOAD_HINT}", file=sys.stderr)
    return 0


def _keys_list(args) -> int:
    from .keys import KeyStore

    nodes = KeyStore.load(_key_file(args)).nodes()
    if args.json:
        json.dump(nodes, sys.stdout)
        sys.stdout.write("\n")
    else:
        for node in nodes:
            print(node)
    return 0


def _signing_key_show(args) -> int:
    from .config import load_config
    from .ledger.signing import load

    config = load_config(args.config)
    key = load(config.ledger.key_path(config.outbox.path))
    if args.pem:
        print(key.public_pem(), end="")
        return 0
    print(f"signing key: {key.path}")
    print("algorithm:   Ed25519 (COSE EdDSA, -8)")
    print(f"key id:      {key.kid.hex()}")
    print(f"fingerprint: {key.fingerprint}")
    print(key.public_pem(), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m smemet.gateway …`` (same commands as ``smemet gateway …``)."""
    from smemet.cli import main as smemet_main

    return smemet_main(["gateway", *(sys.argv[1:] if argv is None else argv)])
