"""``smemet decode``: verify and print one frame, for field engineers checking
what a node sends and integrators checking what they were given."""

from __future__ import annotations

import json
import sys
import time

from .errors import UserError
from .keys import load_key_file, parse_key
from .protocol import cobs, cose, gateway_side, messages
from .protocol.errors import ProtocolError

CONTENT_TYPE_NAMES = {
    messages.CT_SENML: "senml-data",
    messages.CT_STATUS: "status",
    messages.CT_ACK: "ack",
    messages.CT_CONFIG: "config",
}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "decode",
        help="verify a frame and print its header and records as JSON",
        description="Verify one frame (COSE_Mac0, SPEC.md) and print node, sequence number, "
        "content type and the resolved records as JSON on stdout.",
    )
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--key", help="the node's key, hex")
    keys.add_argument("--keys", metavar="FILE", help="key store (JSON or TOML: node id -> hex key)")
    parser.add_argument("--cobs", action="store_true", help="FRAME is COBS-encoded (serial capture)")
    parser.add_argument("frame", metavar="FRAME", help="hex, @FILE (raw or hex), or - for stdin")
    parser.set_defaults(func=run)


def read_frame(spec: str, is_cobs: bool) -> bytes:
    """FRAME as bytes: hex on the command line; hex or raw from a file or stdin."""
    if spec == "-":
        data = _maybe_hex(sys.stdin.buffer.read())
    elif spec.startswith("@"):
        try:
            with open(spec[1:], "rb") as f:
                data = _maybe_hex(f.read())
        except OSError as exc:
            raise UserError(f"cannot read {spec[1:]}: {exc.strerror}") from None
    else:
        data = _maybe_hex(spec.encode())
        if data == spec.encode():
            raise UserError("FRAME is not hexadecimal: give hex digits, @FILE or - for stdin")
    if is_cobs:
        try:
            data = cobs.decode(data.rstrip(b"\x00"))
        except ProtocolError as exc:
            raise UserError(f"not a COBS packet: {exc}") from None
    if not data:
        raise UserError("no frame given")
    return data


_HEX_TEXT = set(b"0123456789abcdefABCDEF \t\r\n")


def _maybe_hex(data: bytes) -> bytes:
    """Hex text (white space and a 0x prefix allowed) becomes bytes; anything
    else is taken as the raw frame (a binary capture file)."""
    text = data.strip()
    if text[:2].lower() == b"0x":
        text = text[2:]
    if not text or not set(text) <= _HEX_TEXT:
        return data
    try:
        return bytes.fromhex(text.decode("ascii"))
    except ValueError:
        raise UserError("FRAME is not valid hexadecimal (odd number of digits?)") from None


def describe(message: messages.Message) -> dict:
    out = {
        "node": message.node,
        "seq": message.seq,
        "content_type": message.content_type,
        "kind": CONTENT_TYPE_NAMES[message.content_type],
    }
    if message.content_type == messages.CT_ACK:
        seqs, time_ms, status = message.body
        out.update(acked=seqs, gateway_time_ms=time_ms, status=status)
    elif message.content_type == messages.CT_CONFIG:
        version, settings = message.body
        out.update(config_version=version, settings=settings)
    else:
        out["records"] = [_at_travelled_precision(record.as_dict()) for record in message.body]
    return out


def _at_travelled_precision(record: dict) -> dict:
    """A value exactly a binary32 travelled as one (CBOR carries every float
    in the shortest width that holds it exactly): print the shortest decimal
    that round-trips at binary32, not its binary64 expansion."""
    from smemet.gateway.binary32 import as_printed

    if type(record.get("value")) is float:
        record["value"] = as_printed(record["value"])
    return record


def run(args) -> int:
    frame = read_frame(args.frame, args.cobs)
    if args.key:
        key = parse_key(args.key, "--key")
        key_for = lambda kid: key  # noqa: E731 - one key for whatever node
    elif args.keys:
        keys = load_key_file(args.keys)
        key_for = keys.get
    else:
        try:
            node = messages.node_name(cose.parse(frame).kid)
        except ProtocolError as exc:
            raise UserError(f"{exc.reason}: {exc}") from None
        raise UserError(f"frame from node {node!r} cannot be verified: give --key HEX or --keys FILE")
    try:
        message = gateway_side.open_any(frame, key_for, time.time())
    except ProtocolError as exc:
        raise UserError(f"{exc.reason}: {exc}") from None
    json.dump(describe(message), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
