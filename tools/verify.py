"""``smemet verify``: a partner checks what it received from a gateway's
route -- every message authentic, none missing between two checkpoints, or
exactly which are missing, altered, repeated or out of order.

The messages come from a capture file (one message a line: the topic, a
space, the payload in hex -- what ``mosquitto_sub -F '%t %x'`` prints) or
live from the broker for a while.  The gateway's key is pinned by its
fingerprint (``--fingerprint``, from the operator) or given as a file
(``--key``); a key only taken from the capture is reported as not pinned.
Exit status: 0 complete and authentic, 1 problems found, 2 a usage error.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from .errors import UserError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "verify", help="check a capture of a route's messages against the gateway's signed checkpoints",
        description="Check MQTT messages received from an SME-MET gateway: authentic (their hash chain ends in a "
        "checkpoint signed by the gateway's key), complete between checkpoints, or exactly which are missing, "
        "altered, repeated or out of order.  Exit 0: complete and authentic; 1: problems found.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--capture", metavar="FILE",
                        help="a capture: one message a line, topic and hex payload (mosquitto_sub -F '%%t %%x' "
                        "-t 'PREFIX/#'); - reads stdin")
    source.add_argument("--broker", metavar="URL", help="capture live from this broker (mqtt://HOST:PORT or mqtts://)")
    parser.add_argument("--topic", metavar="FILTER", help="with --broker: the topic filter, e.g. 'plant1/institute/#'")
    parser.add_argument("--duration", type=float, default=30.0, metavar="SECONDS",
                        help="with --broker: how long to listen (default 30)")
    parser.add_argument("--username", help="with --broker: the user to log in as")
    parser.add_argument("--password-file", metavar="FILE", help="with --broker: a file holding the password")
    parser.add_argument("--ca", metavar="FILE", help="with mqtts://: the CA certificate (PEM) of the broker")
    parser.add_argument("--save", metavar="FILE", help="with --broker: also write the capture to FILE")
    key = parser.add_mutually_exclusive_group()
    key.add_argument("--fingerprint", metavar="HEX",
                     help="the gateway key's fingerprint, as the operator gave it (smemet gateway signing-key show)")
    key.add_argument("--key", metavar="FILE", help="the gateway's public key: PEM, or a COSE_Key file")
    parser.add_argument("--from-seq", type=int, metavar="N", help="check completeness from message N on "
                        "(default: from the first message in the capture)")
    parser.add_argument("--json", action="store_true", help="the report as JSON")
    parser.set_defaults(func=run)


def read_capture(lines, source: str) -> list:
    from smemet.gateway.ledger.verify import Captured

    out = []
    for number, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        topic, _, payload = line.rpartition(" ")
        try:
            data = bytes.fromhex(payload)
        except ValueError:
            data = None
        if not topic or data is None:
            raise UserError(f"{source}:{number}: not a captured message; each line is the topic, a space and the "
                            "payload in hex (mosquitto_sub -F '%t %x')")
        out.append(Captured(topic, data))
    return out


def write_capture(messages, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for m in messages:
            f.write(f"{m.topic} {m.payload.hex()}\n")


def _public_key(path: str) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from smemet.gateway.ledger.signing import public_from_cose_key

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"--key {path}: cannot read it ({exc.strerror})") from None
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError:
            raise UserError(f"--key {path}: not a PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise UserError(f"--key {path}: not an Ed25519 key (the gateway signs with Ed25519)")
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        return public_from_cose_key(data)
    except ValueError as exc:
        raise UserError(f"--key {path}: neither a PEM public key nor a COSE_Key ({exc})") from None


async def capture_live(url: str, topic: str, duration: float, username: str | None, password: str | None,
                       ca: str | None) -> list:
    import aiomqtt

    from smemet.gateway.ledger.verify import Captured

    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise UserError(f"--broker {url!r}: give mqtt://HOST:PORT or mqtts://HOST:PORT")
    try:
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError:
        raise UserError(f"--broker {url!r}: the port must be a number") from None
    tls = ssl.create_default_context(cafile=ca) if parts.scheme == "mqtts" else None
    messages = []
    try:
        async with aiomqtt.Client(parts.hostname, port, username=username, password=password, tls_context=tls,
                                  identifier=f"smemet-verify-{time.time_ns()}") as client:
            await client.subscribe(topic, qos=1)
            deadline = time.monotonic() + duration
            iterator = aiomqtt_messages(client)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    message = await asyncio.wait_for(anext(iterator), left)
                except TimeoutError:
                    break
                messages.append(Captured(str(message.topic), bytes(message.payload)))
    except aiomqtt.MqttError as exc:
        raise UserError(f"cannot capture from {url} ({exc}); check the address, user and password") from None
    return messages


async def aiomqtt_messages(client):
    async for message in client.messages:
        yield message


def run(args) -> int:
    from smemet.gateway.ledger.signing import normalise_fingerprint
    from smemet.gateway.ledger.verify import verify_capture

    pinned = None
    if args.fingerprint:
        try:
            pinned = normalise_fingerprint(args.fingerprint)
        except ValueError as exc:
            raise UserError(f"--fingerprint: {exc}") from None
    public = _public_key(args.key) if args.key else None
    if args.capture:
        if args.capture == "-":
            messages = read_capture(sys.stdin, "stdin")
        else:
            try:
                with open(args.capture, encoding="utf-8") as f:
                    messages = read_capture(f, args.capture)
            except OSError as exc:
                raise UserError(f"--capture {args.capture}: cannot read it ({exc.strerror})") from None
    else:
        if not args.topic:
            raise UserError("--broker needs --topic, e.g. --topic 'plant1/institute/#'")
        if args.duration <= 0:
            raise UserError("--duration must be positive (seconds)")
        password = None
        if args.password_file:
            try:
                password = Path(args.password_file).read_text().strip("\r\n")
            except OSError as exc:
                raise UserError(f"--password-file {args.password_file}: cannot read it ({exc.strerror})") from None
        print(f"verify: listening on {args.broker} to {args.topic} for {args.duration:g} s ...", file=sys.stderr)
        messages = asyncio.run(capture_live(args.broker, args.topic, args.duration, args.username, password, args.ca))
        if args.save:
            write_capture(messages, args.save)
    report = verify_capture(messages, public=public, pinned=pinned, from_seq=args.from_seq)
    if args.json:
        print(json.dumps(_as_json(report), indent=2))
    else:
        for line in report_lines(report, len(messages)):
            print(line)
    return 0 if report.complete else 1


def report_lines(report, received: int) -> list[str]:
    from smemet.gateway.ledger.verify import ranges

    lines = [f"key: fingerprint {report.key_fingerprint or '-'} ({report.key_source})"]
    lines += [f"KEY PROBLEM: {p}" for p in report.problems]
    if not report.routes:
        lines.append(f"no route found in {received} messages: a capture needs the route's <prefix>/checkpoint "
                     "messages (subscribe to <prefix>/#)")
    for r in report.routes:
        name = f"route {r.route} of gateway {r.gateway}" if r.route else "route (no valid checkpoint)"
        span = f"seq {r.first_seq}-{r.last_seq}" if r.messages else "no messages"
        lines.append(f"{r.prefix}/#: {name}: {r.messages} messages ({span}), {r.checkpoints} checkpoints, "
                     f"signed up to seq {r.covered_upto}")
        if r.agreements:
            lines.append("  under: " + ", ".join(f"{k} ({n})" for k, n in sorted(r.agreements.items())))
        for problem in r.invalid_checkpoints:
            lines.append(f"  INVALID CHECKPOINT: {problem}")
        if r.missing:
            lines.append(f"  MISSING: seq {ranges(r.missing)} ({len(r.missing)} messages)")
        if r.altered:
            lines.append(f"  ALTERED: seq {ranges(r.altered)} (" + "; ".join(
                f"{n} on {r.topics.get(n, '?')}" for n in r.altered[:5]) + (", ..." if len(r.altered) > 5 else "")
                + "): the payload does not match the chain the gateway signed")
        if r.unverifiable:
            lines.append(f"  NOT VERIFIABLE: seq {ranges(r.unverifiable)}: below a missing or altered message, no "
                         "checkpoint vouches for them (a later capture or the gateway's ledger can)")
        if r.unlinked:
            lines.append(f"  UNLINKED: {r.unlinked} data messages carry no link fields")
        if r.repeated:
            lines.append(f"  repeated (identical copies, counted once): seq {ranges(r.repeated)}")
        if r.out_of_order:
            lines.append("  out of order: " + ", ".join(f"seq {n} after {after}" for n, after in r.out_of_order[:10])
                         + (", ..." if len(r.out_of_order) > 10 else ""))
        if r.before_capture:
            first, last = r.before_capture
            lines.append(f"  not in this capture: seq {first}-{last}, sent before it began (--from-seq {first} "
                         "requires them)")
        if r.pending:
            lines.append(f"  pending: seq {ranges(r.pending)} after the newest checkpoint (the next one covers them)")
        if r.complete:
            lines.append(f"  COMPLETE: every message up to seq {r.covered_upto} is here and authentic")
    lines.append("verdict: " + ("complete and authentic" if report.complete else "PROBLEMS FOUND")
                 + ("" if report.key_source != "published key (not pinned)" else
                    " -- but the key was not pinned: pass --fingerprint from the gateway's operator"))
    return lines


def _as_json(report) -> dict:
    return {
        "complete": report.complete, "key_fingerprint": report.key_fingerprint, "key_source": report.key_source,
        "key_problems": report.problems,
        "routes": [{
            "prefix": r.prefix, "route": r.route, "gateway": r.gateway, "messages": r.messages,
            "first_seq": r.first_seq, "last_seq": r.last_seq, "checkpoints": r.checkpoints,
            "covered_upto": r.covered_upto, "complete": r.complete, "missing": r.missing, "altered": r.altered,
            "unverifiable": r.unverifiable, "pending": r.pending, "repeated": r.repeated,
            "out_of_order": r.out_of_order, "invalid_checkpoints": r.invalid_checkpoints, "unlinked": r.unlinked,
            "before_capture": r.before_capture,
            "agreements": r.agreements,
        } for r in report.routes],
    }
