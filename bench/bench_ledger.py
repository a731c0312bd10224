"""What signed deliveries and agreements add per measurement on a route's
path (issue target: at most 2 µs per measurement end to end).

    .venv/bin/python bench/bench_ledger.py [--quick]

Measured on the code the routes run, on frames of 32 measurements as in the
end-to-end benchmark:

* ``link``: stamping a payload with its agreement and link fields and
  hashing it into the chain (two SHA-256), plus the MQTT 5 user properties
  (``sinks/mqtt/links.py``), per message: json has a message per
  measurement, senml one per frame;
* ``ledger``: recording an acknowledged delivery of 64 frames in the ledger
  (one SQLite transaction each -- the route writes at most one per 50 ms,
  for all deliveries acknowledged meanwhile; SQLite in a temporary directory);
* ``checkpoint``: signing a checkpoint (Ed25519, COSE_Sign1) and recording it
  durably (fsync), once per ``checkpoint_interval`` (5 s): per measurement at
  100,000 measurements/s;
* ``terms``: an agreement's stage in the delivery loop: pseudonyms and
  stripped fields (per frame), and 1-minute aggregates (per measurement);
* ``payload``, for scale: what the route spends anyway on topics and
  payloads of the same frames.

``added_us_per_measurement_json``/``_senml`` sum link + ledger + checkpoint
(the terms are the agreement's own choice and reported apart).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from smemet.gateway.agreements import Terms, parse_agreement  # noqa: E402
from smemet.gateway.ledger import Checkpoint, Delivered, Head, LedgerStore, RouteChain  # noqa: E402
from smemet.gateway.ledger.chain import load as link_hash_backend  # noqa: E402
from smemet.gateway.ledger.checkpoint import sign  # noqa: E402
from smemet.gateway.ledger.signing import load_or_create  # noqa: E402
from smemet.gateway.sinks.mqtt import wire  # noqa: E402
from smemet.gateway.sinks.mqtt.links import RouteLinks  # noqa: E402
from smemet.gateway.sinks.mqtt.payload import PayloadWriter, messages_of  # noqa: E402
from smemet.gateway.spine import KIND_DATA, ProcessedFrame  # noqa: E402

SAMPLES = 32
CHANNELS = [f"ch{i}" for i in range(8)]
RATE = 100_000  # measurements/s, for the per-measurement share of a checkpoint
AGREEMENT = {"id": "IMT-2026-07", "version": 2, "purpose": "bench", "include": ["*"],
             "parties": [{"name": "plant", "role": "provider"}, {"name": "institute", "role": "recipient"}]}


def make_frames(count: int) -> list[ProcessedFrame]:
    out, first = [], 1
    t0 = time.time() - 3600
    for k in range(count):
        node = f"node-{k % 10}"
        channels = tuple(CHANNELS[i % len(CHANNELS)] for i in range(SAMPLES))
        times = tuple(t0 + k * 0.32 + i * 0.01 for i in range(SAMPLES))
        values = tuple(1500.0 + ((k * 31 + i * 7) % 97) / 7.0 for i in range(SAMPLES))
        out.append(ProcessedFrame(first, k + 1, node, k + 1, KIND_DATA, t0 + k * 0.32, channels, times, values,
                                  ("Cel",) * SAMPLES, bytes(SAMPLES), (None,) * SAMPLES))
        first += SAMPLES
    return out


def best(fn, repeat: int) -> float:
    """CPU seconds of the fastest of ``repeat`` runs of ``fn``: CPU time, not
    wall time, and the best run, because the machine is shared and noisy."""
    times = []
    for _ in range(repeat):
        started = time.process_time()
        fn()
        times.append(time.process_time() - started)
    return min(times)


def link_cost(fmt: str, mqtt5: bool, frames: list[ProcessedFrame], repeat: int) -> float:
    writer = PayloadWriter()
    payloads = [m.payload for f in frames for m in messages_of(fmt, "bench", f, writer)]
    body = wire.publish_property_body(content_type="application/json", payload_format=1) if mqtt5 else None

    def run():
        chain = RouteChain(Head())
        links = RouteLinks(chain, fmt, ("IMT-2026-07", 2), body)
        batch = chain.begin(0, lambda: None)
        link = links.link
        for payload in payloads:
            link(batch, payload)

    return best(run, repeat) / (len(frames) * SAMPLES) * 1e6


def payload_cost(fmt: str, frames: list[ProcessedFrame], repeat: int) -> float:
    """The route's own work before any of this: topics and payloads (for scale)."""
    def run():
        writer = PayloadWriter()
        for f in frames:
            messages_of(fmt, "bench", f, writer)

    return best(run, repeat) / (len(frames) * SAMPLES) * 1e6


