"""Shared fixtures for the gateway tests.

``impl``: the kernel implementation under test, "cython" and "pure" in turn
(cbor2 5.x style), so one suite keeps the compiled module and its pure-Python
twin from drifting apart.  On a developer machine without a compiler the
Cython run is skipped; under CI (``CI`` set), where the build must compile
the kernels, it fails instead so a broken build cannot hide.
"""

import os

import pytest

from smemet.gateway import kernels as _kernels


def _load_kernels(name):
    try:
        return _kernels.load(name)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("Cython kernels were not compiled: the build must compile them under CI")
        pytest.skip("Cython kernels not compiled (`pip install --no-build-isolation -e .` builds them)")


@pytest.fixture(params=["cython", "pure"])
def impl(request):
    """The kernel module under test (``smemet.gateway.kernels._kernels`` or ``.pure``)."""
    return _load_kernels(request.param)


@pytest.fixture
def both_impls():
    """(cython, pure) for tests that compare the two."""
    return _load_kernels("cython"), _load_kernels("pure")
