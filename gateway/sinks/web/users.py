"""``smemet gateway web-user add|remove|list``: the web console's users file
(``name:scrypt-hash`` lines, mode 0600; see ``passwords.py``).

    smemet gateway web-user add anna --config /etc/smemet/gateway.toml
    smemet gateway web-user add anna --users-file /etc/smemet/web-users --password-stdin < pw.txt

With ``--config`` the file is the one ``[web] users_file`` names.  The
password is asked twice on a terminal (never an argument: it would land in
the shell history and the process list).
"""

from __future__ import annotations

import getpass
import json
import os
import sys
import tomllib

from ...errors import ConfigError, GatewayError
from .passwords import USER_NAME, PasswordHashError, hash_password, read_users_file, write_users_file

MIN_PASSWORD = 8


def register(commands, guard) -> None:
    """Add ``web-user`` to the ``smemet gateway`` subcommands; ``guard``
    wraps each leaf so user errors are one line and exit 2."""
    parser = commands.add_parser("web-user", help="users of the web console (passwords stored hashed, file mode 0600)")
    leaves = parser.add_subparsers(dest="web_user_command", metavar="COMMAND", required=True)
    add = leaves.add_parser("add", help="add a user or set a user's password")
    add.add_argument("name", help="user name (letters, digits, . _ @ -)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    _file_arguments(add)
    add.set_defaults(func=guard(_add))
    remove = leaves.add_parser("remove", help="remove a user")
    remove.add_argument("name")
    _file_arguments(remove)
    remove.set_defaults(func=guard(_remove))
    listing = leaves.add_parser("list", help="list the user names (not the hashes)")
    _file_arguments(listing)
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(func=guard(_list))


def _file_arguments(parser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--users-file", metavar="FILE", help="the users file (created mode 0600 if missing)")
    source.add_argument("--config", metavar="FILE", help="take the users file from this gateway.toml's [web] users_file")


def users_file(args) -> str:
    if args.users_file:
        return args.users_file
    try:
        with open(args.config, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(args.config, f"cannot read the config ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(args.config, f"not valid TOML ({exc})") from None
    web = data.get("web")
    name = web.get("users_file") if isinstance(web, dict) else None
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{args.config}: web.users_file",
                          'is not set; add users_file = "web-users" to [web], or give --users-file FILE')
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(args.config)), os.path.expanduser(name)))


def _load(path: str, must_exist: bool = False) -> dict[str, str]:
    if not os.path.exists(path):
        if must_exist:
            raise GatewayError(f"{path} does not exist; add a user with `smemet gateway web-user add NAME "
                               f"--users-file {path}` (it creates the file)")
        return {}
    try:
        return read_users_file(path)
    except PasswordHashError as exc:
        raise GatewayError(f"{path}: {exc}") from None
    except OSError as exc:
        raise GatewayError(f"{path}: cannot read it ({exc.strerror})") from None


def _check_folder(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise GatewayError(f"{path}: folder {folder} does not exist; create it first (mkdir -p {folder}) "
                           "or give another --users-file")


def _password(args) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise GatewayError("no terminal to ask the password on: pipe it in with --password-stdin")
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise GatewayError("the two passwords differ; nothing changed")
    if len(password) < MIN_PASSWORD:
        raise GatewayError(f"the password must have at least {MIN_PASSWORD} characters; nothing changed")
    return password


def _add(args) -> int:
    if not USER_NAME.match(args.name):
        raise GatewayError(f"{args.name!r} is not a valid user name: use 1-64 letters, digits, '.', '_', '@' or '-'")
    path = users_file(args)
    _check_folder(path)
    users = _load(path)
    existed = args.name in users
    users[args.name] = hash_password(_password(args))
    try:
        write_users_file(path, users)
    except OSError as exc:
        raise GatewayError(f"{path}: cannot write it ({exc.strerror})") from None
    print(f"{'updated' if existed else 'added'} web console user {args.name} in {path} "
          "(mode 0600); restart the gateway to use it", file=sys.stderr)
    return 0


def _remove(args) -> int:
    path = users_file(args)
    users = _load(path)
    if args.name not in users:
        raise GatewayError(f"{path} has no user {args.name!r}")
    del users[args.name]
    write_users_file(path, users)
    print(f"removed web console user {args.name} from {path}; restart the gateway", file=sys.stderr)
    return 0


def _list(args) -> int:
    names = list(_load(users_file(args), must_exist=True))
    if args.json:
        print(json.dumps(names))
        return 0
    for name in names:
        print(name)
    return 0
