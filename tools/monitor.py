"""``smemet monitor``: a live table of what partners receive, from the MQTT
output — usable over SSH (plain ANSI, no curses).

Subscribes to a route's topics (json: ``<prefix>/<node>/<channel>``, senml:
``<prefix>/<node>``) and its retained status topic (``<prefix>/status``:
the gateway online or offline), and shows per node and channel: the last
value with its unit, quality, how long ago it came, the message rate and a
sparkline.  A row that stopped updating is marked ``stale`` (a dead node
keeps its last value on the screen, never as a fresh ``good``).

The table fits the terminal (columns are dropped, then shortened), is
coloured only on a terminal (bad red, uncertain yellow, stale dim; never with
``NO_COLOR``), and survives the broker going away: it says it is
reconnecting and carries on.  Broker, prefix, user, password and TLS can
come from a route in gateway.toml (``--gateway-config FILE --route NAME``).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from statistics import median
from urllib.parse import urlsplit

from . import term
from .errors import UserError

SPARKS = "▁▂▃▄▅▆▇█"
HISTORY = 24
RATE_WINDOW_S = 10.0
STALE_PERIODS = 3  # a row is stale after this many of its usual intervals without a message...
STALE_MIN_S = 10.0  # ...and at least this long
STALE_UNKNOWN_S = 30.0  # a row with too few messages to know its interval
RECONNECT_MAX_S = 10.0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "monitor",
        help="live table of measurements from the gateway's MQTT output",
        description="Subscribe to a route's topics and show node, channel, last value with unit, quality, age, "
        "rate and a sparkline, and whether the gateway is online. Reconnects when the broker goes away. "
        "Ctrl-C quits.",
    )
    parser.add_argument("--gateway-config", metavar="FILE",
                        help="take broker, prefix, user, password and TLS from a route of this gateway.toml (--route)")
    parser.add_argument("--route", metavar="NAME", help="the route of --gateway-config (default: its only or first one)")
    parser.add_argument("--broker", help="mqtt://HOST:PORT or mqtts://HOST:PORT (default mqtt://127.0.0.1:1883)")
    parser.add_argument("--prefix", help="the route's topic prefix (default: smemet)")
    parser.add_argument("--format", choices=("json", "senml"), help="the route's payload format (default json)")
    parser.add_argument("--username")
    parser.add_argument("--password-file", metavar="FILE", help="file holding the MQTT password")
    parser.add_argument("--ca", metavar="FILE", help="CA certificate for mqtts://")
    parser.add_argument("--duration", type=float, metavar="SECONDS", help="stop after SECONDS and print the table once more")
    parser.add_argument("--plain", action="store_true", help="no screen redraw: print the table at the end")
    parser.add_argument("--json", action="store_true", help="at the end, print the table as JSON (with --duration)")
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

    def stale(self, now: float) -> bool:
        """No message for longer than this row's usual interval allows."""
        age = now - self.last_seen
        times = list(self.arrivals)[-20:]
        gaps = [b - a for a, b in zip(times, times[1:]) if b > a]
        if len(gaps) < 2:
            return age > STALE_UNKNOWN_S
        return age > max(STALE_MIN_S, STALE_PERIODS * median(gaps))


@dataclass
class Link:
    """The broker connection and the gateway's status, for the header."""

    broker: str = ""
    topics: str = ""
    state: str = "connecting"  # connecting, connected, reconnecting
    since: float = 0.0
    attempts: int = 0
    last_error: str = ""
    gateway: dict | None = None  # the retained status message: {"state": "online", "gateway": ..., "route": ...}


