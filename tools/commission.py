"""``smemet commission``: give a node its identity and key, point it at the
gateway, and prove that its frames arrive — on site, over the node's USB
serial port, without internet.

Steps (each printed as a checklist line, ✓ or ✗; on ✗ the command stops and
says what to check next):

1. the node answers on its port (mpremote), board detected;
2. its config.json is built and passes the firmware's own validator;
3. node and key are in the gateway's key store (a node already there keeps
   its key, so commission can simply be run again after a failure);
4. the node holds the current firmware (flashed and verified if not);
5. config.json (and sim.json on the sim board) copied and read back;
6. the gateway loads the key (``--restart-gateway CMD``, e.g. a reload:
   the gateway re-reads its key store on SIGHUP);
7. the node restarts and its firmware comes up with the config;
8. the gateway has seen a valid (MAC-verified) frame from it.

Mistakes found before touching the node (no such port, no permission, bad
arguments, bad gateway config, gateway not answering) are one line, exit 2.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import flash, gateway_state, mpremote_link, node_config, term
from .errors import UserError
from .serial_port import Console, check_port

OK, FAIL = "✓", "✗"
_UP = r"node (\S+) up: fw (\S+), (\d+) channels"
_IDLE = r"^(config\.json: .*|node idle: .*|.*MemoryError.*|safe mode.*)$"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "commission",
        help="give a node its key and config, and wait for its first frame at the gateway",
        description="Commission the node on PORT: generate its key, write its config.json (UDP to the gateway), "
        "register node and key in the gateway's key store, copy config (and the firmware if missing or "
        "outdated), restart the node and wait until the gateway has seen its first valid frame. Prints a "
        "checklist; exit 0 when every step passed, 1 when one failed (the checklist says what to check), "
        "2 for a mistake in the command.",
    )
    parser.add_argument("--port", required=True, help="the node's serial port, e.g. /dev/ttyUSB0 (ls /dev/serial/by-id/)")
    parser.add_argument("--node-id", required=True, help="the node's id, e.g. ladle-7 (letters, digits, . _ : -)")
    parser.add_argument("--gateway", required=True, metavar="HOST[:PORT]",
                        help=f"the gateway's address as the node reaches it (UDP port default {node_config.DEFAULT_GATEWAY_PORT})")
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--gateway-config", metavar="FILE",
                      help="the gateway's gateway.toml: key store, metrics and outbox from it (default /etc/smemet/gateway.toml)")
    keys.add_argument("--keys", metavar="FILE", help="the gateway's key store, when there is no gateway.toml at hand")
    parser.add_argument("--metrics", metavar="URL", help="the gateway's metrics endpoint (default: from the config, "
                        f"else {gateway_state.DEFAULT_METRICS_URL})")
    channels = parser.add_mutually_exclusive_group()
    channels.add_argument("--channel", action="append", metavar="NAME=DRIVER[,K=V...]",
                          help="a channel, e.g. tc1=max31856,tc_type=S,cs=5 (repeat for more)")
    channels.add_argument("--template", metavar="FILE", help="a config.json template (channels, batch, health, ...)")
    parser.add_argument("--scenario", default="furnace_heatup",
                        help="sim board only: the plant scenario to simulate (default furnace_heatup)")
    parser.add_argument("--board", choices=sorted(set(node_config.BOARDS.values())),
                        help="the node's board (default: detected from the node)")
    parser.add_argument("--image", metavar="DIR", help="a built firmware image (default: build now)")
    parser.add_argument("--romfs", action="store_true",
                        help="put the code in the node's ROMFS partition (executed in place: a far smaller heap); "
                        "a node without one gets the files")
    parser.add_argument("--restart-gateway", metavar="CMD",
                        help="shell command that makes the gateway load the new key, "
                        "e.g. 'sudo systemctl reload smemet-gateway' (SIGHUP)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the first frame (default 60)")
    parser.set_defaults(func=run)


class StepFailed(Exception):
    def __init__(self, what: str, hints: list[str]) -> None:
        super().__init__(what)
        self.what = what
        self.hints = hints


class Checklist:
    """Prints each step as it ends; remembers them for the summary."""

    def __init__(self) -> None:
        self.passed: list[str] = []

    def ok(self, text: str) -> None:
        self.passed.append(text)
        print(f"{OK} {text}", flush=True)

    def fail(self, text: str, hints: list[str]) -> None:
        print(f"{FAIL} {text}", flush=True)
        if hints:
            print("what to check next:")
            for hint in hints:
                print(f"  - {hint}")


def _progress(text: str) -> None:
    term.progress(f"  … {text}")


def _preflight(args):
    """Everything that can be checked without the node: exit 2 on a mistake.
    What needs no network comes first (arguments, files, drivers), then the
    gateway; the node is contacted only after all of it passed."""
    check_port(args.port)
    from smemet.gateway.errors import GatewayError
    from smemet.gateway.keys import validate_node_id

    try:
        validate_node_id(args.node_id)
    except GatewayError as exc:
        raise UserError(str(exc)) from None
    if args.timeout <= 0:
        raise UserError("--timeout must be positive (seconds)")
    gateway = node_config.parse_gateway(args.gateway)
    template = node_config.load_template(args.template) if args.template else None
    channels = [node_config.parse_channel(spec) for spec in args.channel] if args.channel else None
    node_config.check_drivers(channels or (template or {}).get("channels") or [], args.image)
    from .sim_fleet import scenario

    scenario(args.scenario)  # an unknown name is a mistake, even if the board turns out not to be sim
    config_path = args.gateway_config or (None if args.keys else "/etc/smemet/gateway.toml")
    files = gateway_state.gateway_files(config_path, args.keys, args.metrics)
    registered = gateway_state.registered_nodes(files.keys_file) if Path(files.keys_file).exists() else {}
    if args.node_id not in registered:  # owner, mode, format above; its key is added at step 3: fail now, not half-way
        gateway_state.check_writable(files.keys_file)
    metrics = None
    if files.metrics_url:
        metrics = gateway_state.scrape(files.metrics_url)  # the gateway must be up to see the frame
    elif gateway_state.outbox_view(files.outbox) is None:
        raise UserError("cannot watch the gateway: its metrics are off ([metrics] port = 0) and its outbox is not "
                        "readable; enable metrics or run as the gateway's user")
    return gateway, files, metrics, template, channels


def _check_channels_early(args, image, template, channels) -> None:
    """The firmware's own check of the channels given, before the node is
    contacted (the board is known only then: a board of the same kind of
    checks stands in; the full check runs again once it is known)."""
    if not channels and not (template and template.get("channels")):
        return
    stand_in = args.board or "esp32_devkit"
    config = node_config.build(args.node_id, b"\0" * 32, stand_in, ("127.0.0.1", 47000), template, channels)
    problems = [p for p in node_config.check_with_firmware(config, image.path) if "channels[" in p]
    if problems:
        raise UserError(f"node config is not valid: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1
                                                                     else "") + "; fix --channel or --template")


def run(args) -> int:
    gateway, files, metrics, template, channels = _preflight(args)
    checklist = Checklist()
    try:
        with flash.image_from(args.image, args.romfs) as image:
            _check_channels_early(args, image, template, channels)
            _progress(f"contacting the node on {args.port} (mpremote) ...")
            _commission(args, gateway, files, metrics, template, channels, image, checklist)
    except StepFailed as failed:
        checklist.fail(failed.what, failed.hints)
        print(f"commission: {args.node_id} NOT commissioned ({len(checklist.passed)} steps passed); "
              "fix the above and run the same command again", file=sys.stderr)
        return 1
    print(f"commission: node {args.node_id} is commissioned and reporting to {gateway[0]}:{gateway[1]}")
    return 0


def _node_step(what: str, action):
    """Run an mpremote action; its failure is a failed step."""
    try:
        return action()
    except UserError as exc:
        raise StepFailed(what, [str(exc), "is the node powered and its USB cable a data cable?",
                                "is another program (screen, minicom, Thonny) holding the port?"]) from None


def _commission(args, gateway, files, metrics, template, channels, image, checklist: Checklist) -> None:
    port, node = args.port, args.node_id
    started = time.time()

    # 1. the node answers
    platform = _node_step(f"node does not answer on {port}", lambda: mpremote_link.platform(port))
    board = args.board or node_config.BOARDS.get(platform)
    if board is None:
        raise StepFailed(f"unknown board: the node says sys.platform = {platform!r}",
                         [f"give --board ({', '.join(sorted(set(node_config.BOARDS.values())))})"])
    checklist.ok(f"node answers on {port} (MicroPython {platform}, board {board})")

    # 2. config.json, checked by the firmware's validator
    sim_json = None
    if board == "sim" and not channels and not (template and "channels" in template):
        from .sim_fleet import scenario as named_scenario

        story = named_scenario(args.scenario)
        channels = story.channels
        sim_json = story.sim_json()
    elif board == "sim":
        sim_json = {"scenario": "manual", "channels": {}}  # signals at their defaults
    registered = gateway_state.registered_nodes(files.keys_file) if Path(files.keys_file).exists() else {}
    key = registered.get(node)
    config = node_config.build(node, key or b"\0" * 32, board, gateway, template, channels)
    problems = node_config.check_with_firmware(config, image.path)
    if problems:
        raise StepFailed("node config is not valid: " + problems[0],
                         problems[1:] + ["fix the --channel settings or the --template (see docs/firmware.md, "
                                         "and each driver's README for its settings)"])
    checklist.ok(f"config.json valid ({len(config['channels'])} channels: "
                 f"{', '.join(c['name'] + '=' + c['driver'] for c in config['channels'])})")

    # 3. key store
    key, new = gateway_state.register_node(files.keys_file, node)
    config["key"] = key.hex()
    checklist.ok(f"node {node} {'registered with a new key' if new else 'already registered: its key kept'} "
                 f"in {files.keys_file} (mode 600)")

    # 4. firmware
    current = _node_step("cannot read the node's firmware manifest",
                         lambda: flash.device_is_current(port, image, args.romfs))
    if current:
        checklist.ok(f"firmware {image.version} already on the node")
    else:
        layout, bad = _node_step("flashing the firmware failed",
                                 lambda: flash.install(port, image, args.romfs, show=lambda _: None))
        if bad:
            raise StepFailed(f"firmware did not verify on the node: {len(bad)} files differ ({', '.join(bad[:3])})",
                             ["run smemet flash --port " + port + (" --romfs" if args.romfs else "")
                              + " and look at the ✗ lines", "the node's flash may be full or worn"])
        what = "ROMFS partition" if layout == "romfs" else f"{len(image.files())} files"
        checklist.ok(f"firmware {image.version} flashed ({layout} layout) and verified ({what})")

    # 5. config (and scenario) to the node, read back
    with tempfile.TemporaryDirectory(prefix="smemet-commission-") as tmp:
        staging = Path(tmp)
        names = ["config.json"]
        (staging / "config.json").write_text(json.dumps(config))
        if sim_json is not None:
            (staging / config["sim"].get("scenario", "sim.json")).write_text(json.dumps(sim_json))
            names.append(config["sim"].get("scenario", "sim.json"))
        _node_step("copying config.json failed", lambda: mpremote_link.copy_files(port, staging, names))
        hashes = _node_step("reading config.json back failed", lambda: mpremote_link.hash_files(port, names))
        for name in names:
            if hashes.get(name) != hashlib.sha256((staging / name).read_bytes()).hexdigest():
                raise StepFailed(f"{name} on the node differs from what was written",
                                 ["the node's flash may be full: check with mpremote df"])
    checklist.ok(f"config.json{' and ' + names[1] if len(names) > 1 else ''} copied to the node and read back")

    # 6. the gateway loads the key
    before = _rejects(files)
    if args.restart_gateway:
        _restart_gateway(args.restart_gateway, files)
        checklist.ok(f"gateway restarted to load the key ({args.restart_gateway})")
        before = _rejects(files)
    elif new:
        print(f"  ! the running gateway does not know {node} yet: reload it now "
              f"({gateway_state.RELOAD}, or pass --restart-gateway); waiting for the node's first frame", flush=True)

    # 7. restart the node and watch it come up
    with Console(port) as console:
        console.soft_reset()
        up = console.wait_for(_UP, 20.0)
        if up is None or up.group(1) != node:
            trouble = console.wait_for(_IDLE, 0.1)
            tail = [line for line in console.lines if line.strip()][-3:]
            raise StepFailed(
                "node did not come up after the restart" + (f": {trouble.group(0)}" if trouble else ""),
                [f"its console said: {' | '.join(tail) or '(nothing)'}",
                 f"look at it live: mpremote connect {port} repl (Ctrl-D restarts it, Ctrl-X leaves)",
                 "a board in safe mode needs: import node.bootguard as b; b.clear(), then reset"])
        checklist.ok(f"node restarted: firmware {up.group(2)} up with {up.group(3)} channels")

        # 8. the first valid frame at the gateway
        _progress(f"waiting up to {args.timeout:.0f} s for the gateway to see a valid frame from {node}")
        seen = _wait_first_frame(files, node, started, args.timeout)
        if not seen:
            raise StepFailed(f"the gateway saw no valid frame from {node} within {args.timeout:.0f} s",
                             _frame_hints(files, node, gateway, before, console, new and not args.restart_gateway))
        checklist.ok(f"gateway received a valid frame from {node} ({seen})")


def _rejects(files: gateway_state.GatewayFiles) -> dict[str, float]:
    if not files.metrics_url:
        return {}
    try:
        return gateway_state.scrape(files.metrics_url).by_label(gateway_state.REJECTED, "reason")
    except UserError:
        return {}


def _restart_gateway(command: str, files: gateway_state.GatewayFiles) -> None:
    _progress(f"restarting the gateway: {command}")
    result = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()[-1:] or [f"exit {result.returncode}"]
        raise StepFailed(f"restarting the gateway failed: {message[0]}",
                         [f"run it by hand: {command}", "then run this commission command again"])
    if files.metrics_url:
        deadline = time.monotonic() + 30
        while True:
            try:
                gateway_state.scrape(files.metrics_url, timeout=1)
                return
            except UserError as exc:
                if time.monotonic() > deadline:
                    raise StepFailed("the gateway did not come back after the restart",
                                     [str(exc), "journalctl -u smemet-gateway -n 20 says why"]) from None
                time.sleep(0.2)


def _wait_first_frame(files: gateway_state.GatewayFiles, node: str, since: float, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if files.metrics_url:
            try:
                seen = gateway_state.scrape(files.metrics_url, timeout=1).value(gateway_state.LAST_SEEN, node=node)
            except UserError:
                seen = None
            if seen and seen >= since - 1:
                return f"at {time.strftime('%H:%M:%S', time.localtime(seen))}, metrics"
        else:
            outbox = gateway_state.outbox_view(files.outbox)
            if outbox is not None:
                try:
                    if outbox.frames_since(node, since - 1):
                        return "stored in the outbox"
                finally:
                    outbox.close()
        time.sleep(0.3)
    return None


def _frame_hints(files, node, gateway, before, console: Console, restart_needed: bool) -> list[str]:
    after = _rejects(files)
    grew = {reason: after.get(reason, 0) - before.get(reason, 0) for reason in after}
    hints = []
    if grew.get("unknown-node", 0) > 0 or restart_needed:
        hints.append(f"the gateway does not know the key yet: reload it (sudo {gateway_state.RELOAD}) "
                     "or pass --restart-gateway; the node keeps its readings until then")
    if grew.get("bad-mac", 0) > 0:
        hints.append(f"the gateway rejects frames as bad-mac: it holds another key for {node} — remove its line "
                     f"from {files.keys_file}, reload the gateway and commission again")
    if grew.get("replayed", 0) > 0:
        hints.append(f"frames rejected as replayed: this board reuses old sequence numbers of {node}; "
                     "erase its flash (mpremote rm -r :store) or give it a new node id")
    host, port = gateway
    hints.append(f"can the node reach {host}:{port}/udp? same network, firewall open (e.g. sudo ufw allow {port}/udp)")
    tail = [line for line in console.lines if line.strip()][-2:]
    if tail:
        hints.append(f"the node's console said last: {' | '.join(tail)}")
    hints.append(f"the gateway's log: journalctl -u smemet-gateway -n 50 (look for node {node})")
    return hints
