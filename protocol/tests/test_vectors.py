"""Every golden vector, through our codec and through independent ones.

Our side: ``smemet.protocol.messages`` (the same code the node runs).
Independent side: pycose verifies the MAC and cbor2 decodes; a small SenML
resolver written here from RFC 8428 and SPEC.md resolves the records.
"""

import math
import sys

import cbor2
import pytest
from pycose.keys import SymmetricKey
from pycose.messages import Mac0Message

from smemet.protocol import gateway_side, window
from smemet.protocol.errors import ProtocolError

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from vectors import VECTOR_DIR, load_vectors  # noqa: E402

VECTORS = load_vectors()
IDS = [v["name"] for v in VECTORS]


def key_for(vector):
    key = bytes.fromhex(vector["key_hex"]) if vector["key_hex"] else None
    return lambda kid: key


def window_for(vector):
    state = vector.get("window")
    if state is None:
        return None
    w = window.ReplayWindow()
    for seq in state["seen"]:
        w.accept(seq)
    assert w.highest == state["highest"]
    return w


def same(expected, actual):
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(actual, float) and math.isnan(actual)
    return expected == actual and type(expected) is type(actual) or (
        isinstance(expected, (int, float)) and isinstance(actual, (int, float)) and expected == actual
        and not isinstance(expected, bool) and not isinstance(actual, bool)
    )


def test_there_are_enough_vectors():
    assert len(VECTORS) >= 20
    assert any(not v["valid"] for v in VECTORS) and any(v["valid"] for v in VECTORS)


def test_committed_vectors_are_what_the_generator_makes():
    import runpy

    generator = runpy.run_path(str(VECTOR_DIR / "generate.py"))
    assert generator["main"](["--check"]) == 0


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_vector_with_our_codec(vector):
    frame = bytes.fromhex(vector["frame_hex"])
    now = vector["received_at"]
    if not vector["valid"]:
        with pytest.raises(ProtocolError) as caught:
            if vector.get("window") is not None:
                gateway_side.open_from_node(frame, key_for(vector), now, window_for(vector))
            else:
                gateway_side.open_any(frame, key_for(vector), now)
        assert caught.value.reason == vector["error"]
        return
    if vector.get("window") is not None:
        message = gateway_side.open_from_node(frame, key_for(vector), now, window_for(vector))
    else:
        message = gateway_side.open_any(frame, key_for(vector), now)
    assert message.node == vector["node"]
    assert message.seq == vector["seq"]
    assert message.content_type == vector["content_type"]
    if "ack" in vector:
        assert message.body == (vector["ack"]["acked"], vector["ack"]["gateway_time_ms"], vector["ack"]["status"])
    elif "config" in vector:
        assert message.body == (vector["config"]["version"], vector["config"]["settings"])
    else:
        got = [r.as_dict() for r in message.body]
        assert len(got) == len(vector["records"])
        for want, have in zip(vector["records"], got):
            assert want.keys() == have.keys()
            for field in want:
                assert same(want[field], have[field]), (field, want, have)


# ---------------------------------------------------------------- independent

SENML_LABELS = {-1: "bver", -2: "bn", -3: "bt", -4: "bu", -5: "bv", -6: "bs", 0: "n", 1: "u", 2: "v",
                3: "vs", 4: "vb", 5: "s", 6: "t", 7: "ut", 8: "vd", "q": "q"}


