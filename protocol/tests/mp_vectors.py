"""Runs every golden vector inside MicroPython (the unix port).

Usage: micropython mp_vectors.py REPO_ROOT
Prints one line per vector and a closing 'N passed, N failed' line; exits 1
on any failure.  The same checks as test_vectors.py's own-codec test, plus
re-encoding each decoded payload, which must give back the same bytes.
"""

import gc
import json
import os
import sys

ROOT = sys.argv[1]
sys.path.insert(0, ROOT)

from protocol import cbor, cbor_encode, cose, gateway_side, window  # noqa: E402
from protocol.errors import ProtocolError  # noqa: E402


def close(a, b):
    if isinstance(a, float) or isinstance(b, float):
        if a != a:
            return b != b
        if a is None or b is None:
            return a is b
        return abs(a - b) <= 1e-9 * max(1.0, abs(a))  # MicroPython's float parsing may differ by an ulp
    return a == b


def check(vector):
    frame = bytes.fromhex(vector["frame_hex"])
    key = bytes.fromhex(vector["key_hex"]) if vector["key_hex"] else None
    key_for = lambda kid: key  # noqa: E731
    w = None
    if vector.get("window"):
        w = window.ReplayWindow()
        for seq in vector["window"]["seen"]:
            w.accept(seq)
    now = vector["received_at"]
    try:
        if w is not None:
            message = gateway_side.open_from_node(frame, key_for, now, w)
        else:
            message = gateway_side.open_any(frame, key_for, now)
    except ProtocolError as exc:
        if vector["valid"]:
            return "unexpected %s: %s" % (exc.reason, exc)
        if exc.reason != vector["error"]:
            return "error %s, expected %s" % (exc.reason, vector["error"])
        return None
    if not vector["valid"]:
        return "accepted, expected %s" % vector["error"]
    if message.seq != vector["seq"] or message.node != vector["node"]:
        return "header differs"
    if "ack" in vector:
        a = vector["ack"]
        return None if message.body == (a["acked"], a["gateway_time_ms"], a["status"]) else "ack differs"
    if "config" in vector:
        c = vector["config"]
        return None if message.body == (c["version"], c["settings"]) else "config differs"
    got = [r.as_dict() for r in message.body]
    if len(got) != len(vector["records"]):
        return "record count differs"
    for want, have in zip(vector["records"], got):
        for field in want:
            if not close(want[field], have.get(field)):
                return "%s differs: %r != %r" % (field, want[field], have.get(field))
    payload = cose.parse(frame).payload
    if cbor_encode.encode(cbor.decode(payload)) != payload:
        return "re-encoding the payload changed its bytes"
    return None


def main():
    folder = ROOT + "/protocol/vectors"
    passed = failed = 0
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".json"):
            continue
        with open(folder + "/" + name) as f:
            vector = json.load(f)
        gc.collect()
        problem = check(vector)
        if problem:
            failed += 1
            print("FAIL", vector["name"], problem)
        else:
            passed += 1
            print("ok", vector["name"])
    print("vectors: %d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


main()
