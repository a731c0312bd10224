"""The verification program in docs/integrator.md works as printed: run on a
real capture of a route (through Mosquitto) it says complete and authentic,
and with a message taken out it names the missing number."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

from hil_tests.harness.broker import make_broker, mosquitto_broker
from hil_tests.harness.chain_oracle import Oracle, published_key, route_messages
from hil_tests.harness.measurements import OutboxMeasurements, frames
from smemet.gateway.sinks.mqtt import parse_routes, run_routes

__all__ = ["make_broker", "mosquitto_broker"]  # fixtures

DOC = Path(__file__).resolve().parents[2] / "docs" / "integrator.md"


def doc_program() -> str:
    text = DOC.read_text()
    marker = text.index("<!-- verify-program:")
    match = re.compile(r"```python\n(.*?)```", re.S).search(text, marker)
    return match.group(1)


def run_program(program: Path, capture: Path, fingerprint: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(program), str(capture), fingerprint], capture_output=True, text=True,
                          timeout=60)


async def test_the_documented_program_checks_a_real_capture(mosquitto_broker, tmp_path):
    source = OutboxMeasurements(tmp_path / "outbox.db")
    source.add(frames(["n1", "n2"], ["tc1", "tc2"], 10))
    table = mosquitto_broker.route_table("doc", format="senml")
    routes = parse_routes([table], "test.toml")
    with mosquitto_broker.subscriber("test/doc/#") as sub:
        stop = asyncio.Event()
        task = asyncio.create_task(run_routes(routes, source, stop))
        await sub.wait_until(lambda msgs: sum(1 for m in msgs if not m.topic.endswith(
            ("/status", "/checkpoint", "/gateway-key"))) >= 20, timeout=30)
        stop.set()  # a clean stop publishes a last checkpoint
        await asyncio.wait_for(task, 30)
        await sub.wait_until(lambda msgs: Oracle(route_messages(msgs, "test/doc"), published_key(msgs, "test/doc"))
                             .result().highest_signed >= 20, timeout=15)
        got = sub.snapshot()
    source.close()
    program = tmp_path / "check.py"
    program.write_text(doc_program())
    messages = route_messages(got, "test/doc")
    capture = tmp_path / "capture.txt"
    capture.write_text("".join(f"{t} {p.hex()}\n" for t, p in messages))
    fingerprint = hashlib.sha256(published_key(got, "test/doc")).hexdigest()
    ok = run_program(program, capture, " ".join(fingerprint[i:i + 4] for i in range(0, 64, 4)))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "authentic and complete: messages 1 to 20, signed by the gateway"

    def seq_of(payload: bytes) -> int | None:
        try:
            return json.loads(payload)[-1]["link_seq"]
        except (ValueError, KeyError, TypeError, IndexError):
            return None

    holed = tmp_path / "holed.txt"
    holed.write_text("".join(f"{t} {p.hex()}\n" for t, p in messages if seq_of(p) != 13))
    bad = run_program(program, holed, fingerprint)
    assert bad.returncode == 1 and bad.stderr.strip() == "message 13 is missing"
    altered = tmp_path / "altered.txt"
    tampered = [(t, p.replace(b'"good"', b'"bad"', 1) if seq_of(p) == 7 else p) for t, p in messages]
    altered.write_text("".join(f"{t} {p.hex()}\n" for t, p in tampered))
    bad = run_program(program, altered, fingerprint)
    assert bad.returncode == 1 and bad.stderr.strip() == "message 7 is not the one the gateway signed"
    wrong = run_program(program, capture, "00" * 32)
    assert wrong.returncode == 1 and "this is not the gateway's key" in wrong.stderr
