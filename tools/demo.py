"""``smemet demo``: the whole system on embedded defaults, in one command.

In a temporary directory: a gateway config and key store (mode 0600), an
embedded MQTT broker (amqtt, MQTT 3.1.1, loopback) unless ``--broker`` names
one, the gateway (in this process), the firmware built and a handful of
simulated nodes (the real firmware in MicroPython VMs) running plant
scenarios: a furnace heat-up read by type S and B thermocouples, a 4–20 mA
cooling-water flow loop whose wire breaks, a rolling-mill fan bearing
wearing out.  The gateway's web console is on (loopback, port 8470 or a
free one) and its URL printed.  The demo subscribes to the gateway's MQTT
output itself and counts the measurements; on Ctrl-C or after
``--duration`` it stops the nodes, lets the gateway deliver what it
accepted, and prints::

    demo: 3 nodes, 1234 measurements delivered, 0 lost

"lost" counts measurements the gateway accepted (stored, ACKed) that did not
reach the subscriber by the end — it must be 0.

The gateway runs two routes under two data-sharing agreements: the plant's
historian (every channel, raw, on ``smemet/#``) and a research institute
(the furnace temperatures as 10-second means and maxima, the furnace under
an alias, on ``institute/#``).  The demo prints how to verify what the
institute receives (``smemet verify`` with the gateway key's fingerprint)
and, at the end, verifies its own capture of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from . import flash, sim_fleet
from .errors import UserError
from .gateway_toml import write_gateway_config

PREFIX = "smemet"
# The furnace thermocouples apply calibration records: none at first (values
# pass unchanged); `smemet calibration add furnace-1/tc_s ... --gateway-config
# <the printed config>` corrects them from then on, each message naming it.
CHANNELS = {"furnace-*/tc_*": [{"type": "calibration"}]}
SPARKPLUG_GROUP, SPARKPLUG_EDGE = "smemet-demo", "demo-gw"
WEB_PORT = 8470  # the console's default port (docs/gateway.toml)
INSTITUTE = "institute"  # the second route's topic prefix
PARTIES = [{"name": "Demo Steelworks", "role": "provider"}]
HISTORIAN_AGREEMENT = {
    "id": "PLANT-HISTORIAN", "version": 1, "purpose": "the plant's own process historian",
    "parties": PARTIES + [{"name": "Demo Steelworks, process engineering", "role": "recipient"}], "include": ["*"],
}
INSTITUTE_AGREEMENT = {
    "id": "IMT-DEMO", "version": 1, "purpose": "research on furnace heat-up curves",
    "parties": PARTIES + [{"name": "Institute for Metallurgy", "role": "recipient"}],
    "include": ["furnace-*/tc_*"], "exclude": ["*/*.cj"],
    "resolution": {"period": "10s", "aggregates": ["mean", "max", "count"], "grace": "2s"},
    "pseudonyms": {"furnace-1": "site-A"}, "fields": ["unit"],
}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="gateway + simulated plant nodes + MQTT broker, on embedded defaults",
        description="Run the gateway, an embedded MQTT broker and simulated nodes (furnace thermocouples, a 4-20 mA "
        "flow loop with a wire break, a fan bearing's vibration) in a temporary directory; print how to "
        "subscribe, a live count, and on exit (Ctrl-C or --duration) the measurements delivered.",
    )
    parser.add_argument("--duration", type=float, metavar="SECONDS", help="stop after SECONDS (default: until Ctrl-C)")
    parser.add_argument("--nodes", type=int, default=len(sim_fleet.PLANT), metavar="N",
                        help=f"simulated nodes (default {len(sim_fleet.PLANT)}: one per plant scenario)")
    parser.add_argument("--broker", metavar="URL", help="use this MQTT broker (mqtt://HOST:PORT) instead of the embedded one")
    parser.add_argument("--heap", default=sim_fleet.SIM_HEAP, help=f"each node's MicroPython heap (default {sim_fleet.SIM_HEAP})")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (gateway.toml, keys, outbox, node flash)")
    parser.add_argument("--sparkplug", action="store_true",
                        help=f"also publish Sparkplug B (group {SPARKPLUG_GROUP!r}, edge node {SPARKPLUG_EDGE!r}) "
                        "and count its metrics")
    parser.add_argument("--opcua", nargs="?", const=0, type=int, metavar="PORT",
                        help="also serve OPC UA on 127.0.0.1 (PORT, default a free one) and print its endpoint")
    parser.add_argument("--web-port", type=int, metavar="PORT",
                        help=f"the web console's port on 127.0.0.1 (default {WEB_PORT}, or a free one when it is taken)")
    parser.set_defaults(func=run)


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _web_port(wanted: int | None) -> int:
    """``wanted`` as given; else the console's usual port when free, else any free one."""
    if wanted is not None:
        if not 1 <= wanted <= 65535:
            raise UserError("--web-port must be 1..65535")
        return wanted
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", WEB_PORT))
        except OSError:
            return _free_port()
    return WEB_PORT


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _broker_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise UserError(f"--broker {url!r}: give mqtt://HOST:PORT (the demo speaks plain MQTT)")
    try:
        return parts.hostname, parts.port or 1883
    except ValueError:
        raise UserError(f"--broker {url!r}: the port must be a number") from None