def ledger_cost(directory: str, frames: list[ProcessedFrame], repeat: int, messages_per_frame: int) -> float:
    store = LedgerStore(os.path.join(directory, "ledger.sqlite"))
    deliveries = [bytes(32) * (64 * messages_per_frame) for _ in range(len(frames) // 64)]
    seq = [0]

    def run():
        for hashes in deliveries:  # one transaction per delivery: more than the route's (one per 50 ms at most)
            store.record([Delivered("bench", seq[0] + 1, hashes, "IMT-2026-07", 2, time.time(), seq[0])])
            seq[0] += len(hashes) // 32

    cost = best(run, repeat) / (len(deliveries) * 64 * SAMPLES) * 1e6
    store.close()
    return cost


def checkpoint_cost(directory: str, repeat: int) -> dict:
    key = load_or_create(os.path.join(directory, "signing.key"))
    store = LedgerStore(os.path.join(directory, "ledger.sqlite"))
    n = [0]

    def run():
        for _ in range(20):
            n[0] += 1
            message = sign(key, Checkpoint("bench", "gw", n[0], bytes(32), time.time(), "IMT-2026-07", 2))
            store.record_checkpoint("bench", n[0], bytes(32), time.time(), message)

    per = best(run, repeat) / 20
    store.close()
    return {"us_per_checkpoint": round(per * 1e6, 1),
            "us_per_measurement_at_100k_per_s": round(per * 1e6 / (5.0 * RATE), 5)}


def terms_cost(frames: list[ProcessedFrame], repeat: int) -> dict:
    now = time.time()
    out = {}
    cases = {
        "pseudonyms_and_fields": dict(AGREEMENT, pseudonyms={f"node-{i}": f"site-{i}" for i in range(10)},
                                      fields=["unit"]),
        "aggregates_1min": dict(AGREEMENT, resolution={"period": "1m"}),
        "delay_and_validity": dict(AGREEMENT, delay="10s", validity={"from": "2020-01-01T00:00:00Z"}),
    }
    for name, table in cases.items():
        agreement = parse_agreement(table, "bench")

        def run():
            terms = Terms(agreement, "bench")
            terms.start(0)
            for i in range(0, len(frames), 64):
                terms.apply(frames[i:i + 64], now, reached_end=False)

        out[name] = round(best(run, repeat) / (len(frames) * SAMPLES) * 1e6, 3)
    return out


def run(quick: bool = False) -> dict:
    frames = make_frames(640 if quick else 3200)
    repeat = 3 if quick else 7
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as directory:
        figures: dict = {"measurements": len(frames) * SAMPLES, "samples_per_frame": SAMPLES,
                         "link_hash": link_hash_backend().IMPLEMENTATION}  # compiled, or its pure twin
        link = {
            "json_mqtt5": round(link_cost("json", True, frames, repeat), 3),
            "json_mqtt311": round(link_cost("json", False, frames, repeat), 3),
            "senml_mqtt5": round(link_cost("senml", True, frames, repeat), 3),
            "senml_mqtt311": round(link_cost("senml", False, frames, repeat), 3),
        }
        figures["link_us_per_measurement"] = link
        figures["payload_us_per_measurement"] = {fmt: round(payload_cost(fmt, frames, repeat), 3)
                                                 for fmt in ("json", "senml")}
        ledger_json = ledger_cost(directory, frames, repeat, SAMPLES)
        ledger_senml = ledger_cost(tempfile.mkdtemp(dir=directory), frames, repeat, 1)
        figures["ledger_us_per_measurement"] = {"json": round(ledger_json, 3), "senml": round(ledger_senml, 3)}
        checkpoint = checkpoint_cost(directory, repeat)
        figures["checkpoint"] = checkpoint
        figures["terms_us_per_measurement"] = terms_cost(frames, repeat)
        share = checkpoint["us_per_measurement_at_100k_per_s"]
        figures["added_us_per_measurement_json"] = round(link["json_mqtt5"] + ledger_json + share, 3)
        figures["added_us_per_measurement_senml"] = round(link["senml_mqtt5"] + ledger_senml + share, 3)
    return figures


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))
