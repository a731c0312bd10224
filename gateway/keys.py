"""The node key store: a file mapping node id -> hex key (HMAC-SHA-256).

TOML (``node-1 = "5ac3…"``) or JSON (``{"node-1": "5ac3…"}``), chosen by the
file's extension.  The file must belong to the user running the gateway and be
readable by nobody else (mode 0600 or 0400): the gateway refuses to start
otherwise.  Keys are never logged or printed except by ``keys add``, which
prints the new key once so it can be given to the node.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import stat
import tomllib

from .errors import ConfigError, KeyFileError
from .settings import read_text, who_may_access

KEY_BYTES = 32  # the HMAC key length `keys add` generates
MIN_KEY_BYTES = 16
NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,31}$")



def check_permissions(path: str) -> None:
    """Raise KeyFileError unless ``path`` is owned by us and private."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise KeyFileError(f"{path}: key file not found; create it with `smemet gateway keys add NODE --key-file {path}`") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key file ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise KeyFileError(f"{path}: key file is not a regular file")
    if info.st_uid != os.geteuid():
        raise KeyFileError(
            f"{path}: key file is owned by uid {info.st_uid}, not by the user running the gateway "
            f"(uid {os.geteuid()}); fix with `chown {os.geteuid()} {path}` and `chmod 600 {path}`"
        )
    if info.st_mode & 0o077:
        raise KeyFileError(
            f"{path}: key file is {who_may_access(info.st_mode)} (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"node keys must be readable by the gateway's user only: fix with `chmod 600 {path}`"
        )


def validate_node_id(node: str) -> None:
    if not NODE_ID.match(node):
        raise KeyFileError(
            f"node id {node!r} is not valid: 1-32 characters, letters, digits and . _ : - (starting with a letter or digit)"
        )


def _parse(path: str, text: str) -> dict[str, str]:
    try:
        if path.endswith(".json"):
            data = json.loads(text)
        else:
            data = tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise KeyFileError(f"{path}: not valid {'JSON' if path.endswith('.json') else 'TOML'} ({exc})") from None
    if not isinstance(data, dict):
        raise KeyFileError(f"{path}: must map node ids to hex keys")
    if isinstance(data.get("nodes"), dict) and len(data) == 1:  # a [nodes] table is fine too
        data = data["nodes"]
    return data


def _decode_key(path: str, node: str, value: object) -> bytes:
    # The message never repeats the value: it may be a key.
    if not isinstance(value, str):
        raise KeyFileError(f"{path}: key of node {node!r} must be a hex string")
    try:
        key = bytes.fromhex(value)
    except ValueError:
        raise KeyFileError(f"{path}: key of node {node!r} is not valid hex") from None
    if len(key) < MIN_KEY_BYTES:
        raise KeyFileError(f"{path}: key of node {node!r} is {len(key)} bytes; at least {MIN_KEY_BYTES} are required")
    return key


class KeyStore:
    """Node keys by kid (the node id as bytes)."""

    def __init__(self, keys: dict[str, bytes]) -> None:
        self._by_kid = {node.encode(): key for node, key in keys.items()}

    @classmethod
    def load(cls, path: str) -> "KeyStore":
        check_permissions(path)
        text = _read(path)
        keys = {}
        for node, value in _parse(path, text).items():
            validate_node_id(node)
            keys[node] = _decode_key(path, node, value)
        return cls(keys)

    def replace_with(self, other: "KeyStore") -> None:
        """Take ``other``'s keys in place, so every holder of ``get`` sees them
        (a reload on SIGHUP: nodes added, removed or re-keyed)."""
        self._by_kid = other._by_kid

    def get(self, kid: bytes) -> bytes | None:
        """The key of the node with this kid, or None (unknown node)."""
        return self._by_kid.get(kid)

    def nodes(self) -> list[str]:
        return sorted(kid.decode() for kid in self._by_kid)

    def __len__(self) -> int:
        return len(self._by_kid)

    def __repr__(self) -> str:  # never show keys
        return f"KeyStore({len(self)} nodes)"


def add_key(path: str, node: str, key: bytes | None = None) -> bytes:
    """Add ``node`` to the key file (created 0600 if missing) and return its
    key (a new random one unless given).  Refuses to replace an existing key."""
    validate_node_id(node)
    if key is None:
        key = secrets.token_bytes(KEY_BYTES)
    elif len(key) < MIN_KEY_BYTES:
        raise KeyFileError(f"a key must be at least {MIN_KEY_BYTES} bytes")
    if os.path.exists(path):
        check_permissions(path)
        text = _read(path)
        existing = _parse(path, text) if text.strip() else {}
    else:
        _check_directory(path)
        text, existing = "", {}
    if node in existing:
        raise KeyFileError(f"{path}: node {node!r} already has a key; remove its line first to replace it")
    existing[node] = key.hex()
    if path.endswith(".json"):
        new_text = json.dumps(existing, indent=2, sort_keys=True) + "\n"
    else:
        new_text = text + ("" if not text or text.endswith("\n") else "\n") + f'"{node}" = "{key.hex()}"\n'
    # Write beside, fsync, rename: a crash leaves the old file or the new one.
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, new_text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError as exc:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise KeyFileError(f"{path}: cannot write the key file ({_why(exc, path)}); nothing was changed") from None
    return key


def _read(path: str) -> str:
    try:
        return read_text(path, "key file")
    except ConfigError as exc:
        raise KeyFileError(str(exc)) from None


def _check_directory(path: str) -> None:
    """The folder a new key file goes into must exist and be ours to write."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise KeyFileError(f"{path}: folder {directory} does not exist; create it first (mkdir -p {directory}) "
                           "or give another --key-file")
    if not os.access(directory, os.W_OK):
        raise KeyFileError(f"{path}: folder {directory} is not writable by this user; run as its owner "
                           f"(e.g. sudo -u smemet ...) or give another --key-file")


def _why(exc: OSError, path: str) -> str:
    if exc.errno == errno.EACCES or exc.errno == errno.EPERM:
        return f"permission denied on {os.path.dirname(os.path.abspath(path))}: run as its owner"
    if exc.errno == errno.EROFS:
        return "the file system is read-only"
    if exc.errno == errno.ENOSPC:
        return "the disk is full"
    return exc.strerror or str(exc)
