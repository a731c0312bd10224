"""``[calibration]`` in gateway.toml, and whether the gateway needs its
calibration book at all (only when a chain applies records or counts a
thermocouple's life: otherwise calibration costs nothing)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..settings import Table

DEFAULT_DUE_WARNING = 30 * 86400.0
_FIXED_KEYS = ("gain", "offset", "coefficients")  # a calibration step with these is the fixed form (chains.py)


@dataclass(frozen=True, slots=True)
class CalibrationConfig:
    """``due_warning``: seconds before a due date from which a sensor is
    "due soon" (metric, ``smemet nodes``, the console)."""

    due_warning: float = DEFAULT_DUE_WARNING


def parse_calibration(data: Any, source: str) -> CalibrationConfig:
    table = Table(data, f"{source}: calibration", ("due_warning",))
    table.finish()
    return CalibrationConfig(table.duration("due_warning", DEFAULT_DUE_WARNING, low=0.0, high=3650 * 86400.0))


def uses_records(channels: Sequence[tuple[str, Sequence[Mapping[str, Any]]]]) -> bool:
    """Whether a configured chain applies calibration records or counts a
    thermocouple's life (validated steps, as GatewayConfig.channels holds)."""
    for _pattern, steps in channels:
        for step in steps:
            kind = step.get("type")
            if kind == "thermocouple_life" or (kind == "calibration" and not any(key in step for key in _FIXED_KEYS)):
                return True
    return False
