"""``smemet nodes``: the nodes a gateway knows — registered in its key
store — with when each was last seen, how many frames it still holds
unacknowledged (store depth), its firmware version, uptime and last reset
cause, the gateway's frame rejects by reason, its sensors that need
calibration attention (due soon, overdue, a failed system accuracy test, a
thermocouple past its usage limit; docs/processing.md); and what the field
engineer must act on: an outbox that is full (frames refused), a node whose
key was added but not loaded by the running gateway.

Sources: the key store (who is registered), the metrics endpoint and
``/healthz`` beside it (last seen, store depth, keys loaded, storage alarm
of the running gateway), the outbox (the newest status frame of each node,
kept for the audit retention — so this also works while the gateway is
stopped).  Only the key store, outbox and metrics sections of gateway.toml
are read: no partner's password is needed.
"""

from __future__ import annotations

import json
import sys
import time

from . import gateway_state, term
from .errors import UserError

NOT_LOADED = f"key added, gateway not reloaded: run `{gateway_state.RELOAD}`"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "nodes",
        help="registered nodes: last seen, store depth, firmware version, rejects",
        description="List the nodes in the gateway's key store with last seen, store depth (frames the node "
        "holds unacknowledged), firmware version, uptime and reset cause from their status reports, and the "
        "gateway's rejects by reason; say when the outbox is full or a key is not loaded yet. Run it on the "
        "gateway host as the gateway's user.",
    )
    parser.add_argument("--gateway-config", metavar="FILE", default=None,
                        help="the gateway's gateway.toml (default /etc/smemet/gateway.toml when --keys is not given)")
    parser.add_argument("--keys", metavar="FILE", help="the key store, when there is no gateway.toml at hand")
    parser.add_argument("--metrics", metavar="URL", help="the gateway's metrics endpoint (default: from the config)")
    parser.add_argument("--outbox", metavar="FILE", help="the gateway's outbox database (with --keys)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def collect(files: gateway_state.GatewayFiles, now: float | None = None) -> dict:
    """Everything ``nodes`` shows, as a dict (the --json output)."""
    now = now or time.time()
    keys = gateway_state.registered_nodes(files.keys_file)
    metrics = None
    problem = None
    if files.metrics_url:
        try:
            metrics = gateway_state.scrape(files.metrics_url)
        except UserError as exc:
            problem = str(exc)
    health = gateway_state.health(files.metrics_url) if metrics is not None else None
    outbox = gateway_state.outbox_view(files.outbox)
    if metrics is None and outbox is None:
        raise UserError(problem or f"cannot read the gateway's state: no metrics endpoint and the outbox "
                        f"{files.outbox or '(unknown)'} is not readable; run as the gateway's user "
                        "(sudo -u smemet smemet nodes ...)")
    attention: dict[str, list] = {}
    for item in gateway_state.calibration_attention(files.outbox, files.due_warning, now):
        attention.setdefault(item.sensor.node, []).append(item)
    loaded = None
    if metrics is not None and any(name == gateway_state.KEY_LOADED for name, _labels in metrics):
        loaded = set(metrics.by_label(gateway_state.KEY_LOADED, "node"))
    elif health is not None and health.get("keys", {}).get("nodes") == 0:
        loaded = set()  # the gateway holds no key at all (no series to list)
    unknown = metrics.by_label(gateway_state.UNKNOWN_NODE, "node") if metrics is not None else {}
    rows = []
    try:
        for node in sorted(keys):
            status = outbox.latest_status(node) if outbox else {}
            last_seen = metrics.value(gateway_state.LAST_SEEN, node=node) if metrics else None
            if not last_seen and outbox:
                last_seen = outbox.last_frame(node)
            depth = metrics.value(gateway_state.STORE_DEPTH, node=node) if metrics else None
            node_rejects = {} if not metrics else {
                dict(labels)["reason"]: int(v) for (name, labels), v in metrics.items()
                if name == gateway_state.NODE_REJECTED and dict(labels).get("node") == node and v
            }
            key_loaded = None if loaded is None else node in loaded
            note = None
            if key_loaded is False:
                node_rejects = {"unknown-node": int(unknown[node])} if unknown.get(node) else {}
                note = NOT_LOADED + (f" (its frames arrive and are rejected as unknown-node)" if node_rejects else "")
            if depth is None:
                depth = status.get("store_depth")
            rows.append({
                "node": node,
                "last_seen": last_seen or None,
                "last_seen_age_s": round(now - last_seen, 1) if last_seen else None,
                "store_depth": int(depth) if isinstance(depth, (int, float)) else None,
                "fw": status.get("fw"),
                "uptime_s": status.get("uptime"),
                "reset_cause": status.get("reset_cause"),
                "cfg_ver": status.get("cfg_ver"),
                "store_dropped": status.get("store_dropped"),
                "rejects": node_rejects,
                "calibration": [item.as_dict() for item in attention.get(node, ())],
                "calibration_summary": "; ".join(item.summary() for item in attention.get(node, ())) or None,
                "key_loaded": key_loaded,
                "note": note,
            })
    finally:
        if outbox:
            outbox.close()
    rejects = {}
    if metrics:
        rejects = {reason: int(v) for reason, v in metrics.by_label(gateway_state.REJECTED, "reason").items() if v}
    storage = None
    if metrics:
        storage = {"full": bool(metrics.value(gateway_state.STORAGE_FULL)),
                   "refused_frames": int(metrics.value(gateway_state.REFUSED_FULL) or 0),
                   "reason": ((health or {}).get("storage") or {}).get("reason") or None}
    return {"gateway": "running" if metrics else "not reachable", "problem": problem, "nodes": rows,
            "rejects": rejects, "storage": storage, "health": None if health is None else health.get("status")}


def _cell(value, missing: str = "—") -> str:
    if value is None:
        return missing
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def render(state: dict, now: float | None = None) -> str:
    header = (f"{'node':<24} {'last seen':>10} {'store depth':>11} {'fw':<10} {'uptime':>8}  {'reset cause':<14} "
              f"{'rejects':<16} calibration")
    lines = [header, "-" * len(header)]
    for row in state["nodes"]:
        uptime = row["uptime_s"]
        rejects = ", ".join(f"{reason} {n}" for reason, n in sorted(row.get("rejects", {}).items())) or "—"
        lines.append(
            f"{row['node'][:24]:<24} {gateway_state.age_text(row['last_seen'], now):>10} "
            f"{_cell(row['store_depth']):>11} {_cell(row['fw']):<10} "
            f"{(_cell(uptime) + 's') if uptime is not None else '—':>8}  {_cell(row['reset_cause']):<14} {rejects:<16} "
            f"{row.get('calibration_summary') or '—'}"
        )
        if row.get("note"):
            lines.append(f"  ! {row['note']}")
    if not state["nodes"]:
        lines.append("(no nodes registered: add one with smemet commission or smemet gateway keys add)")
    storage = state.get("storage") or {}
    if storage.get("full"):
        reason = f": {storage['reason']}" if storage.get("reason") else ""
        lines.append(f"OUTBOX FULL: the gateway refuses frames (nodes keep them in flash); "
                     f"{term.plural(storage['refused_frames'], 'frame')} refused since gateway start{reason}")
    rejects = ", ".join(f"{reason} {n}" for reason, n in sorted(state["rejects"].items())) or "none"
    lines.append(f"{term.plural(len(state['nodes']), 'node')}; gateway {state['gateway']}; "
                 f"rejects since gateway start: {rejects}")
    return "\n".join(lines)


def run(args) -> int:
    config = args.gateway_config
    if not config and not args.keys:
        config = "/etc/smemet/gateway.toml"
    files = gateway_state.gateway_files(config, args.keys, args.metrics, args.outbox)
    state = collect(files)
    if state["problem"]:
        term.warn("nodes", f"{state['problem']} (showing what the key store and outbox say)")
    if args.json:
        json.dump(state, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(render(state))
    return 0
