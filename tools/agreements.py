"""``smemet agreements list|show ROUTE``: the data-sharing agreements of a
gateway's routes, as a partner would read them, with each route's version
history from the gateway's ledger."""

from __future__ import annotations

import json
import time

from .errors import UserError


def register(subparsers) -> None:
    parser = subparsers.add_parser("agreements", help="the routes' data-sharing agreements, as partners read them",
                                   description="Show the agreement of each route of a gateway: parties, purpose and "
                                   "the terms the gateway enforces, with the version history it keeps.")
    commands = parser.add_subparsers(dest="agreements_command", metavar="COMMAND", required=True)
    listing = commands.add_parser("list", help="one line per route: agreement, version, in force or why not")
    listing.add_argument("--config", required=True, metavar="FILE", help="the gateway's gateway.toml")
    listing.add_argument("--json", action="store_true", help="JSON, one object per route")
    listing.set_defaults(func=_list)
    show = commands.add_parser("show", help="one route's agreement in full, as the partner reads it")
    show.add_argument("route", help="the route's name ([[routes]] name)")
    show.add_argument("--config", required=True, metavar="FILE", help="the gateway's gateway.toml")
    show.add_argument("--internal", action="store_true",
                      help="the operator's view: real node names in the channel patterns and the alias mapping")
    show.add_argument("--json", action="store_true", help="the terms as JSON")
    show.set_defaults(func=_show)


def _load(path: str):
    from smemet.gateway.config import load_config
    from smemet.gateway.errors import GatewayError

    try:
        return load_config(path)
    except GatewayError as exc:
        raise UserError(f"bad gateway config: {exc}") from None


def _history(config, route: str) -> list:
    from smemet.gateway.ledger import LedgerView

    view = LedgerView.open(config.ledger.db_path(config.outbox.path))
    if view is None:
        return []
    try:
        return view.history(route)
    finally:
        view.close()


def _list(args) -> int:
    config = _load(args.config)
    now = time.time()
    rows = []
    for route in config.routes:
        a = route.agreement
        if a is None:
            rows.append({"route": route.name, "agreement": None, "version": None, "in_force": None,
                         "state": "no agreement (include/exclude only)", "parties": []})
            continue
        in_force, state = a.state(now)
        rows.append({"route": route.name, "agreement": a.id, "version": a.version, "in_force": in_force,
                     "state": state, "parties": [p.name for p in a.parties]})
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return 0
    if not rows:
        print(f"{args.config}: no routes")
        return 0
    width = max(len(r["route"]) for r in rows)
    for r in rows:
        agreement = f"{r['agreement']} v{r['version']}" if r["agreement"] else "-"
        parties = " / ".join(r["parties"])
        print(f"{r['route']:<{width}}  {agreement:<24}  {r['state']}" + (f"  ({parties})" if parties else ""))
    return 0


def _show(args) -> int:
    from smemet.gateway.agreements.describe import describe

    config = _load(args.config)
    route = next((r for r in config.routes if r.name == args.route), None)
    if route is None:
        known = ", ".join(r.name for r in config.routes) or "none"
        raise UserError(f"no route {args.route!r} in {args.config} (routes: {known})")
    if route.agreement is None:
        raise UserError(f"route {route.name} has no agreement: it delivers {', '.join(route.include)} "
                        f"to {route.url} under no stated terms; add a [routes.agreement] table (docs/gateway.toml)")
    history = _history(config, route.name)
    if args.json:
        doc = route.agreement.terms()
        doc["history"] = [{"agreement": h.agreement, "version": h.version, "since": h.since} for h in history]
        print(json.dumps(doc, ensure_ascii=False, indent=2))
        return 0
    for line in describe(route.agreement, route=route.name, destination=route.url, topic_prefix=route.topic_prefix,
                         fmt=route.format, now=time.time(), history=history, internal=args.internal):
        print(line)
    return 0
