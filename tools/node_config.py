"""A node's config.json as the field tools write it (format:
docs/firmware.md), and its check by the firmware's own validator
(node/config.py run in the MicroPython unix port against the image), so a
mistake is caught on the laptop, before anything is copied to the node.
"""

from __future__ import annotations

import json
import socket
import subprocess
import tempfile
from pathlib import Path

from .errors import UserError

DEFAULT_GATEWAY_PORT = 47000
# sys.platform on the node -> the firmware's board name
BOARDS = {"linux": "sim", "esp32": "esp32_devkit", "rp2": "rpi_pico"}
# A real board with no channels given: one type K thermocouple on a MAX31856
# (chip select GPIO 5), read every second — the commonest first sensor.
DEFAULT_CHANNELS = [{"name": "t1", "driver": "max31856", "tc_type": "K", "cs": 5, "period_ms": 1000}]
# Keys the tools own in a template: a template cannot set them.
_OWNED = ("node_id", "key")


def parse_gateway(text: str, default_port: int = DEFAULT_GATEWAY_PORT) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port); the host
    must resolve here (a typo is caught now, not on the node)."""
    host, port = text, default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _port(port_text, text)
    if not host:
        raise UserError(f"--gateway {text!r}: give HOST or HOST:PORT, e.g. 192.168.10.2:47000")
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror:
        raise UserError(f"--gateway {text!r}: cannot resolve {host!r}; give the gateway's IP address "
                        "(nodes on site usually have no DNS)") from None
    return host, port


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise UserError(f"--gateway {whole!r}: the port must be a number 1..65535")
    return int(text)


def parse_channel(spec: str) -> dict:
    """``NAME=DRIVER[,SETTING=VALUE...]`` -> a channel object; values are
    read as JSON when they parse (numbers, true/false), else as text."""
    head, *settings = spec.split(",")
    name, sep, driver = head.partition("=")
    if not sep or not name or not driver:
        raise UserError(f"--channel {spec!r}: write NAME=DRIVER[,SETTING=VALUE...], e.g. tc1=max31856,tc_type=S")
    channel: dict = {"name": name.strip(), "driver": driver.strip()}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--channel {spec!r}: setting {item!r} is not SETTING=VALUE")
        try:
            channel[key.strip()] = json.loads(value)
        except ValueError:
            channel[key.strip()] = value
    return channel


def load_template(path: str) -> dict:
    """A config.json template: any node settings (channels, batch, health,
    transport options, ...); node_id and key are filled in by the tool."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"template {path} does not exist") from None
    except (OSError, UnicodeError) as exc:
        raise UserError(f"cannot read template {path}: {exc}") from None
    except ValueError as exc:
        raise UserError(f"template {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"template {path} must be a JSON object like config.json (docs/firmware.md)")
    return {k: v for k, v in data.items() if k not in _OWNED}


def build(node_id: str, key: bytes, board: str, gateway: tuple[str, int], template: dict | None = None,
          channels: list[dict] | None = None) -> dict:
    """The node's config.json: the template's settings, then the node's
    identity, board, UDP transport to the gateway and channels."""
    config = json.loads(json.dumps(template or {}))
    transport = config.get("transport") if isinstance(config.get("transport"), dict) else {}
    transport = {k: v for k, v in transport.items() if k not in ("type", "gateway", "port", "device", "uart")}
    host, port = gateway
    config.update(node_id=node_id, key=key.hex(), board=config.get("board", board))
    config["transport"] = {"type": "udp", "gateway": host, "port": port, **transport}
    if channels:
        config["channels"] = channels
    elif "channels" not in config:
        config["channels"] = list(DEFAULT_CHANNELS)
    if config["board"] == "sim":
        config.setdefault("sim", {"scenario": "sim.json", "time_scale": 1.0})
        config.setdefault("watchdog_ms", 0)  # the unix port: no watchdog thread needed
    return config


def known_drivers(image: str | Path | None = None) -> list[str]:
    """The drivers a firmware has: from a built image's manifest, else this
    checkout's firmware/drivers/ (what `smemet firmware build` compiles)."""
    if image is not None:
        try:
            files = json.loads((Path(image) / "manifest.json").read_text()).get("files", {})
        except (OSError, ValueError):
            files = {}
        names = {path.split("/")[1] for path in files if path.startswith("drivers/") and path.count("/") == 2
                 and path.rsplit("/", 1)[1].startswith("__init__.")}
    else:
        from .firmware_tool import FIRMWARE

        names = {entry.name for entry in (FIRMWARE / "drivers").iterdir() if (entry / "__init__.py").is_file()}
    return sorted(names - {"health"})


def check_drivers(channels: list, image: str | Path | None = None) -> None:
    """UserError naming the first channel whose driver the firmware lacks."""
    known = None
    for channel in channels:
        driver = channel.get("driver") if isinstance(channel, dict) else None
        if not isinstance(driver, str):
            continue
        known = known if known is not None else known_drivers(image)
        if known and driver not in known:
            raise UserError(f"channel {channel.get('name')!r}: unknown driver {driver!r}; the firmware has "
                            f"{', '.join(known)} (a new one: smemet new-driver NAME --bus ...)")


_VALIDATE = """\
import sys
sys.path[:0] = [{lib!r}, {image!r}]
from node import config
try:
    config.load()
    print('CONFIG OK')
except config.ConfigError as exc:
    for p in exc.problems:
        print('PROBLEM', p)
"""


def check_with_firmware(config: dict, image: Path) -> list[str]:
    """The problems the firmware itself would print for ``config`` (empty:
    valid), found by running node/config.py from ``image`` in MicroPython."""
    from .simnode import SimNodeError, micropython_path

    try:
        micropython = micropython_path()
    except SimNodeError:
        return []  # no MicroPython here: the node checks it at boot
    image = Path(image).resolve()
    with tempfile.TemporaryDirectory(prefix="smemet-config-") as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(config))
        code = _VALIDATE.format(lib=str(image / "lib"), image=str(image))
        result = subprocess.run([micropython, "-X", "heapsize=1M", "-c", code], cwd=tmp, capture_output=True,
                                text=True, timeout=30)
    out = result.stdout
    if "CONFIG OK" in out:
        return []
    problems = [line[len("PROBLEM "):] for line in out.splitlines() if line.startswith("PROBLEM ")]
    return problems or [f"the firmware's config check failed: {(result.stderr or out).strip()[-300:]}"]
