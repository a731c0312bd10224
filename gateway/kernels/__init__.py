"""Processing kernels: the compiled module (``_kernels``, Cython) or its
pure-Python reference twin (``pure``), behind one set of names.

The compiled module is used unless the environment sets
``SMEMET_PUREPYTHON=1`` or it was not built; in the latter case a warning is
logged (not ``warnings.warn``: a missing compiler is an operator's concern, and
tests run with warnings as errors).  ``IMPLEMENTATION`` says which is active.
"""

import logging
import os
from types import ModuleType

from . import codes, pure

KERNEL_NAMES = (
    "FlagNonFinite",
    "Linear",
    "Polynomial",
    "Thermocouple",
    "CurrentLoop",
    "RangeCheck",
    "Hampel",
    "Deadband",
    "Ema",
    "RateLimit",
    "Aggregate",
    "celsius_to_emf",
    "emf_to_celsius",
)

_log = logging.getLogger(__name__)


def load(name: str) -> ModuleType:
    """The implementation called ``name`` ("cython" or "pure").  Raises
    ImportError if the Cython module was not compiled."""
    if name == "pure":
        return pure
    if name == "cython":
        from . import _kernels

        return _kernels
    raise ValueError(f"unknown kernel implementation {name!r}; valid: 'cython', 'pure'")


def _select() -> ModuleType:
    if os.environ.get("SMEMET_PUREPYTHON") == "1":
        return pure
    try:
        return load("cython")
    except ImportError:
        _log.warning("Cython kernels not compiled; using pure-Python path")
        return pure


_active = _select()
IMPLEMENTATION: str = _active.IMPLEMENTATION
"""``"cython"`` or ``"pure"``: the implementation behind the names below."""

FlagNonFinite = _active.FlagNonFinite
Linear = _active.Linear
Polynomial = _active.Polynomial
Thermocouple = _active.Thermocouple
CurrentLoop = _active.CurrentLoop
RangeCheck = _active.RangeCheck
Hampel = _active.Hampel
Deadband = _active.Deadband
Ema = _active.Ema
RateLimit = _active.RateLimit
Aggregate = _active.Aggregate
celsius_to_emf = _active.celsius_to_emf
emf_to_celsius = _active.emf_to_celsius

__all__ = ["IMPLEMENTATION", "KERNEL_NAMES", "codes", "load", *KERNEL_NAMES]
