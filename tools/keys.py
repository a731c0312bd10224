"""Reading node keys for the tools: a key store file maps node ids to hex
keys.  Accepted forms: JSON ``{"node-id": "hex", ...}``, or TOML with either
``node-id = "hex"`` lines or ``[nodes.node-id]`` tables holding ``key``."""

from __future__ import annotations

import json
import pathlib
import tomllib

from .errors import UserError


def parse_key(text: str, what: str = "key") -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise UserError(f"{what} is not hexadecimal: give 32 bytes as 64 hex digits") from None
    if not 16 <= len(key) <= 64:
        raise UserError(f"{what} is {len(key)} bytes; node keys are 16 to 64 bytes (32 recommended)")
    return key


def load_key_file(path: str) -> dict[bytes, bytes]:
    """kid (node id as bytes) -> key."""
    file = pathlib.Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"key file {path} does not exist") from None
    except PermissionError:
        raise UserError(f"cannot read key file {path}: permission denied (run as its owner)") from None
    try:
        table = json.loads(text) if text.lstrip().startswith("{") else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"key file {path} is neither JSON nor TOML: {exc}") from None
    if isinstance(table.get("nodes"), dict):
        table = table["nodes"]
    keys: dict[bytes, bytes] = {}
    for node, entry in table.items():
        hex_key = entry.get("key") if isinstance(entry, dict) else entry
        if not isinstance(hex_key, str):
            raise UserError(f"key file {path}: node {node!r} has no hex key")
        keys[node.encode()] = parse_key(hex_key, f"key file {path}: key of node {node!r}")
    return keys