class Counter:
    """Measurements received on MQTT, unique by (node, seq, channel, time)."""

    def __init__(self) -> None:
        self.seen: set[tuple] = set()
        self.per_frame: dict[tuple[str, int], int] = {}
        self.messages = 0
        self.unreadable = 0

    def feed(self, payload: bytes) -> None:
        self.messages += 1
        try:
            doc = json.loads(payload)
            key = (doc["node"], doc["seq"], doc["channel"], doc["time"])
        except (ValueError, KeyError, TypeError):
            self.unreadable += 1
            return
        if key not in self.seen:
            self.seen.add(key)
            frame = (doc["node"], doc["seq"])
            self.per_frame[frame] = self.per_frame.get(frame, 0) + 1

    @property
    def delivered(self) -> int:
        return len(self.seen)


class SparkplugCounter:
    """Sparkplug B messages received: births, and DDATA metrics unique by
    (device, alias, timestamp)."""

    def __init__(self) -> None:
        self.seen: set[tuple] = set()
        self.births = 0
        self.unreadable = 0

    def feed(self, topic: str, payload: bytes) -> None:
        from smemet.gateway.sinks.sparkplug.schema import Payload

        parts = topic.split("/")
        if len(parts) < 4:
            return
        if parts[2] in ("NBIRTH", "DBIRTH"):
            self.births += 1
        if parts[2] != "DDATA":
            return
        try:
            message = Payload.FromString(payload)
        except Exception:  # noqa: BLE001 - a malformed payload is counted, never fatal
            self.unreadable += 1
            return
        device = parts[4] if len(parts) > 4 else ""
        self.seen.update((device, m.alias, m.timestamp) for m in message.metrics)

    @property
    def metrics(self) -> int:
        return len(self.seen)


def run(args) -> int:
    if args.duration is not None and args.duration <= 0:
        raise UserError("--duration must be positive (seconds)")
    if not 1 <= args.nodes <= 32:
        raise UserError("--nodes must be 1..32")
    if args.opcua is not None and not 0 <= args.opcua <= 65535:
        raise UserError("--opcua PORT must be 0..65535 (0 or nothing: a free port)")
    sim_fleet.check_heap(args.heap)
    broker = _broker_address(args.broker) if args.broker else None
    if args.keep:
        work = Path(args.keep)
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="smemet-demo-"))
    try:
        return asyncio.run(Demo(args, work, broker).main())
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


