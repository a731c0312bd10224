"""The Cython Hampel skips the full MAD when a lower bound of it already
proves "no spike"; that shortcut must never change a decision.  Long noisy
signals with spikes, ties and borderline thresholds, every window size up to
40: the Cython output equals the pure-Python reference exactly."""

import random
from array import array

import pytest

from smemet.gateway import kernels

pytest.importorskip("smemet.gateway.kernels._kernels", reason="Cython kernels not compiled")
CYTHON = kernels.load("cython")
PURE = kernels.load("pure")


def signal(rng: random.Random, n: int) -> list[float]:
    kind = rng.randrange(3)
    out = []
    for i in range(n):
        if kind == 0:
            x = 1200.0 + rng.gauss(0.0, 0.8)
        elif kind == 1:
            x = float(rng.randrange(-2, 3))  # ties and zero MADs
        else:
            x = rng.choice([0.0, 1.0]) + rng.random() * 1e-9  # near-exact borderline spreads
        if rng.random() < 0.03:
            x += rng.choice([-1, 1]) * rng.uniform(0.5, 300.0)
        out.append(x)
    return out


def run(module, window, threshold, values, quality):
    buffers = (array("d", range(len(values))), array("d", values), bytearray(quality), bytearray(len(values)))
    module.Hampel(window, threshold).process(*buffers)
    return list(buffers[1]), bytes(buffers[2]), bytes(buffers[3])


@pytest.mark.parametrize("window", range(3, 41))
def test_cython_hampel_decides_exactly_as_the_reference(window):
    rng = random.Random(window)
    for threshold in (0.0, 0.5, 1.0, 2.0, 3.0, 1 / 1.4826, 2 / 1.4826):
        values = signal(rng, 600)
        quality = [2 if rng.random() < 0.02 else 0 for _ in values]
        assert run(CYTHON, window, threshold, values, quality) == run(PURE, window, threshold, values, quality)
