"""Writes the golden vectors in this folder (one JSON file each).

The vectors are the contract every implementation of SPEC.md is tested
against, so they are committed; this script documents how each was made and
lets a test prove the committed files are exactly what it produces.  Expected
records are written out by hand from the readings below, not by our resolver.

    python protocol/vectors/generate.py [--check]
"""

from __future__ import annotations

import json
import math
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from protocol import cbor, cbor_encode, cose, gateway_side, messages, senml  # noqa: E402  (the MicroPython package name)

HERE = pathlib.Path(__file__).parent
KEY = bytes.fromhex("5ac3e1d0c2b4a6987a6c5e4f3021130412f6e8dacbbdaf9180726354453627a1")
OTHER_KEY = bytes.fromhex("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
NODE = b"ladle-7"
T0 = 1_796_000_000  # 2026-11-29T... Unix seconds: a synchronised node's clock
RECEIVED = T0 + 30  # when the gateway received the frame (reference for relative time)


def rec(name, unit, value, time, quality=None, reason=None):
    out = {"name": name, "unit": unit, "value": value, "time": time}
    if quality:
        out["quality"] = quality
        out["reason"] = reason
    return out


def frame(payload, seq=1, ct=messages.CT_SENML, key=KEY, kid=NODE, age_ms=None, age_floor=False):
    return cose.create(key, kid, seq, ct, payload, age_ms, age_floor=age_floor)


def raw_frame(protected_map, payload, key=KEY, unprotected=None, tag=None, tagged=True):
    """A frame assembled from arbitrary header values (for invalid vectors)."""
    protected = cbor_encode.encode(protected_map)
    if tag is None:
        tag = cose.compute_tag(key, protected, payload)
    body = [protected, unprotected or {}, payload, tag]
    return cbor_encode.encode(cbor.Tag(17, body) if tagged else body)


VECTORS = []


def vector(name, description, frame_bytes, *, valid, key=KEY, records=None, error=None, **extra):
    v = {
        "name": name,
        "description": description,
        "key_hex": key.hex() if key is not None else None,
        "frame_hex": frame_bytes.hex(),
        "valid": valid,
        "received_at": RECEIVED,
    }
    if valid:
        v["records"] = records if records is not None else []
    else:
        v["error"] = error
    v.update(extra)
    VECTORS.append(v)


def data_vectors():
    # (b) 1 channel x 16 samples, synced: bn/bt/bu/bv once, small f16 deltas.
    b = senml.PackBuilder()
    values = [1534.5 + 0.25 * i for i in range(16)]
    for i, value in enumerate(values):
        b.add("tc_s", "Cel", value, T0 * 1000 + 1000 * i)
    vector(
        "data-1ch-16-samples",
        "Type S thermocouple in a ladle, 16 samples a second apart; base value and integer time offsets",
        frame(b.encode(T0 * 1000 + 16_000, True), seq=1),
        valid=True,
        content_type=112, node="ladle-7", seq=1,
        records=[rec("tc_s", "Cel", v, T0 + i) for i, v in enumerate(values)],
    )
    # (a) 8 channels x 1 sample.
    readings = [("t%d" % i, "Cel", 20.5 + 100 * i) for i in range(6)] + [("p", "Pa", 101325.0), ("i", "A", 0.0125)]
    for name, unit, value in readings:
        b.add(name, unit, value, T0 * 1000 + 500)
    vector(
        "data-8ch-1-sample",
        "Eight channels read at once; names per record, the common unit as base unit",
        frame(b.encode(T0 * 1000 + 600, True), seq=2),
        valid=True,
        content_type=112, node="ladle-7", seq=2,
        records=[rec(n, u, senml.to_single(v), T0 + 0.5) for n, u, v in readings],
    )
    # Relative time: an unsynchronised node, resolved against arrival.
    b.add("vib_rms", "m/s2", 2.25, 10_000)
    b.add("vib_rms", "m/s2", 2.5, 12_000)
    vector(
        "data-relative-time",
        "Node without clock sync: bt is negative seconds before 'now' (arrival)",
        frame(b.encode(13_000, False), seq=3),
        valid=True,
        content_type=112, node="ladle-7", seq=3,
        records=[rec("vib_rms", "m/s2", 2.25, RECEIVED - 3), rec("vib_rms", "m/s2", 2.5, RECEIVED - 1)],
    )
    b.add("vib_rms", "m/s2", 3.0, 10_000)
    vector(
        "data-relative-time-with-age",
        "Retransmitted unsynced frame: unprotected age (label -65537) of 20 s moves 'now' back",
        frame(b.encode(10_000, False), seq=4, age_ms=20_000),
        valid=True,
        content_type=112, node="ladle-7", seq=4,
        records=[rec("vib_rms", "m/s2", 3.0, RECEIVED - 20)],
    )
    # The node restarted before it could send this unsynced frame: it knows
    # only the time since the restart, a lower bound of the age.
    b.add("vib_rms", "m/s2", 3.25, 10_000)
    b.add("tc_k", "Cel", None, 10_000, "open-circuit")
    b.add("loop", "A", 0.0037, 10_000, "namur-low")
    vector(
        "data-relative-time-age-lower-bound",
        "Unsynced frame from before a node restart: age flagged as a lower bound (label -65538 = true); "
        "good records become uncertain 'age-lower-bound', faulty ones keep their state",
        frame(b.encode(10_000, False), seq=28, age_ms=600_000, age_floor=True),
        valid=True,
        content_type=112, node="ladle-7", seq=28,
        records=[rec("vib_rms", "m/s2", 3.25, RECEIVED - 600, "uncertain", "age-lower-bound"),
                 rec("tc_k", None, None, RECEIVED - 600, "bad", "open-circuit"),
                 rec("loop", "A", senml.to_single(0.0037), RECEIVED - 600, "uncertain", "namur-low")],
    )
    b.add("vib_rms", "m/s2", 3.5, 10_000)
    vector(
        "data-relative-time-age-over-30-days",
        "An age over 30 days is not trusted: the record becomes uncertain 'age-over-30-days'",
        frame(b.encode(10_000, False), seq=29, age_ms=31 * 86_400_000),
        valid=True,
        content_type=112, node="ladle-7", seq=29,
        records=[rec("vib_rms", "m/s2", 3.5, RECEIVED - 31 * 86_400, "uncertain", "age-over-30-days")],
    )
    b.add("tc_k", "Cel", None, T0 * 1000, "open-circuit")
    b.add("loop", "A", 0.0037, T0 * 1000, "namur-low")
    b.add("tc_b", "Cel", 1602.0, T0 * 1000)
    vector(
        "data-fault-states",
        "A fault without a value travels as vs (bad); a suspect value carries the q label (uncertain)",
        frame(b.encode(T0 * 1000 + 100, True), seq=5),
        valid=True,
        content_type=112, node="ladle-7", seq=5,
        records=[
            rec("tc_k", None, None, T0, "bad", "open-circuit"),
            rec("loop", "A", senml.to_single(0.0037), T0, "uncertain", "namur-low"),
            rec("tc_b", "Cel", 1602.0, T0),
        ],
    )
    negatives = [-40.0, -0.5, -273.15, -1e-3]
    for i, value in enumerate(negatives):
        b.add("n%d" % i, "Cel", value, T0 * 1000)
    vector(
        "data-negative-values",
        "Negative readings (cold side, offsets)",
        frame(b.encode(T0 * 1000, True), seq=6),
        valid=True,
        content_type=112, node="ladle-7", seq=6,
        records=[rec("n%d" % i, "Cel", senml.to_single(v), T0) for i, v in enumerate(negatives)],
    )


def pack_vector(name, description, pack, records, seq, **extra):
    """A vector whose SenML pack is written as a literal (any encoder could)."""
    vector(name, description, frame(cbor_encode.encode(pack), seq=seq), valid=True,
           content_type=112, node="ladle-7", seq=seq, records=records, **extra)


def float_vectors():
    f16 = [65504.0, 5.960464477539063e-08, -0.0, 1.0, 0.5, -2.0]
    pack_vector(
        "float-f16-edges",
        "binary16: largest, smallest subnormal, negative zero, exact halves",
        [{-2: "x/", -3: T0, 0: "a%d" % i, 2: v} for i, v in enumerate(f16)][:1]
        + [{0: "a%d" % i, 2: v} for i, v in enumerate(f16)][1:],
        [rec("x/a%d" % i, None, v, T0) for i, v in enumerate(f16)],
        seq=7,
    )
    f32 = [3.4028234663852886e38, 1.401298464324817e-45, 100000.0, 1234.5078125]
    pack_vector(
        "float-f32-edges",
        "binary32: largest, smallest subnormal, values binary16 cannot hold",
        [{-3: T0, 0: "b%d" % i, 2: v} for i, v in enumerate(f32)][:1] + [{0: "b%d" % i, 2: v} for i, v in enumerate(f32)][1:],
        [rec("b%d" % i, None, v, T0) for i, v in enumerate(f32)],
        seq=8,
    )
    f64 = [0.1, 1e300, -2.2250738585072014e-308, 1796000000.123]
    pack_vector(
        "float-f64-values",
        "binary64 values from an implementation that does not round to binary32",
        [{-3: T0, 0: "c%d" % i, 2: v} for i, v in enumerate(f64)][:1] + [{0: "c%d" % i, 2: v} for i, v in enumerate(f64)][1:],
        [rec("c%d" % i, None, v, T0) for i, v in enumerate(f64)],
        seq=9,
    )
    pack_vector(
        "float-nan",
        "NaN is not a measurement: kept as a bad reading with reason non-finite (never dropped)",
        [{-3: T0, 0: "d", 2: math.nan}],
        [rec("d", None, None, T0, "bad", "non-finite")],
        seq=10,
    )
    pack_vector(
        "float-infinities",
        "+Infinity and -Infinity likewise become bad readings",
        [{-3: T0, 0: "e", 2: math.inf}, {0: "f", 2: -math.inf}],
        [rec("e", None, None, T0, "bad", "non-finite"), rec("f", None, None, T0, "bad", "non-finite")],
        seq=11,
    )
    pack_vector(
        "integer-values-and-times",
        "CBOR integers as values and times (bt as integer, t offsets)",
        [{-3: T0, -4: "count", 0: "g", 2: 7}, {0: "g", 2: -3, 6: 2}, {0: "g", 2: 1 << 40, 6: 3}],
        [rec("g", "count", 7, T0), rec("g", "count", -3, T0 + 2), rec("g", "count", 1 << 40, T0 + 3)],
        seq=12,
    )


def header_vectors():
    b = senml.PackBuilder()
    b.add("t", "Cel", 21.5, T0 * 1000)
    payload = b.encode(T0 * 1000, True)
    records = [rec("t", "Cel", 21.5, T0)]
    vector("seq-zero", "Sequence number 0: Partial IV is the single byte 0x00",
           frame(payload, seq=0), valid=True, content_type=112, node="ladle-7", seq=0, records=records)
    vector("seq-40-bit", "The largest sequence number: a 5-byte Partial IV",
           frame(payload, seq=cose.MAX_SEQ), valid=True, content_type=112, node="ladle-7",
           seq=cose.MAX_SEQ, records=records)
    vector("wrong-mac", "One payload byte flipped after the MAC was computed",
           _flip(frame(payload, seq=13), -12), valid=False, error="bad-mac")
    vector("wrong-key", "MAC'd with another key than the node's",
           frame(payload, seq=14, key=OTHER_KEY), valid=False, error="bad-mac")
    whole = frame(payload, seq=15)
    vector("truncated", "The last 5 bytes are missing", whole[:-5], valid=False, error="malformed")
    vector("untagged", "COSE_Mac0 without CBOR tag 17",
           raw_frame({1: 4, 3: 112, 4: NODE, 6: b"\x10"}, payload, tagged=False), valid=False, error="malformed")
    vector("wrong-algorithm", "Algorithm 5 (HMAC 256/256) is not accepted",
           raw_frame({1: 5, 3: 112, 4: NODE, 6: b"\x11"}, payload, tag=b"\x00" * 32),
           valid=False, error="unsupported-algorithm")
    vector("unknown-content-type", "Content type 50 (application/json) with a correct MAC",
           frame(b'[{"v":1}]', seq=18, ct=50), valid=False, error="unknown-content-type")
    vector("unknown-node", "A well-formed frame from a node the gateway has no key for",
           frame(payload, seq=19, kid=b"rogue-1"), valid=False, key=None, error="unknown-node")
    vector("non-array-senml", "The SenML payload is a map, not an array of records",
           frame(cbor_encode.encode({0: "t", 2: 1.0}), seq=20), valid=False, error="invalid-senml")
    vector("must-understand-label", "A record with label 'alarm_': must-understand, unknown here",
           frame(cbor_encode.encode([{-3: T0, 0: "t", 2: 1.0, "alarm_": 1}]), seq=21), valid=False,
           error="must-understand")
    vector("senml-version-too-new", "bver 11 is newer than this gateway's SenML version 10",
           frame(cbor_encode.encode([{-1: 11, -3: T0, 0: "t", 2: 1.0}]), seq=22), valid=False,
           error="must-understand")
    vector("record-without-value", "A record with a name but no value field",
           frame(cbor_encode.encode([{-3: T0, 0: "t"}]), seq=23), valid=False, error="invalid-senml")
    vector("indefinite-length", "An indefinite-length array inside the payload",
           frame(b"\x9f\xa2\x00\x61t\x02\x01\xff", seq=24), valid=False, error="malformed")
    vector("replayed-seq", "Sequence number 99 is inside the window and was already accepted",
           frame(payload, seq=99), valid=False, error="replayed",
           window={"highest": 100, "seen": [97, 99, 100]})
    vector("replay-below-window", "Sequence number 30 is more than 64 below the highest accepted (100)",
           frame(payload, seq=30), valid=False, error="replayed", window={"highest": 100, "seen": [100]})
    vector("in-window-not-seen", "Sequence number 98 is inside the window and not yet seen: accepted",
           frame(payload, seq=98), valid=True, content_type=112, node="ladle-7", seq=98, records=records,
           window={"highest": 100, "seen": [97, 99, 100]})


def message_vectors():
    b = senml.PackBuilder()
    b.add("uptime", "s", 86400.0, T0 * 1000)
    b.add("heap_free", "B", 41216.0, T0 * 1000)
    b.add("store_depth", None, 3.0, T0 * 1000)
    b.add_text("reset_cause", "power-on", T0 * 1000)
    b.add_text("fw", "0.1.0", T0 * 1000)
    vector("status", "Node health (content type 65001); string values are values, not faults",
           frame(b.encode(T0 * 1000, True), seq=25, ct=messages.CT_STATUS), valid=True,
           content_type=messages.CT_STATUS, node="ladle-7", seq=25,
           records=[rec("uptime", "s", 86400.0, T0), rec("heap_free", "B", 41216.0, T0),
                    rec("store_depth", None, 3.0, T0), rec("reset_cause", None, "power-on", T0),
                    rec("fw", None, "0.1.0", T0)])
    time_ms = (T0 + 31) * 1000 + 250
    gw_seq = time_ms // 10  # a gateway's own counter: any strictly increasing value (SPEC §5.4)
    vector("ack", "Gateway ACK of frames 1 and 2 with gateway time (65002)",
           frame(gateway_side.encode_ack([1, 2], time_ms), seq=gw_seq, ct=messages.CT_ACK), valid=True,
           content_type=messages.CT_ACK, node="ladle-7", seq=gw_seq,
           ack={"acked": [1, 2], "gateway_time_ms": time_ms, "status": 0})
    vector("ack-storage-full", "Gateway storage full: nothing stored, back off (status 1)",
           frame(gateway_side.encode_ack([], time_ms, messages.ACK_FULL), seq=gw_seq + 1, ct=messages.CT_ACK),
           valid=True, content_type=messages.CT_ACK, node="ladle-7", seq=gw_seq + 1,
           ack={"acked": [], "gateway_time_ms": time_ms, "status": 1})
    settings = {"period_ms.tc_s": 500, "max_records": 32, "max_latency_ms": 2000}
    vector("config", "Config update version 3 (65003)",
           frame(gateway_side.encode_config(3, settings), seq=gw_seq + 2, ct=messages.CT_CONFIG), valid=True,
           content_type=messages.CT_CONFIG, node="ladle-7", seq=gw_seq + 2,
           config={"version": 3, "settings": settings})


def size_vectors():
    largest = _frame_of_size(cose.MAX_FRAME, seq=26)
    vector("largest-frame", "Exactly %d bytes: the largest frame allowed" % cose.MAX_FRAME,
           largest, valid=True, content_type=112, node="ladle-7", seq=26,
           records=[rec("s%02d" % i, "Cel", 1000.0 + i, T0 + i) for i in range(_LARGEST_COUNT)]
           + [rec("pad", None, None, T0, "bad", _PAD[0])])
    over = _frame_of_size(cose.MAX_FRAME + 1, seq=27)
    vector("oversize", "One byte over the limit", over, valid=False, error="oversize")


_LARGEST_COUNT = 60
_PAD = [""]


def _frame_of_size(size, seq):
    """A valid data frame of exactly ``size`` bytes, padded by a fault text."""
    pack = [{-3: T0, -4: "Cel", 0: "s00", 2: 1000.0}]
    pack += [{0: "s%02d" % i, 2: 1000.0 + i, 6: i} for i in range(1, _LARGEST_COUNT)]

    pad = "x" * (size - len(_unchecked(pack, "", seq)))
    while len(pad) > 0 and len(_unchecked(pack, pad, seq)) > size:
        pad = pad[:-1]
    _PAD[0] = pad
    out = _unchecked(pack, pad, seq)
    if len(out) != size:
        raise RuntimeError("could not make a frame of exactly %d bytes (%d)" % (size, len(out)))
    return out


def _unchecked(pack, pad, seq):
    """Like cose.create, without its size limit (for the oversize vector)."""
    payload = cbor_encode.encode(pack + [{0: "pad", 3: pad}])
    protected = cose.protected_header(NODE, seq, messages.CT_SENML)
    out = bytearray(b"\xd1\x84")
    for part in (protected, None, payload, cose.compute_tag(KEY, protected, payload)):
        if part is None:
            out.append(0xA0)
        else:
            cbor.write_bytes(out, part)
    return bytes(out)


def _flip(data, index):
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def build():
    VECTORS.clear()
    data_vectors()
    float_vectors()
    header_vectors()
    message_vectors()
    size_vectors()
    return VECTORS


def render(v):
    return json.dumps(v, indent=2, sort_keys=False, allow_nan=False) + "\n"


def main(argv):
    check = "--check" in argv
    stale = []
    for v in build():
        path = HERE / (v["name"] + ".json")
        text = render(v)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if check and stale:
        print("vectors differ from the generator: " + ", ".join(stale))
        return 1
    print("%d vectors %s" % (len(VECTORS), "match" if check else "written"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
