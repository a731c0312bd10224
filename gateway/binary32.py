"""Readings that travelled as binary32, printed at that precision.

A node's readings are binary32 (a board's MicroPython float; the sim board
rounds to it, protocol/senml.py).  Printed with binary64's repr, 0.49703533
becomes ``0.49703532457351685``: eight digits that were never measured.  A
value that reached an output untouched (its channel has no processing chain)
and is exactly a binary32 is printed as the shortest decimal that reads back
as the same binary32 (``0.49703533``); processed values are binary64 results
and keep binary64's repr.

``as_printed(x)`` gives the binary64 nearest that decimal: its ``repr`` (what
``json.dumps`` writes) is the decimal, so every writer keeps writing floats
as it did.  The compiled payload writer has a C twin (``_writer.pyx``);
test_routes_writer.py compares them byte for byte.
"""

from __future__ import annotations

import struct

FLOAT32_MAX = 3.4028234663852886e38
_SINGLE = struct.Struct("<f")


def is_single(x: float) -> bool:
    """Whether ``x`` is exactly a (finite) binary32 value."""
    return -FLOAT32_MAX <= x <= FLOAT32_MAX and _SINGLE.unpack(_SINGLE.pack(x))[0] == x  # NaN fails both


def as_printed(x: float) -> float:
    """``x`` when it is not exactly a binary32 (or is zero); else the binary64
    whose repr is the shortest decimal that rounds back to ``x`` in binary32."""
    if x == 0.0 or not is_single(x):
        return x
    # More digits never round-trip worse (the closest d+1-digit decimal is at
    # least as close as the d-digit one), so search 1..9 by halves; 9 always
    # round-trips.  The C twin searches the same way: the same decimal.
    low, high = 1, 9
    best = float(f"{x:.9g}")
    while low < high:
        digits = (low + high) // 2
        candidate = float(f"{x:.{digits}g}")
        if _round_trips(candidate, x):
            best, high = candidate, digits
        else:
            low = digits + 1
    return best


def _round_trips(candidate: float, x: float) -> bool:
    try:
        return _SINGLE.unpack(_SINGLE.pack(candidate))[0] == x
    except OverflowError:  # rounded up past binary32's largest (3.403e+38): C's cast gives inf, no match
        return False
