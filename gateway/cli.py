"""``smemet gateway …``: run the service, check a config, manage node keys.

``register(subparsers)`` adds the ``gateway`` command to the ``smemet``
command line; each leaf sets ``func(args) -> exit code``.  A user mistake
(bad config, open key file, missing serial port) prints one line on stderr
and exits 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from .errors import GatewayError

EXIT_USER_ERROR = 2


def register(subparsers) -> argparse.ArgumentParser:
    gateway = subparsers.add_parser("gateway", help="the gateway service: run it, check its config, manage node keys and OPC UA users")
    commands = gateway.add_subparsers(dest="gateway_command", metavar="COMMAND", required=True)

    run = commands.add_parser("run", help="run the gateway until SIGTERM/SIGINT")
    run.add_argument("--config", required=True, metavar="FILE", help="gateway.toml (reference: docs/gateway.toml)")
    run.set_defaults(func=_guard(_run))

    check = commands.add_parser("check-config", help="validate a config and its key file, then exit")
    check.add_argument("--config", required=True, metavar="FILE")
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
    def guarded(args) -> int:
        try:
            return command(args)
        except GatewayError as exc:
            print(f"smemet gateway: error: {exc}", file=sys.stderr)
            return EXIT_USER_ERROR
        except KeyboardInterrupt:
            return 130

    return guarded


def _run(args) -> int:
    from . import logs, service
    from .config import load_config

    config = load_config(args.config)
    logs.setup(config.log.level, config.log.format)
    asyncio.run(service.run(config))
    return 0


def _check_config(args) -> int:
    from .config import load_config
    from .keys import KeyStore

    config = load_config(args.config)
    keys = KeyStore.load(config.keys_file)
    print(
        f"{args.config}: ok ({len(keys)} nodes, {len(config.serial)} serial ports, "
        f"{len(config.channels)} processed channels, {len(config.routes)} routes)"
    )
    return 0


def _key_file(args) -> str:
    if args.key_file:
        return args.key_file
    from .config import load_config

    return load_config(args.config).keys_file


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
    print(f"added node {args.node} to {path}; give the node this key (it is not shown again)", file=sys.stderr)
    return 0


def _keys_list(args) -> int:
    from .keys import KeyStore

    for node in KeyStore.load(_key_file(args)).nodes():
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
    parser = argparse.ArgumentParser(prog="smemet")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["gateway", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)
