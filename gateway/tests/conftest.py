"""Shared fixtures for the gateway tests.

``impl``: the kernel implementation under test, "cython" and "pure" in turn
(cbor2 5.x style), so one suite keeps the compiled module and its pure-Python
twin from drifting apart; ``opener_impl`` does the same for the frame opener.
On a developer machine without a compiler the Cython run is skipped; under
CI (``CI`` set), where the build must compile them, it fails instead so a
broken build cannot hide.
"""

import os

import pytest

from smemet.gateway import kernels as _kernels
from smemet.gateway import opener as _opener


def _compiled(load, name):
    try:
        return load(name)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("Cython modules were not compiled: the build must compile them under CI")
        pytest.skip("Cython modules not compiled (`pip install --no-build-isolation -e .` builds them)")


def _load_kernels(name):
    return _compiled(_kernels.load, name)


@pytest.fixture(params=["cython", "pure"])
def impl(request):
    """The kernel module under test (``smemet.gateway.kernels._kernels`` or ``.pure``)."""
    return _load_kernels(request.param)


@pytest.fixture
def both_impls():
    """(cython, pure) for tests that compare the two."""
    return _load_kernels("cython"), _load_kernels("pure")


@pytest.fixture(params=["cython", "pure"], scope="session")
def opener_impl(request):
    """The frame opener backend under test (``opener._opener`` or ``opener.reference``)."""
    return _compiled(_opener.load, request.param)
