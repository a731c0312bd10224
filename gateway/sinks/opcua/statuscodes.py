"""Quality and reason -> OPC UA StatusCode: the one table (docs/integrator.md
shows it to integrators).

Good is Good.  Uncertain and bad readings get the sub-code of OPC 10000-8
§7.3.2 (Data Access operation level codes) or OPC 10000-4 that says why;
a reason no row names gets the plain ``Uncertain`` / ``Bad``.  Where the
cause sits at one end of a range (NAMUR NE43 under/over range, wire break
vs. short circuit) the limit bits say which end, as Part 8 asks for
EngineeringUnitsExceeded and SensorFailure.

Reasons come from three places and all are here: the gateway's processing
steps (``quality.REASON_TABLE``), the protocol's time doubts
(``age-lower-bound``, ``age-over-30-days``) and the nodes' drivers and the
Modbus pollers (``open-circuit``, ``namur-fail-low``, ``modbus-timeout``...).

A node that falls silent: its channels keep their last value with
``UncertainNoCommunicationLastUsableValue`` (Part 8: communication to the
data source failed, the value is the last usable one; Part 8 maps the
fieldbus "bad, last known" to it), or ``BadNoCommunication`` when the last
value was bad (Part 4: communication defined but not established, no last
known value).  ``UncertainLastUsableValue`` ("whatever was updating this
value stopped") is not used: the gateway cannot tell a stopped sensor from
a lost link, and a lost link is what a silent node usually is.
"""

from __future__ import annotations

from asyncua import ua

from ...quality import BAD, GOOD, UNCERTAIN

S = ua.StatusCodes
LIMIT_LOW = 0x100  # StatusCode limit bits (OPC 10000-4 §7.39)
LIMIT_HIGH = 0x200

GOOD_CODE = S.Good

UNCERTAIN_CODES: dict[str, int] = {
    # the value is fine, its time is a lower bound or too old to trust: no
    # Part 8 sub-code describes a timestamp, so the plain severity
    "age-lower-bound": S.Uncertain,
    "age-over-30-days": S.Uncertain,
    # measured, but outside the instrument's span (NE43 3.8..4 / 20..20.5 mA and the bands to failure)
    "loop-under-range": S.UncertainEngineeringUnitsExceeded | LIMIT_LOW,
    "loop-over-range": S.UncertainEngineeringUnitsExceeded | LIMIT_HIGH,
    "loop-fault-band-low": S.UncertainEngineeringUnitsExceeded | LIMIT_LOW,
    "loop-fault-band-high": S.UncertainEngineeringUnitsExceeded | LIMIT_HIGH,
    "namur-under-range": S.UncertainEngineeringUnitsExceeded | LIMIT_LOW,
    "namur-over-range": S.UncertainEngineeringUnitsExceeded | LIMIT_HIGH,
    # thermocouple converter threshold faults (value kept)
    "tc-low": S.UncertainEngineeringUnitsExceeded | LIMIT_LOW,
    "tc-high": S.UncertainEngineeringUnitsExceeded | LIMIT_HIGH,
    "cj-low": S.UncertainEngineeringUnitsExceeded | LIMIT_LOW,
    "cj-high": S.UncertainEngineeringUnitsExceeded | LIMIT_HIGH,
    # a suspect reading: at a sensor limit or changing faster than physics allows
    "clipped": S.UncertainSensorNotAccurate,
    "tc-out-of-range": S.UncertainSensorNotAccurate,
    "cj-out-of-range": S.UncertainSensorNotAccurate,
    "rate-of-change": S.UncertainSensorNotAccurate,
    # the gateway put the window median in place of an outlier
    "spike-replaced": S.UncertainSubstituteValue,
    # an aggregate over uncertain samples
    "uncertain-inputs": S.UncertainDataSubNormal,
}

BAD_CODES: dict[str, int] = {
    # the sensor or its wiring failed (NE43: <= 3.6 mA wire break, >= 21 mA short)
    "open-circuit": S.BadSensorFailure,
    "short-to-gnd": S.BadSensorFailure,
    "short-to-vcc": S.BadSensorFailure,
    "over-under-voltage": S.BadSensorFailure,
    "fault": S.BadSensorFailure,
    "wire-break": S.BadSensorFailure | LIMIT_LOW,
    "namur-fail-low": S.BadSensorFailure | LIMIT_LOW,
    "short-circuit": S.BadSensorFailure | LIMIT_HIGH,
    "namur-fail-high": S.BadSensorFailure | LIMIT_HIGH,
    # the instrument / converter chip failed or answered nonsense
    "no-response": S.BadDeviceFailure,
    "wrong-device": S.BadDeviceFailure,
    "node-fault": S.BadDeviceFailure,
    # the link to the instrument: nothing came back, or garbage
    "modbus-timeout": S.BadNoCommunication,
    "timeout": S.BadNoCommunication,
    "disconnected": S.BadNoCommunication,
    "modbus-crc": S.BadCommunicationError,
    "modbus-bad-reply": S.BadCommunicationError,
    "bad-frame": S.BadCommunicationError,
    # outside what the configuration or the conversion allows
    "out-of-range": S.BadOutOfRange,
    "emf-out-of-range": S.BadOutOfRange,
    "cj-out-of-range": S.BadOutOfRange,
    "not-finite": S.BadOutOfRange,
    "non-finite": S.BadOutOfRange,
    # an aggregation window with nothing good in it (Part 13's Bad_NoData)
    "no-good-data": S.BadNoData,
    # a per-sample cold junction configured, the node does not send it
    "no-cold-junction": S.BadConfigurationError,
}

# Reasons with a variable tail: Modbus exception codes from nodes and pollers.
_BAD_PREFIXES = (("modbus-exception-", S.BadDeviceFailure), ("exception-", S.BadDeviceFailure))

STALE_WITH_VALUE = S.UncertainNoCommunicationLastUsableValue
STALE_WITHOUT_VALUE = S.BadNoCommunication


def status_code(quality: int, reason: str | None) -> int:
    """The StatusCode (an int) of a measurement with this quality code
    (``quality.GOOD``/``UNCERTAIN``/``BAD``) and reason."""
    if quality == GOOD:
        return GOOD_CODE
    if quality == UNCERTAIN:
        return UNCERTAIN_CODES.get(reason or "", S.Uncertain)
    code = BAD_CODES.get(reason or "")
    if code is not None:
        return code
    if reason:
        for prefix, prefixed in _BAD_PREFIXES:
            if reason.startswith(prefix):
                return prefixed
    return S.Bad


def stale_code(current: int) -> int:
    """What a channel's status becomes when its node is silent."""
    return STALE_WITHOUT_VALUE if current & 0x80000000 else STALE_WITH_VALUE


def is_bad(code: int) -> bool:
    return bool(code & 0x80000000)


__all__ = ["BAD", "BAD_CODES", "GOOD", "UNCERTAIN", "UNCERTAIN_CODES", "is_bad", "stale_code", "status_code"]
