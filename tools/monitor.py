"""``smemet monitor``: a live table of what partners receive, from the MQTT
output — usable over SSH (plain ANSI, no curses).

Subscribes to a route's JSON topics (``<prefix>/<node>/<channel>``) and shows,
per node and channel: the last value with its unit, quality, message rate and
a sparkline of recent values.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .errors import UserError

SPARKS = "▁▂▃▄▅▆▇█"
HISTORY = 24
RATE_WINDOW_S = 10.0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "monitor",
        help="live table of measurements from the gateway's MQTT output",
        description="Subscribe to a route's JSON topics and show node, channel, last value with unit, "
        "quality, rate and a sparkline. Ctrl-C quits.",
    )
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    parser.add_argument("--prefix", default="smemet", help="the route's topic prefix (default: smemet)")
    parser.add_argument("--username")
    parser.add_argument("--password-file", help="file holding the MQTT password")
    parser.add_argument("--ca", help="CA certificate for mqtts://")
    parser.add_argument("--duration", type=float, help="stop after SECONDS and print the table once more")
    parser.add_argument("--plain", action="store_true", help="no screen redraw: print the table at the end")
    parser.set_defaults(func=run)


@dataclass
class Row:
    unit: str | None = None
    value: object = None
    quality: str = "good"
    reason: str | None = None
    last_seen: float = 0.0
    arrivals: deque = field(default_factory=lambda: deque(maxlen=1000))
    history: deque = field(default_factory=lambda: deque(maxlen=HISTORY))

    def rate(self, now: float) -> float:
        recent = [t for t in self.arrivals if now - t <= RATE_WINDOW_S]
        return len(recent) / RATE_WINDOW_S


class Table:
    """Rows keyed by (node, channel), fed with JSON payloads."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Row] = {}
        self.messages = 0
        self.unreadable = 0

    def feed(self, payload: bytes, now: float) -> None:
        try:
            doc = json.loads(payload)
            key = (str(doc["node"]), str(doc["channel"]))
        except (ValueError, KeyError, TypeError):
            self.unreadable += 1
            return
        row = self.rows.setdefault(key, Row())
        row.unit = doc.get("unit")
        row.value = doc.get("value")
        row.quality = doc.get("quality", "good")
        row.reason = doc.get("reason")
        row.last_seen = now
        row.arrivals.append(now)
        if isinstance(row.value, (int, float)) and not isinstance(row.value, bool):
            row.history.append(float(row.value))
        self.messages += 1

    def render(self, now: float) -> str:
        header = f"{'node':<16} {'channel':<14} {'value':>14} {'unit':<6} {'quality':<22} {'rate/s':>7}  trend"
        lines = [header, "-" * len(header)]
        for (node, channel), row in sorted(self.rows.items()):
            quality = row.quality if not row.reason else f"{row.quality}:{row.reason}"
            lines.append(
                f"{node[:16]:<16} {channel[:14]:<14} {format_value(row.value):>14} {row.unit or '':<6} "
                f"{quality[:22]:<22} {row.rate(now):>7.1f}  {sparkline(row.history)}"
            )
        lines.append(f"{self.messages} messages, {len(self.rows)} channels"
                     + (f", {self.unreadable} unreadable" if self.unreadable else ""))
        return "\n".join(lines)


def format_value(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def sparkline(values) -> str:
    values = list(values)
    if not values:
        return ""
    low, high = min(values), max(values)
    span = high - low or 1.0
    return "".join(SPARKS[min(len(SPARKS) - 1, int((v - low) / span * len(SPARKS)))] for v in values)


def broker_settings(args) -> dict:
    url = urlsplit(args.broker)
    if url.scheme not in ("mqtt", "mqtts") or not url.hostname:
        raise UserError(f"--broker {args.broker!r}: use mqtt://HOST:PORT or mqtts://HOST:PORT")
    settings: dict = {"hostname": url.hostname, "port": url.port or (8883 if url.scheme == "mqtts" else 1883)}
    if args.username:
        settings["username"] = args.username
    if args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as f:
                settings["password"] = f.read().strip()
        except OSError as exc:
            raise UserError(f"cannot read --password-file {args.password_file}: {exc.strerror}") from None
    if url.scheme == "mqtts":
        import ssl

        context = ssl.create_default_context(cafile=args.ca) if args.ca else ssl.create_default_context()
        settings["tls_context"] = context
    return settings


async def watch(args, table: Table) -> None:
    import aiomqtt

    settings = broker_settings(args)
    live = not args.plain and sys.stdout.isatty()
    deadline = time.monotonic() + args.duration if args.duration else float("inf")
    try:
        async with aiomqtt.Client(**settings, identifier=f"smemet-monitor-{time.time_ns()}") as client:
            await client.subscribe(f"{args.prefix}/+/+", qos=0)
            print(f"monitoring {args.prefix}/+/+ on {args.broker} (Ctrl-C quits)", file=sys.stderr, flush=True)
            messages = aiter(client.messages)
            next_draw = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                try:
                    async with asyncio.timeout(max(0.0, min(next_draw, deadline) - time.monotonic())):
                        message = await anext(messages)
                    table.feed(message.payload, time.time())
                except TimeoutError:
                    pass
                if live and time.monotonic() >= next_draw:
                    sys.stdout.write("\x1b[H\x1b[2J" + table.render(time.time()) + "\n")
                    sys.stdout.flush()
                    next_draw = time.monotonic() + 1.0
    except aiomqtt.MqttError as exc:
        raise UserError(f"cannot reach the broker at {args.broker}: {exc} "
                        "(is the gateway's broker running, and the address and credentials right?)") from None


def run(args) -> int:
    table = Table()
    try:
        asyncio.run(watch(args, table))
    except KeyboardInterrupt:
        pass
    print(table.render(time.time()))
    return 0
