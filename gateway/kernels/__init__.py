"""Processing kernels: the compiled module (``_kernels``, Cython) or its
pure-Python reference twin (``pure``), behind one set of names; both also
hold the batch runner (``process_frames``) that ``Processor`` uses.

Which one runs is chosen once per process by ``native.py``
(``SMEMET_PUREPYTHON=1`` forces the pure twin; a missing build falls back to
it with a warning).  ``IMPLEMENTATION`` says which is active.
"""

from types import ModuleType

from .. import native
from .. import quality as codes

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
    "Calibration",
    "ThermocoupleLife",
    "celsius_to_emf",
    "emf_to_celsius",
)


def load(name: str | None = None) -> ModuleType:
    """The implementation called ``name`` ("cython" or "pure"); without a
    name, the active one.  Raises ImportError if the Cython module was not
    compiled."""
    return native.load("smemet.gateway.kernels._kernels", "smemet.gateway.kernels.pure", name)


def load_active() -> ModuleType:
    return _active


_active = load()
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
Calibration = _active.Calibration
ThermocoupleLife = _active.ThermocoupleLife
celsius_to_emf = _active.celsius_to_emf
emf_to_celsius = _active.emf_to_celsius

__all__ = ["IMPLEMENTATION", "KERNEL_NAMES", "codes", "load", *KERNEL_NAMES]
