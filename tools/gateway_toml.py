"""A small gateway.toml for a gateway the tools run themselves (the demo,
tests): UDP ingest, an outbox, metrics, optional MQTT routes, a Sparkplug
edge node, an OPC UA server and the web console.  The full
reference is docs/gateway.toml."""

from __future__ import annotations

import json
from pathlib import Path


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table (a route's agreement, its parties, pseudonyms)
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def gateway_toml(directory: Path, *, udp_port: int, metrics_port: int, routes: list[dict] = (),
                 keys_file: str = "keys.toml", gateway_id: str = "smemet-gw", bind: str = "127.0.0.1",
                 log_level: str = "warning", sparkplug: dict | None = None, opcua: dict | None = None,
                 web_port: int | None = None, channels: dict[str, list[dict]] | None = None,
                 outbox: dict | None = None) -> str:
    lines = [
        "[gateway]", f"id = {_value(gateway_id)}", "shutdown_grace = 3.0", "",
        "[keys]", f"file = {_value(keys_file)}", "",
        "[ingest.udp]", f"bind = {_value(bind)}", f"port = {udp_port}", "",
        "[outbox]", f"path = {_value(str(Path(directory) / 'outbox.sqlite'))}", 'prune_interval = "5s"',
        *(f"{key} = {_value(value)}" for key, value in (outbox or {}).items()), "",
        "[metrics]", 'bind = "127.0.0.1"', f"port = {metrics_port}", "",
        "[log]", f"level = {_value(log_level)}", "",
    ]
    if opcua is not None:
        lines.append("[opcua]")
        lines += [f"{key} = {_value(value)}" for key, value in opcua.items()]
        lines.append("")
    if web_port is not None:  # the web console, loopback only: open without a login
        lines += ["[web]", 'bind = "127.0.0.1"', f"port = {web_port}", ""]
    for pattern, steps in (channels or {}).items():  # processing chains: "node/channel" glob -> steps
        for step in steps:
            lines.append(f"[[channels.{_value(pattern)}.steps]]")
            lines += [f"{key} = {_value(value)}" for key, value in step.items()]
            lines.append("")
    for route in routes:
        lines.append("[[routes]]")
        lines += [f"{key} = {_value(value)}" for key, value in route.items()]
        lines.append("")
    if sparkplug:
        lines.append("[sparkplug]")
        lines += [f"{key} = {_value(value)}" for key, value in sparkplug.items()]
        lines.append("")
    return "\n".join(lines)


def write_gateway_config(directory: Path | str, **options) -> Path:
    """Write ``directory/gateway.toml``; returns its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "gateway.toml"
    path.write_text(gateway_toml(directory, **options))
    return path
