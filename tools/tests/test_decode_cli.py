"""``smemet decode`` on frames from an independent encoder (pycose + cbor2)."""

import json
import os
import subprocess
import sys

import cbor2
import pytest
from pycose.algorithms import HMAC25664
from pycose.headers import KID, Algorithm, ContentType, PartialIV
from pycose.keys import SymmetricKey
from pycose.messages import Mac0Message

from smemet.protocol import cobs

KEY = bytes(range(32))


def smemet(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "smemet", *args], input=stdin, capture_output=True, timeout=60)


def independent_frame(pack, seq=42, kid=b"smelter-3", key=KEY):
    """A frame made without any of our code: pycose and cbor2 only."""
    message = Mac0Message(
        phdr={Algorithm: HMAC25664, KID: kid, PartialIV: seq.to_bytes(1, "big"), ContentType: 112},
        uhdr={},
        payload=cbor2.dumps(pack),
    )
    message.key = SymmetricKey(k=key)
    return message.encode(tag=True)


PACK = [{-2: "furnace/", -3: 1796000000, -4: "Cel", 0: "tc_b", 2: 1587.25}, {0: "tc_b", 2: 1590.5, 6: 10}]


def test_decodes_a_frame_from_an_independent_encoder():
    result = smemet("decode", "--key", KEY.hex(), independent_frame(PACK).hex())
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert (out["node"], out["seq"], out["content_type"]) == ("smelter-3", 42, 112)
    assert out["records"] == [
        {"name": "furnace/tc_b", "unit": "Cel", "value": 1587.25, "time": 1796000000},
        {"name": "furnace/tc_b", "unit": "Cel", "value": 1590.5, "time": 1796000010},
    ]


def test_rejects_a_tampered_frame_with_one_line():
    frame = bytearray(independent_frame(PACK))
    frame[-12] ^= 0x40
    result = smemet("decode", "--key", KEY.hex(), frame.hex())
    assert result.returncode != 0
    assert result.stdout == b""
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "bad-mac" in lines[0]


@pytest.mark.parametrize(
    "args, stdin, expected",
    [
        (["--key", KEY.hex(), "d18443"], None, "malformed"),
        (["--key", KEY.hex(), "zz"], None, "hexadecimal"),
        (["--key", "abc", "00"], None, "not hexadecimal"),
        ([independent_frame(PACK).hex()], None, "give --key"),
    ],
)
def test_user_mistakes_get_one_clear_line(args, stdin, expected):
    result = smemet("decode", *args, stdin=stdin)
    assert result.returncode == 2
    err = result.stderr.decode()
    assert expected in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_unknown_node_with_a_key_file(tmp_path):
    keys = tmp_path / "keys.toml"
    keys.write_text('[nodes.other-node]\nkey = "%s"\n' % KEY.hex())
    os.chmod(keys, 0o600)
    result = smemet("decode", "--keys", str(keys), independent_frame(PACK).hex())
    assert result.returncode == 2
    assert "unknown-node" in result.stderr.decode()


def test_key_file_stdin_and_cobs(tmp_path):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"smelter-3": KEY.hex()}))
    captured = cobs.frame(independent_frame(PACK, seq=7))
    result = smemet("decode", "--keys", str(keys), "--cobs", "-", stdin=captured)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["seq"] == 7
    raw = tmp_path / "frame.bin"
    raw.write_bytes(independent_frame(PACK, seq=9))
    result = smemet("decode", "--keys", str(keys), f"@{raw}")
    assert json.loads(result.stdout)["seq"] == 9


def test_a_binary32_value_is_printed_as_the_shortest_decimal_that_round_trips_at_binary32():
    import struct

    reading = struct.unpack("<f", struct.pack("<f", 0.1))[0]  # 0.10000000149011612 in binary64
    pack = [{-2: "furnace/", 0: "cj", 1: "Cel", 2: reading, 6: 1796000000}, {0: "p", 2: 0.1, 6: 1796000000}]
    result = smemet("decode", "--key", KEY.hex(), independent_frame(pack).hex())
    assert result.returncode == 0, result.stderr
    assert b'"value": 0.1,' in result.stdout and b"0.10000000149011612" not in result.stdout
    values = [r["value"] for r in json.loads(result.stdout)["records"]]
    assert values == [0.1, 0.1]  # the second travelled as binary64 0.1: its repr is 0.1 too