class Table:
    """Rows keyed by (node, channel), fed with JSON or SenML payloads."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Row] = {}
        self.messages = 0
        self.unreadable = 0
        self.link = Link()

    def feed(self, payload: bytes, now: float) -> None:
        """One json-format message (a measurement)."""
        try:
            doc = json.loads(payload)
            self._record(str(doc["node"]), str(doc["channel"]), doc, now)
        except (ValueError, KeyError, TypeError, AttributeError):
            self.unreadable += 1
            return
        self.messages += 1

    def feed_senml(self, payload: bytes, now: float) -> None:
        """One senml-format message (a frame's pack of records)."""
        try:
            records = json.loads(payload)
            for record in records:
                node, _, channel = str(record["n"]).partition("/")
                value = record.get("v", record.get("vb", record.get("vs")))
                self._record(str(record.get("node", node)), channel,
                             {"unit": record.get("u"), "value": value, "quality": record.get("quality", "good"),
                              "reason": record.get("reason")}, now)
        except (ValueError, KeyError, TypeError, AttributeError):
            self.unreadable += 1
            return
        self.messages += 1

    def _record(self, node: str, channel: str, doc: dict, now: float) -> None:
        row = self.rows.setdefault((node, channel), Row())
        row.unit = doc.get("unit")
        row.value = doc.get("value")
        row.quality = doc.get("quality") or "good"
        row.reason = doc.get("reason")
        row.last_seen = now
        row.arrivals.append(now)
        if isinstance(row.value, (int, float)) and not isinstance(row.value, bool):
            row.history.append(float(row.value))

    def status(self, payload: bytes) -> None:
        try:
            doc = json.loads(payload)
        except ValueError:
            return
        if isinstance(doc, dict):
            self.link.gateway = doc

    # -- drawing --------------------------------------------------------------

    def header(self, now: float) -> str:
        link = self.link
        if link.state == "connected":
            where = f"{link.topics} on {link.broker}"
        elif link.state == "reconnecting":
            where = (f"RECONNECTING to {link.broker} for {now - link.since:.0f} s (attempt {link.attempts}"
                     + (f": {link.last_error}" if link.last_error else "") + "); the table shows what came before")
        else:
            where = f"connecting to {link.broker}"
        gateway = link.gateway
        if gateway is None:
            said = "gateway: no status yet"
        else:
            said = f"gateway {gateway.get('gateway', '?')}: {gateway.get('state', '?')}"
        return f"{said} | {where}"

    def snapshot(self, now: float) -> dict:
        """The table as JSON-able data (--json)."""
        return {
            "gateway": self.link.gateway, "broker": self.link.broker, "connection": self.link.state,
            "messages": self.messages, "unreadable": self.unreadable,
            "rows": [{"node": node, "channel": channel, "value": row.value, "unit": row.unit, "quality": row.quality,
                      "reason": row.reason, "age_s": round(now - row.last_seen, 1), "stale": row.stale(now),
                      "rate_per_s": round(row.rate(now), 2)}
                     for (node, channel), row in sorted(self.rows.items())],
        }

    def render(self, now: float, width: int = 200, color: bool = False) -> str:
        columns = _columns(width)
        lines = [_clip(self.header(now), width)]
        header = " ".join(f"{title:{align}{size}}" for title, align, size in columns)
        lines += [header.rstrip(), "-" * min(width, len(header.rstrip()))]
        for (node, channel), row in sorted(self.rows.items()):
            stale = row.stale(now)
            quality = "stale" if stale else (row.quality if not row.reason else f"{row.quality}:{row.reason}")
            cells = {"node": node, "channel": channel, "value": format_value(row.value), "unit": row.unit or "",
                     "quality": quality, "age": _age(now - row.last_seen), "rate/s": f"{row.rate(now):.1f}",
                     "trend": sparkline(row.history)}
            text = " ".join(f"{_clip(cells[title], size):{align}{size}}" for title, align, size in columns).rstrip()
            style = "dim" if stale else {"bad": "red", "uncertain": "yellow"}.get(row.quality)
            lines.append(term.paint(text, style, color) if style else text)
        footer = (f"{term.plural(self.messages, 'message')}, {term.plural(len(self.rows), 'channel')}"
                  + (f", {self.unreadable} unreadable" if self.unreadable else ""))
        lines.append(_clip(footer, width))
        return "\n".join(lines)


# (title, alignment, width); the first columns to go on a narrow terminal are last here
_COLUMNS = (("node", "<", 16), ("channel", "<", 14), ("value", ">", 12), ("unit", "<", 5), ("quality", "<", 16),
            ("age", ">", 5), ("rate/s", ">", 6), ("trend", "<", HISTORY))
_DROP_ORDER = ("trend", "rate/s", "unit")


def _columns(width: int) -> list[tuple[str, str, int]]:
    """The columns that fit ``width``: drop the least needed, then shorten
    node, channel and quality down to a floor."""
    columns = [list(c) for c in _COLUMNS]

    def total() -> int:
        return sum(c[2] for c in columns) + len(columns) - 1

    for name in _DROP_ORDER:
        if total() <= width:
            break
        columns = [c for c in columns if c[0] != name]
    for name, floor in (("quality", 9), ("channel", 8), ("node", 8), ("value", 9)):
        excess = total() - width
        if excess <= 0:
            break
        column = next(c for c in columns if c[0] == name)
        column[2] -= min(excess, column[2] - floor)
    return [tuple(c) for c in columns]


def _clip(text: str, size: int) -> str:
    return text if len(text) <= size else text[:max(0, size - 1)] + "…"


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


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


# -- where to connect ------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    broker: str
    hostname: str
    port: int
    prefix: str
    format: str
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None


def check_prefix(prefix: str) -> str:
    bad = (not prefix or prefix.startswith(("/", "$")) or prefix.endswith("/") or "//" in prefix
           or any(c in prefix for c in "+#\0"))
    if bad:
        raise UserError(f"--prefix {prefix!r} is not a topic prefix: give the route's topic_prefix as in gateway.toml, "
                        "levels like plant1/partner-a without wildcards (+ #), a leading / or $, or a trailing /")
    return prefix


def source(args) -> Source:
    """Broker, prefix, format and credentials from the arguments, a route
    of gateway.toml filling what they leave out."""
    route = _route(args) if args.gateway_config else None
    broker = args.broker or (route.url if route else "mqtt://127.0.0.1:1883")
    url = urlsplit(broker)
    try:
        port = url.port
    except ValueError:
        port = -1
    if url.scheme not in ("mqtt", "mqtts") or not url.hostname or port == -1:
        raise UserError(f"--broker {broker!r}: use mqtt://HOST:PORT or mqtts://HOST:PORT")
    prefix = check_prefix(args.prefix or (route.topic_prefix if route else "smemet"))
    username = args.username or (route.username if route else None)
    password = route.password if route and not args.password_file else None
    if args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as f:
                password = f.read().strip()
        except (OSError, UnicodeError) as exc:
            raise UserError(f"cannot read --password-file {args.password_file}: "
                            f"{getattr(exc, 'strerror', None) or exc}") from None
    tls = None
    if url.scheme == "mqtts":
        try:
            if route is not None and route.tls is not None and not args.ca:
                from smemet.gateway.sinks.mqtt.config import tls_context

                tls = tls_context(route.tls)
            else:
                tls = ssl.create_default_context(cafile=args.ca) if args.ca else ssl.create_default_context()
        except (OSError, ssl.SSLError) as exc:
            raise UserError(f"cannot use --ca {args.ca}: {getattr(exc, 'strerror', None) or exc}") from None
    return Source(broker, url.hostname, port or (8883 if url.scheme == "mqtts" else 1883), prefix,
                  args.format or (route.format if route else "json"), username, password, tls)


def _route(args):
    from smemet.gateway.config import load_config
    from smemet.gateway.errors import GatewayError

    try:
        routes = load_config(args.gateway_config).routes
    except GatewayError as exc:
        raise UserError(f"bad gateway config: {exc}") from None
    if not routes:
        raise UserError(f"{args.gateway_config} has no [[routes]]; give --broker and --prefix")
    if args.route is None:
        return routes[0]
    for route in routes:
        if route.name == args.route:
            return route
    raise UserError(f"{args.gateway_config} has no route {args.route!r}; its routes: {', '.join(r.name for r in routes)}")


# -- watching -----------------------------------------------------------------------


def explain(exc: Exception, broker: str) -> tuple[str, bool]:
    """(one line, whether retrying can help) for a failed connection."""
    import aiomqtt

    code = getattr(exc, "rc", None)
    value = getattr(code, "value", code)
    if isinstance(value, int) and value in (4, 5, 0x86, 0x87, 0x8C):
        return (f"the broker at {broker} refused the login (not authorized): check --username and the password "
                "(--password-file, or the route's password_file)", False)
    if isinstance(value, int) and value in (2, 0x85):
        return f"the broker at {broker} refused the client id; try again", True
    text = str(exc) or type(exc).__name__
    if isinstance(exc, aiomqtt.MqttError) and ("refused" in text.lower() or "errno" in text.lower()
                                               or "timed out" in text.lower()):
        return (f"cannot reach the broker at {broker}: {text} (is it running, and the address right?)", True)
    return f"the broker at {broker} said: {text}", True


async def watch(args, table: Table, src: Source) -> None:
    import aiomqtt

    live = not args.plain and not args.json and sys.stdout.isatty()
    color = live and term.color_enabled()
    deadline = time.monotonic() + args.duration if args.duration else float("inf")
    data_topic = f"{src.prefix}/+/+" if src.format == "json" else f"{src.prefix}/+"
    status_topic = f"{src.prefix}/status"
    table.link.broker, table.link.topics = src.broker, data_topic
    ever_connected = False
    backoff = 0.5
    while time.monotonic() < deadline:
        try:
            async with aiomqtt.Client(src.hostname, src.port, username=src.username, password=src.password,
                                      tls_context=src.tls, identifier=f"smemet-monitor-{time.time_ns()}",
                                      timeout=5) as client:
                await client.subscribe(data_topic, qos=0)
                await client.subscribe(status_topic, qos=0)
                if ever_connected:
                    term.progress(f"monitor: connected again to {src.broker}")
                else:
                    term.progress(f"monitoring {data_topic} on {src.broker} (Ctrl-C quits)")
                ever_connected, backoff = True, 0.5
                table.link.state, table.link.attempts, table.link.last_error = "connected", 0, ""
                consumer = asyncio.create_task(_consume(client, table, src, status_topic))
                try:
                    while time.monotonic() < deadline:
                        done, _ = await asyncio.wait({consumer}, timeout=max(0.0, min(1.0, deadline - time.monotonic())))
                        if consumer in done:
                            consumer.result()  # the connection ended: MqttError
                        if live:
                            _draw(table, color)
                finally:
                    consumer.cancel()
                    await asyncio.gather(consumer, return_exceptions=True)
                return
        except (aiomqtt.MqttError, ConnectionError) as exc:
            line, retry = explain(exc, src.broker)
            if not retry or not ever_connected:
                raise UserError(line) from None
            if table.link.state == "connected":
                table.link.state, table.link.since = "reconnecting", time.time()
                term.progress(f"monitor: lost the broker ({line}); reconnecting")
            table.link.attempts += 1
            table.link.last_error = line
            if live:
                _draw(table, color)
            await asyncio.sleep(min(backoff, max(0.0, deadline - time.monotonic())))
            backoff = min(RECONNECT_MAX_S, backoff * 2)


async def _consume(client, table: Table, src: Source, status_topic: str) -> None:
    async for message in client.messages:
        if str(message.topic) == status_topic:
            table.status(message.payload)
        elif src.format == "json":
            table.feed(message.payload, time.time())
        else:
            table.feed_senml(message.payload, time.time())
    raise ConnectionError("the broker closed the connection")


def _draw(table: Table, color: bool) -> None:
    width = shutil.get_terminal_size((100, 24)).columns
    sys.stdout.write("\x1b[H\x1b[2J" + table.render(time.time(), width, color) + "\n")
    sys.stdout.flush()


def run(args) -> int:
    src = source(args)
    table = Table()
    try:
        asyncio.run(watch(args, table, src))
    except KeyboardInterrupt:
        pass
    if args.json:
        json.dump(table.snapshot(time.time()), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        width = shutil.get_terminal_size((100, 24)).columns if sys.stdout.isatty() else 200
        print(table.render(time.time(), width, sys.stdout.isatty() and term.color_enabled()))
    return 0
