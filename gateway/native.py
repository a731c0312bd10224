"""Which implementation the gateway's hot paths run: the compiled Cython
twins or their pure-Python references.

Every compiled module (``kernels/_kernels``, ``opener/_opener``,
``sinks/mqtt/_senml``) has a pure-Python twin with the same names and the same
results; one test suite runs against both (the ``impl`` fixtures).  The
compiled ones are used unless the environment sets ``SMEMET_PUREPYTHON=1`` or
they were not built; then a warning is logged once (not ``warnings.warn``: a
missing compiler is the operator's concern, and tests run with warnings as
errors).  ``IMPLEMENTATION`` says which path this process runs.
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

PURE_ONLY = os.environ.get("SMEMET_PUREPYTHON") == "1"

_log = logging.getLogger("smemet.gateway")
_missing: list[str] = []


def load(compiled: str, pure: str, name: str | None = None) -> ModuleType:
    """The module ``compiled`` ("cython") or ``pure`` ("pure") by ``name``;
    without ``name``, the one this process runs.  Raises ImportError when
    "cython" is asked for and was not built."""
    if name == "pure":
        return importlib.import_module(pure)
    if name == "cython":
        return importlib.import_module(compiled)
    if name is not None:
        raise ValueError(f"unknown implementation {name!r}; valid: 'cython', 'pure'")
    if PURE_ONLY:
        return importlib.import_module(pure)
    try:
        return importlib.import_module(compiled)
    except ImportError:
        _log.warning("Cython module %s not compiled; using its pure-Python twin (slower)", compiled)
        _missing.append(compiled)
        return importlib.import_module(pure)


def implementation() -> str:
    """"cython" when every compiled module this process loaded is compiled,
    else "pure"."""
    return "pure" if PURE_ONLY or _missing else "cython"