class Demo:
    def __init__(self, args, work: Path, broker: tuple[str, int] | None) -> None:
        self.args = args
        self.work = work
        self.external = broker
        self.counter = Counter()
        self.sparkplug = SparkplugCounter() if args.sparkplug else None
        self.institute: list = []  # (topic, payload) of the institute's route, as it received them
        self.stop = asyncio.Event()
        self.broker = None
        self.gateway = None
        self.fleet: sim_fleet.Fleet | None = None

    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        logging.getLogger("amqtt").setLevel(logging.CRITICAL)  # its per-connection chatter is not the demo's story
        logging.getLogger("transitions").setLevel(logging.CRITICAL)
        started = time.monotonic()
        subscriber = None
        try:
            host, port = await self._start_broker()
            subscriber = asyncio.create_task(self._subscribe(host, port), name="demo subscriber")
            await self._start_gateway(host, port)
            await asyncio.to_thread(self._start_nodes)
            if self.stop.is_set():
                return await self._finish(subscriber, started)
            self._instructions(host, port, started)
            await self._run(started, subscriber)
            return await self._finish(subscriber, started)
        finally:
            await self._shutdown(subscriber)
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    # ------------------------------------------------------------ start

    async def _start_broker(self) -> tuple[str, int]:
        if self.external:
            host, port = self.external
            await self._check_broker(host, port)
            return host, port
        from amqtt.broker import Broker

        port = _free_port()
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        self.broker = Broker(config)
        try:
            await self.broker.start()
        except Exception as exc:  # noqa: BLE001 - amqtt raises its own and OSError
            raise UserError(f"the embedded MQTT broker did not start: {exc}; give one with --broker mqtt://HOST:PORT") from None
        _say(f"demo: embedded MQTT broker (amqtt) on 127.0.0.1:{port}")
        return "127.0.0.1", port

    async def _check_broker(self, host: str, port: int) -> None:
        import aiomqtt

        try:
            async with asyncio.timeout(5):
                async with aiomqtt.Client(host, port, identifier=f"smemet-demo-check-{time.time_ns()}"):
                    pass
        except (aiomqtt.MqttError, TimeoutError, OSError) as exc:
            raise UserError(f"cannot reach the broker mqtt://{host}:{port} ({exc or 'no answer'}): is it running? "
                            "leave out --broker to use the embedded one") from None

    async def _subscribe(self, host: str, port: int) -> None:
        import aiomqtt

        while True:
            try:
                async with aiomqtt.Client(host, port, identifier=f"smemet-demo-{time.time_ns()}",
                                          protocol=aiomqtt.ProtocolVersion.V311) as client:
                    await client.subscribe(f"{PREFIX}/+/+", qos=1)
                    await client.subscribe(f"{INSTITUTE}/#", qos=1)
                    if self.sparkplug is not None:
                        await client.subscribe(f"spBv1.0/{SPARKPLUG_GROUP}/#", qos=1)
                    async for message in client.messages:
                        topic = str(message.topic)
                        if topic.startswith("spBv1.0/"):
                            self.sparkplug.feed(topic, message.payload)
                        elif topic.startswith(f"{INSTITUTE}/"):
                            self.institute.append((topic, bytes(message.payload)))
                        else:
                            self.counter.feed(message.payload)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.5)  # the broker restarts or is slow: subscribe again

    async def _start_gateway(self, host: str, port: int) -> None:
        from smemet.gateway.config import load_config
        from smemet.gateway.errors import GatewayError
        from smemet.gateway.keys import add_key
        from smemet.gateway.service import Gateway

        directory = self.work / "gateway"
        directory.mkdir(parents=True, exist_ok=True)
        self.names = [f"{prefix}-{i + 1}" for i, (prefix, _) in
                      ((i, sim_fleet.PLANT[i % len(sim_fleet.PLANT)]) for i in range(self.args.nodes))]
        keys_file = directory / "keys.toml"
        keys_file.unlink(missing_ok=True)
        self.keys = {name: add_key(str(keys_file), name) for name in self.names}  # created 0600
        self.udp_port = _free_port(socket.SOCK_DGRAM)
        self.metrics_port = _free_port()
        self.web_port = _web_port(self.args.web_port)
        version = "auto" if self.external else "3.1.1"
        broker = f"mqtt://{host}:{port}"
        routes = [
            {"name": "demo", "broker": broker, "topic_prefix": PREFIX, "format": "json", "mqtt_version": version,
             "agreement": HISTORIAN_AGREEMENT},
            {"name": INSTITUTE, "broker": broker, "topic_prefix": INSTITUTE, "format": "json",
             "mqtt_version": version, "agreement": INSTITUTE_AGREEMENT},
        ]
        sparkplug = None
        if self.args.sparkplug:
            sparkplug = {"broker": broker, "group_id": SPARKPLUG_GROUP, "edge_node_id": SPARKPLUG_EDGE,
                         "mqtt_version": version}
        opcua = None
        if self.args.opcua is not None:
            self.opcua_port = self.args.opcua or _free_port()
            opcua = {"port": self.opcua_port, "history": "1h"}  # loopback: anonymous and None allowed too
        for attempt in (1, 2):
            self.config_path = write_gateway_config(directory, udp_port=self.udp_port, metrics_port=self.metrics_port,
                                                    routes=routes, keys_file=str(keys_file), gateway_id="demo-gw",
                                                    sparkplug=sparkplug, opcua=opcua, web_port=self.web_port,
                                                    channels=CHANNELS)
            try:
                config = load_config(str(self.config_path))
                self.gateway = Gateway(config)
                await self.gateway.start()
                break
            except (GatewayError, OSError) as exc:
                taken = getattr(exc, "where", "").endswith("web.port") and self.args.web_port is None
                if attempt == 1 and taken:  # another program took the port since we looked: any free one will do
                    await self.gateway.stop()
                    self.gateway = None
                    self.web_port = _free_port()
                    continue
                raise UserError(f"the gateway did not start: {exc}") from None
        _say(f"demo: gateway up (UDP 127.0.0.1:{self.udp_port}, config {self.config_path})")
        self.web_url = next((sink.url for sink in self.gateway.sinks if sink.kind == "web"), None)
        if self.web_url:
            _say(f"demo: web console on {self.web_url}")
        if opcua is not None:
            from smemet.gateway.sinks.opcua import NAMESPACE_URI

            print(f"demo: OPC UA server at opc.tcp://127.0.0.1:{self.opcua_port} (namespace {NAMESPACE_URI}; "
                  "anonymous or SignAndEncrypt on loopback)", flush=True)

    def _start_nodes(self) -> None:
        image = flash.build_image(self.work / "image", romfs=True)
        self.fleet = sim_fleet.Fleet(self.work / "nodes", image.path, self.args.heap)
        for i, name in enumerate(self.names):
            story = sim_fleet.scenario(sim_fleet.PLANT[i % len(sim_fleet.PLANT)][1])
            config = sim_fleet.node_config(name, self.keys[name], story, ("127.0.0.1", self.udp_port))
            self.fleet.add(name, config, story.sim_json())
        _say(f"demo: starting {len(self.names)} simulated nodes ({', '.join(self.names)}), heap {self.args.heap}")
        self.fleet.start()

    def _signing_key(self):
        """The gateway's signing key, as its routes hold it."""
        return next(sink for sink in self.gateway.sinks if sink.kind == "route").ledger.key

    def _instructions(self, host: str, port: int, started: float) -> None:
        smemet = _command_name()
        fingerprint = self._signing_key().fingerprint
        print(f"demo: up in {time.monotonic() - started:.1f} s. Watch the measurements:\n"
              + (f"  web console: {self.web_url}  (open it in a browser)\n" if self.web_url else "")
              + f"  mosquitto_sub -h {host} -p {port} -t '{PREFIX}/#' -v\n"
              f"  {smemet} monitor --broker mqtt://{host}:{port}\n"
              f"  {smemet} nodes --gateway-config {self.config_path}\n"
              f"Two routes under two agreements ({smemet} agreements list --config {self.config_path}):\n"
              f"  demo       {HISTORIAN_AGREEMENT['id']} v1: every channel, raw, on {PREFIX}/#\n"
              f"  institute  {INSTITUTE_AGREEMENT['id']} v1: furnace temperatures as 10 s means and maxima, "
              f"the furnace as site-A, on {INSTITUTE}/#\n"
              f"Verify what the institute receives (the gateway key's fingerprint, as its operator would give it):\n"
              f"  {smemet} verify --broker mqtt://{host}:{port} --topic '{INSTITUTE}/#' --duration 20 "
              f"--fingerprint '{fingerprint}'\n"
              + (f"Sparkplug B: edge node {SPARKPLUG_GROUP}/{SPARKPLUG_EDGE}, one device per node; point a Sparkplug "
                 f"host (Ignition MQTT Engine, a historian) at mqtt://{host}:{port}, or see the raw messages:\n"
                 f"  mosquitto_sub -h {host} -p {port} -t 'spBv1.0/{SPARKPLUG_GROUP}/#' -v\n"
                 if self.sparkplug is not None else "")
              + (f"  uals -u opc.tcp://127.0.0.1:{self.opcua_port} -n i=85 -d 4 -l\n"
                 if self.args.opcua is not None else "")
              + "Ctrl-C stops the demo" + (f" (or it stops after {self.args.duration:g} s)" if self.args.duration else ""),
              flush=True)

    # ------------------------------------------------------------ run

    async def _run(self, started: float, subscriber: asyncio.Task) -> None:
        live = sys.stderr.isatty()
        deadline = started + self.args.duration if self.args.duration else None
        last_line = 0.0
        first_data = None
        while not self.stop.is_set():
            now = time.monotonic()
            if deadline and now >= deadline:
                break
            if subscriber.done():
                subscriber.result()  # raises what ended it
            if first_data is None and self.counter.delivered:
                first_data = now - started
                _say(f"demo: first measurements after {first_data:.1f} s")
            if live or now - last_line >= 5:
                last_line = now
                line = (f"demo: {now - started:5.0f} s  {len(self.names)} nodes  "
                        f"{self.counter.delivered} measurements delivered")
                if self.sparkplug is not None:
                    line += f", {self.sparkplug.metrics} Sparkplug metrics"
                if live:
                    sys.stderr.write("\r" + line + "   ")
                    sys.stderr.flush()
                else:
                    _say(line)
            try:
                await asyncio.wait_for(self.stop.wait(), 1.0)
            except TimeoutError:
                pass
        if live:
            sys.stderr.write("\n")

    async def _finish(self, subscriber: asyncio.Task, started: float) -> int:
        """Stop the nodes, let the gateway deliver what it accepted, count."""
        _say("demo: stopping the nodes, delivering what the gateway holds ...")
        pending = self.fleet.pending() if self.fleet else {}
        if self.fleet:
            await asyncio.to_thread(self.fleet.close)
        accepted = await self._drain()
        lost = sum(max(0, n - self.counter.per_frame.get(frame, 0)) for frame, n in accepted.items())
        buffered = sum(pending.values())
        print(f"demo: {len(self.names)} nodes, {self.counter.delivered} measurements delivered, {lost} lost"
              + (f" ({buffered} frames were still buffered in the nodes' flash)" if buffered else ""), flush=True)
        if self.sparkplug is not None:
            print(f"demo: sparkplug: {self.sparkplug.metrics} metrics in DDATA, {self.sparkplug.births} births "
                  f"(edge node {SPARKPLUG_GROUP}/{SPARKPLUG_EDGE})", flush=True)
        self._verify_institute()
        if self.fleet and self.fleet.memory_errors():
            _say(f"demo: nodes ran out of heap: {self.fleet.memory_errors()} (try --heap 256K)")
        return 0 if lost == 0 else 1

    def _verify_institute(self) -> None:
        """What ``smemet verify`` says of the institute's messages the demo received."""
        from smemet.gateway.ledger.verify import Captured, verify_capture

        if self.gateway is None or not self.gateway.sinks:
            return
        key = self._signing_key()
        report = verify_capture([Captured(t, p) for t, p in self.institute], public=key.public)
        for route in report.routes:
            verdict = "complete and authentic" if route.complete else "NOT complete: run smemet verify for details"
            print(f"demo: route {INSTITUTE}: {route.messages} messages under {INSTITUTE_AGREEMENT['id']} v1, "
                  f"signed up to seq {route.covered_upto}: {verdict}", flush=True)

    async def _drain(self, timeout: float = 8.0) -> dict[tuple[str, int], int]:
        """Wait until every measurement the gateway accepted reached the
        subscriber (or ``timeout``); returns records per accepted data frame."""
        deadline = time.monotonic() + timeout
        accepted: dict[tuple[str, int], int] = {}
        while True:
            accepted = await asyncio.to_thread(self._accepted)
            missing = sum(max(0, n - self.counter.per_frame.get(f, 0)) for f, n in accepted.items())
            if not missing or time.monotonic() > deadline:
                return accepted
            await asyncio.sleep(0.2)

    def _accepted(self) -> dict[tuple[str, int], int]:
        """Records per data frame the gateway stored (its outbox keeps the raw
        frames for the audit retention)."""
        from smemet.gateway.outbox_view import OutboxView

        if self.gateway is None or self.gateway.outbox is None:
            return {}
        view = OutboxView.open(self.gateway.outbox.path)
        if view is None:
            return {}
        try:
            return {(node, seq): records for node, seq, records in view.data_frames()}
        finally:
            view.close()

    async def _shutdown(self, subscriber: asyncio.Task | None) -> None:
        if self.fleet is not None:
            await asyncio.to_thread(self.fleet.close)
        if self.gateway is not None:
            try:
                await self.gateway.stop()
            except Exception as exc:  # noqa: BLE001 - shutting down: say it, go on
                _say(f"demo: the gateway did not stop cleanly: {exc}")
        if subscriber is not None:
            subscriber.cancel()
            await asyncio.gather(subscriber, return_exceptions=True)
        if self.broker is not None:
            try:
                await self.broker.shutdown()
            except Exception:  # noqa: BLE001 - the broker is going away anyway
                pass


def _command_name() -> str:
    """How the user can run smemet from here: plain ``smemet`` when it is on
    PATH, else the venv's script (``make demo`` runs .venv/bin/smemet)."""
    if shutil.which("smemet"):
        return "smemet"
    script = os.path.join(os.path.dirname(sys.executable), "smemet")
    if os.path.exists(script):
        return os.path.relpath(script) if not os.path.relpath(script).startswith("..") else script
    return f"{sys.executable} -m smemet"
