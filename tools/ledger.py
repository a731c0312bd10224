"""``smemet ledger ROUTE``: what the gateway delivered on a route, message by
message (number, link hash, agreement version, when the broker acknowledged
it), or its signed checkpoints; as text, JSON lines or CSV."""

from __future__ import annotations

import base64
import csv
import datetime
import json
import sys

from .errors import UserError


def register(subparsers) -> None:
    parser = subparsers.add_parser("ledger", help="export what a route delivered (the gateway's delivery ledger)",
                                   description="Export the delivery ledger of one route: every message the broker "
                                   "acknowledged (number, link hash, agreement version, PUBACK time), or with "
                                   "--checkpoints the signed checkpoints.  Reads the ledger database read-only.")
    parser.add_argument("route", help="the route's name ([[routes]] name)")
    parser.add_argument("--config", required=True, metavar="FILE", help="the gateway's gateway.toml")
    parser.add_argument("--from", dest="since", metavar="TIME",
                        help="acknowledged at or after TIME (ISO 8601, e.g. 2026-03-01 or 2026-03-01T12:00:00Z; "
                        "without a zone: UTC; or Unix seconds)")
    parser.add_argument("--until", metavar="TIME", help="acknowledged before TIME (same forms as --from)")
    parser.add_argument("--checkpoints", action="store_true", help="the signed checkpoints instead of the messages")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="JSON lines, one object per message")
    output.add_argument("--csv", action="store_true", help="CSV with a header line")
    parser.set_defaults(func=run)


def parse_time(text: str, option: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"{option} {text!r}: give a time such as 2026-03-01, 2026-03-01T12:00:00Z or Unix "
                        "seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def _iso(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def run(args) -> int:
    from smemet.gateway.config import load_config
    from smemet.gateway.errors import GatewayError
    from smemet.gateway.ledger import LedgerView

    try:
        config = load_config(args.config)
    except GatewayError as exc:
        raise UserError(f"bad gateway config: {exc}") from None
    since = parse_time(args.since, "--from") if args.since else None
    until = parse_time(args.until, "--until") if args.until else None
    if since is not None and until is not None and not since < until:
        raise UserError("--until must be after --from")
    path = config.ledger.db_path(config.outbox.path)
    view = LedgerView.open(path)
    if view is None:
        raise UserError(f"{path}: no ledger yet; the gateway records one once a route delivers")
    try:
        if args.route not in view.routes():
            known = ", ".join(view.routes()) or "none"
            raise UserError(f"the ledger has no route {args.route!r} (routes in it: {known})")
        if args.checkpoints:
            _checkpoints(view.checkpoints(args.route, since, until), args)
        else:
            _entries(view.entries(args.route, since, until), args)
    finally:
        view.close()
    return 0


def _entries(entries, args) -> None:
    out = sys.stdout
    if args.csv:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["route", "seq", "hash", "agreement", "version", "acked", "acked_unix"])
        for e in entries:
            writer.writerow([e.route, e.seq, e.hash.hex(), e.agreement or "", e.version or "", _iso(e.acked),
                             f"{e.acked:.3f}"])
        return
    for e in entries:
        if args.json:
            out.write(json.dumps({"route": e.route, "seq": e.seq, "hash": e.hash.hex(), "agreement": e.agreement,
                                  "version": e.version, "acked": _iso(e.acked), "acked_unix": round(e.acked, 3)})
                      + "\n")
        else:
            agreement = f"{e.agreement} v{e.version}" if e.agreement else "-"
            out.write(f"{e.seq:>10}  {_iso(e.acked)}  {agreement:<20}  {e.hash.hex()}\n")


def _checkpoints(checkpoints, args) -> None:
    out = sys.stdout
    if args.csv:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["route", "seq", "head", "time", "cose_sign1_base64"])
        for c in checkpoints:
            writer.writerow([c.route, c.seq, c.head.hex(), _iso(c.time), base64.b64encode(c.message).decode()])
        return
    for c in checkpoints:
        if args.json:
            out.write(json.dumps({"route": c.route, "seq": c.seq, "head": c.head.hex(), "time": _iso(c.time),
                                  "cose_sign1": base64.b64encode(c.message).decode()}) + "\n")
        else:
            out.write(f"{c.seq:>10}  {_iso(c.time)}  {c.head.hex()}\n")
