"""Loading the golden vectors, shared by the protocol tests."""

import json
import pathlib

VECTOR_DIR = pathlib.Path(__file__).resolve().parents[1] / "vectors"


def load_vectors():
    return [json.loads(p.read_text()) for p in sorted(VECTOR_DIR.glob("*.json"))]