def independent_resolve(pack, now, data, doubt=None):  # noqa: C901 - one RFC section
    """RFC 8428 §4.6 resolution plus SPEC.md's fault rules, from cbor2 output;
    ``doubt``: the reason good records with relative times become uncertain."""
    if not isinstance(pack, (list, tuple)) or not pack:
        raise ValueError("invalid-senml")
    out, base = [], {"bn": "", "bt": 0, "bu": None, "bv": 0}
    for entry in pack:
        if not hasattr(entry, "items"):
            raise ValueError("invalid-senml")
        named = {}
        for label, value in entry.items():
            if label in SENML_LABELS:
                named[SENML_LABELS[label]] = value
            elif isinstance(label, str) and label.endswith("_"):
                raise ValueError("must-understand")
        if named.get("bver", 10) > 10:
            raise ValueError("must-understand")
        for b in ("bn", "bt", "bu", "bv"):
            if b in named:
                base[b] = named[b]
        values = [k for k in ("v", "vs", "vb", "vd", "s") if k in named]
        if len(values) != 1:
            raise ValueError("invalid-senml")
        time = base["bt"] + named.get("t", 0)
        relative = time < 2**28
        if relative:
            time += now
        record = {"name": base["bn"] + named.get("n", ""), "unit": named.get("u", base["bu"]), "time": time}
        if "v" in named:
            value = base["bv"] + named["v"]
            if math.isfinite(value):
                record["value"] = value
                if "q" in named:
                    record.update(quality="uncertain", reason=named["q"])
            else:
                record.update(value=None, quality="bad", reason="non-finite")
        elif "vs" in named and data:
            record.update(unit=None, value=None, quality="bad", reason=named["vs"])
        else:
            record["value"] = named[values[0]]
        if relative and doubt and "quality" not in record:
            record.update(quality="uncertain", reason=doubt)
        out.append({k: record[k] for k in ("name", "unit", "value", "time", "quality", "reason") if k in record})
    return out


def independent_verify(frame, key):
    """pycose's verdict; raises on a bad tag."""
    item = cbor2.loads(frame)
    if not isinstance(item, cbor2.CBORTag) or item.tag != 17:
        raise ValueError("not a COSE_Mac0")
    # cbor2 6 may hand back tuples, which pycose.decode() does not accept.
    protected, unprotected, payload, tag = item.value
    message = Mac0Message.from_cose_obj([protected, dict(unprotected), payload, tag], True)
    message.key = SymmetricKey(k=key)
    if not message.verify_tag():
        raise ValueError("bad-mac")
    return message


def independent_open(vector):
    """SPEC.md §6's checks, in its order, with cbor2 and pycose only.
    Returns the resolved records (or the ACK/config body); raises
    ValueError(reason) for an invalid frame."""
    frame = bytes.fromhex(vector["frame_hex"])
    if len(frame) > 1024:
        raise ValueError("oversize")
    try:
        item = cbor2.loads(frame)
    except Exception:
        raise ValueError("malformed") from None
    if not isinstance(item, cbor2.CBORTag) or item.tag != 17 or len(item.value) != 4:
        raise ValueError("malformed")
    protected = cbor2.loads(item.value[0])
    if protected.get(1) != 4:
        raise ValueError("unsupported-algorithm")
    if not vector["key_hex"]:
        raise ValueError("unknown-node")
    message = independent_verify(frame, bytes.fromhex(vector["key_hex"]))
    content_type = protected[3]
    if content_type not in (112, 65001, 65002, 65003):
        raise ValueError("unknown-content-type")
    seq = int.from_bytes(protected[6], "big")
    state = vector.get("window")
    if state and (seq in state["seen"] or seq <= state["highest"] - 64):
        raise ValueError("replayed")
    if message.payload[:1] == b"\x9f" or b"\xbf" == message.payload[:1]:
        raise ValueError("malformed")  # SPEC §2.1: definite lengths only
    body = cbor2.loads(message.payload)
    if content_type == 65002:
        return {"acked": list(body[1]), "gateway_time_ms": body[2], "status": body[3]}
    if content_type == 65003:
        return {"version": body[1], "settings": dict(body[2])}
    age = message.uhdr.get(-65537, 0)
    # SPEC §3.4: an age flagged as a lower bound, or over 30 days, leaves relative times in doubt
    doubt = "age-lower-bound" if message.uhdr.get(-65538) is True else "age-over-30-days" if age > 30 * 86400000 else None
    return independent_resolve(body, vector["received_at"] - age / 1000, data=content_type == 112, doubt=doubt)


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_vector_with_independent_implementation(vector):
    """pycose + cbor2 + the resolver above reach each vector's verdict."""
    if not vector["valid"]:
        with pytest.raises(ValueError) as caught:
            independent_open(vector)
        assert str(caught.value) == vector["error"]
        return
    result = independent_open(vector)
    if "ack" in vector:
        assert result == vector["ack"]
    elif "config" in vector:
        assert result == vector["config"]
    else:
        assert len(result) == len(vector["records"])
        for want, have in zip(vector["records"], result):
            assert want.keys() == have.keys()
            for field in want:
                assert same(want[field], have[field]), (field, want, have)
