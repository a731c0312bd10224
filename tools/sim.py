"""``smemet sim``: simulated nodes — the real firmware in MicroPython VMs,
the HIL bench's SimNode — running a plant scenario against a gateway.

Node keys come from the gateway's key store: a node already in it keeps its
key, a new one gets a fresh key added (mode 0600; a running gateway loads
it when reloaded: ``systemctl reload smemet-gateway``).  Each node's flash
lives in ``--flash-dir/<node>`` and is kept, so a second run carries on with
its sequence numbers and anything it could not deliver.  Ctrl-C (or
``--duration``) stops every node.

Every node's console is a serial port (``/dev/pts/N``), printed at start:
``mpremote connect /dev/pts/N repl`` reaches its REPL as a USB cable would.
``--blank`` starts empty boards instead (no firmware, no config, waiting at
the REPL), to practise ``smemet flash`` and ``smemet commission`` without
hardware (docs/field-engineer.md).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from . import flash, gateway_state, node_config, sim_fleet, term
from .errors import UserError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sim",
        help="run simulated nodes (the real firmware in MicroPython) against a gateway",
        description="Start N simulated nodes running a plant scenario, sending to a gateway over UDP; their "
        "console lines are printed with the node's name. Ctrl-C stops them. Each node runs the firmware executed "
        "in place from its ROMFS partition, as a board with one does. Scenarios: "
        + ", ".join(sorted(sim_fleet.scenarios.SCENARIOS)) + ".",
    )
    parser.add_argument("--nodes", type=int, default=1, metavar="N", help="how many nodes (default 1)")
    parser.add_argument("--blank", action="store_true",
                        help="empty boards (no firmware, no config) waiting at their REPL: practise flash and "
                        "commission on the console ports printed at start")
    parser.add_argument("--scenario", default="furnace_heatup", help="the plant scenario (default furnace_heatup)")
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--gateway-config", metavar="FILE", help="the gateway's gateway.toml (key store and UDP port)")
    keys.add_argument("--keys", metavar="FILE", help="a key store: nodes in it keep their key, others are added")
    parser.add_argument("--gateway", metavar="HOST[:PORT]",
                        help="where the nodes send (default 127.0.0.1 and the config's UDP port, else 47000)")
    parser.add_argument("--duration", type=float, metavar="SECONDS", help="stop after SECONDS (default: until Ctrl-C)")
    parser.add_argument("--heap", default=sim_fleet.SIM_HEAP, help=f"each node's MicroPython heap (default {sim_fleet.SIM_HEAP})")
    parser.add_argument("--prefix", default="sim", help="node ids are PREFIX-1 ... PREFIX-N (default sim)")
    parser.add_argument("--flash-dir", default="build/sim", metavar="DIR", help="the nodes' flash (default build/sim)")
    parser.add_argument("--image", metavar="DIR", help="a built firmware image (default: build now)")
    parser.add_argument("--time-scale", type=float, default=1.0, help="scenario seconds per second (default 1)")
    parser.add_argument("--period-ms", type=int, help="sampling period of every channel (default: the scenario's)")
    parser.set_defaults(func=run)


def _print_consoles(fleet: sim_fleet.Fleet) -> None:
    for name, node in fleet.nodes.items():
        print(f"sim: {name} console {node.console_path}", flush=True)


def _run_blank(args) -> int:
    names = [f"{args.prefix}-{i}" for i in range(1, args.nodes + 1)]
    fleet = sim_fleet.Fleet(Path(args.flash_dir), Path(args.flash_dir), args.heap,
                            on_line=lambda node, line: term.detail(f"[{node}] {line}"))
    _stop_on_sigterm()
    started = time.monotonic()
    try:
        for name in names:
            fleet.add_blank(name)
        fleet.start()
        _print_consoles(fleet)
        first = fleet.nodes[names[0]].console_path
        term.progress(f"sim: {term.plural(len(names), 'empty board')} at their REPL; commission one with\n"
                      f"  smemet commission --port {first} --node-id ladle-7 --gateway 127.0.0.1 "
                      "--gateway-config /etc/smemet/gateway.toml\nCtrl-C stops them")
        while args.duration is None or time.monotonic() - started < args.duration:
            time.sleep(0.2)
            for name, node in fleet.nodes.items():
                if node.failed:
                    raise UserError(f"board {name} stopped: {node.failed}")
    except KeyboardInterrupt:
        pass
    finally:
        fleet.close()
    term.progress(f"sim: stopped {term.plural(len(fleet.nodes), 'board')}")
    return 0


def _stop_on_sigterm() -> None:
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def run(args) -> int:
    if not 1 <= args.nodes <= 64:
        raise UserError("--nodes must be 1..64")
    if args.duration is not None and args.duration <= 0:
        raise UserError("--duration must be positive (seconds)")
    sim_fleet.check_heap(args.heap)
    if args.blank:
        return _run_blank(args)
    if not args.gateway_config and not args.keys:
        raise UserError("say where the gateway's key store is: --gateway-config FILE or --keys FILE "
                        "(or --blank for empty boards)")
    story = sim_fleet.scenario(args.scenario, args.period_ms)
    if args.gateway_config:
        files = gateway_state.from_config(args.gateway_config)
        keys_file, default_port = files.keys_file, files.udp_port or node_config.DEFAULT_GATEWAY_PORT
    else:
        keys_file, default_port = args.keys, node_config.DEFAULT_GATEWAY_PORT
    gateway = node_config.parse_gateway(args.gateway or "127.0.0.1", default_port)
    _check_key_store(keys_file, [f"{args.prefix}-{i}" for i in range(1, args.nodes + 1)])
    with flash.image_from(args.image, romfs=True) as image:
        return _run_fleet(args, story, keys_file, gateway, image)


def _check_key_store(keys_file: str, names: list[str]) -> None:
    """Nodes not in the key store are added to it: it must be writable,
    found before the firmware is built and the boards started."""
    known = gateway_state.registered_nodes(keys_file) if Path(keys_file).exists() else {}
    if any(name not in known for name in names):
        gateway_state.check_writable(keys_file)


def _run_fleet(args, story, keys_file, gateway, image) -> int:
    names = [f"{args.prefix}-{i}" for i in range(1, args.nodes + 1)]
    added = []
    keys = {}
    for name in names:
        keys[name], new = gateway_state.register_node(keys_file, name)
        if new:
            added.append(name)
    if added:
        term.progress(f"sim: added keys for {', '.join(added)} to {keys_file}; a running gateway does not know them "
                      f"yet: reload it ({gateway_state.RELOAD}, or kill -HUP its pid); the nodes keep their readings "
                      "until it does")

    def show(node: str, line: str) -> None:
        print(f"[{node}] {line}", flush=True)

    fleet = sim_fleet.Fleet(Path(args.flash_dir), image.path, args.heap, on_line=show)
    _stop_on_sigterm()
    started = time.monotonic()
    try:
        for name in names:
            fleet.add(name, sim_fleet.node_config(name, keys[name], story, gateway, args.time_scale), story.sim_json())
        fleet.start()
        _print_consoles(fleet)
        term.progress(f"sim: {term.plural(len(names), 'node')} running {story.name} -> {gateway[0]}:{gateway[1]} "
                      f"(heap {args.heap}, flash in {args.flash_dir}); Ctrl-C stops")
        next_report = time.monotonic() + 10
        while args.duration is None or time.monotonic() - started < args.duration:
            time.sleep(0.2)
            for name, node in fleet.nodes.items():
                if node.failed:
                    raise UserError(f"node {name} stopped: {node.failed}")
            if time.monotonic() >= next_report:
                next_report += 10
                pending = fleet.pending()
                term.progress(f"sim: {time.monotonic() - started:.0f} s; frames waiting for an ACK: "
                              + ", ".join(f"{n} {c}" for n, c in pending.items()))
    except KeyboardInterrupt:
        pass
    finally:
        pending = fleet.pending() if fleet.nodes else {}
        fleet.close()
    waiting = sum(pending.values())
    term.progress(f"sim: stopped {term.plural(len(fleet.nodes), 'node')} after {time.monotonic() - started:.0f} s"
                  + (f"; {term.plural(waiting, 'frame')} still in their flash (sent on the next run)" if waiting else ""))
    return 0
