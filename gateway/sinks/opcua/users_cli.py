"""``smemet gateway opcua-user add|remove|list``: the OPC UA users file.

The file is ``[opcua] users_file`` of the gateway's config (``--config``)
or given directly (``--users-file``); it is created mode 0600.  A running
gateway reads it again at the next login: no restart needed.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
import tomllib

from ...errors import ConfigError, GatewayError
from .users import check_name, hash_password, load_users, save_users

MIN_PASSWORD = 8


def register(commands, guard) -> None:
    user = commands.add_parser("opcua-user", help="OPC UA users (user names and password hashes)")
    user_commands = user.add_subparsers(dest="opcua_user_command", metavar="COMMAND", required=True)
    add = user_commands.add_parser("add", help="add a user or set a user's password (asked twice, never shown)")
    add.add_argument("name", help="user name, e.g. mes or historian")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input (scripts)")
    _file_arguments(add)
    add.set_defaults(func=guard(_add))
    remove = user_commands.add_parser("remove", help="remove a user")
    remove.add_argument("name")
    _file_arguments(remove)
    remove.set_defaults(func=guard(_remove))
    listing = user_commands.add_parser("list", help="list the user names")
    _file_arguments(listing)
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(func=guard(_list))


def _file_arguments(parser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--users-file", metavar="FILE", help="the users file")
    source.add_argument("--config", metavar="FILE", help="take [opcua] users_file from this gateway.toml")


def users_file(args) -> str:
    if args.users_file:
        return args.users_file
    # Only the path is needed (the file may not exist yet, which the full
    # config check would refuse): read it the way config.py resolves paths.
    try:
        with open(args.config, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(args.config, f"cannot read config file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(args.config, f"not valid TOML ({exc})") from None
    path = data.get("opcua", {}).get("users_file") if isinstance(data.get("opcua"), dict) else None
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{args.config}: opcua.users_file", "is not set; add users_file = \"opcua-users.toml\" "
                                                              "to [opcua], or give --users-file")
    base = os.path.dirname(os.path.abspath(args.config))
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def _existing(path: str, must_exist: bool = False) -> dict[str, str]:
    if os.path.exists(path):
        return load_users(path, path)
    if must_exist:
        raise GatewayError(f"{path} does not exist; add a user with `smemet gateway opcua-user add NAME "
                           f"--users-file {path}` (it creates the file)")
    return {}


def _check_folder(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise GatewayError(f"{path}: folder {folder} does not exist; create it first (mkdir -p {folder}) "
                           "or give another --users-file")


def _add(args) -> int:
    try:
        check_name(args.name)
    except ValueError as exc:
        raise GatewayError(str(exc)) from None
    path = users_file(args)
    _check_folder(path)
    users = _existing(path)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise GatewayError("the passwords differ; nothing changed")
    if len(password) < MIN_PASSWORD:
        raise GatewayError(f"the password must have at least {MIN_PASSWORD} characters; nothing changed")
    existed = args.name in users
    users[args.name] = hash_password(password)
    save_users(path, users)
    print(f"{'changed the password of' if existed else 'added'} {args.name} in {path}", file=sys.stderr)
    return 0


def _remove(args) -> int:
    path = users_file(args)
    users = _existing(path)
    if args.name not in users:
        raise GatewayError(f"{path} has no user {args.name!r}")
    del users[args.name]
    save_users(path, users)
    print(f"removed {args.name} from {path}", file=sys.stderr)
    return 0


def _list(args) -> int:
    names = sorted(_existing(users_file(args), must_exist=True))
    if args.json:
        print(json.dumps(names))
        return 0
    for name in names:
        print(name)
    return 0
