"""SenML units -> OPC UA ``EUInformation`` (OPC 10000-8 §5.6.3): the UNECE
Recommendation 20 common code, its numeric UnitId, a display symbol and a
description.

A unit the table does not know still gets an EUInformation: UnitId -1 (Part
8: "no code"), the SenML symbol as display name, so a client shows what the
node said rather than nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from asyncua import ua

UNECE_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"

# SenML / RFC 8798 symbol (and a few symbols gateway.toml uses for processed
# channels, such as "bar") -> (UNECE common code, display symbol, description)
UNITS: dict[str, tuple[str, str, str]] = {
    "Cel": ("CEL", "°C", "degree Celsius"),
    "K": ("KEL", "K", "kelvin"),
    "Pa": ("PAL", "Pa", "pascal"),
    "hPa": ("A97", "hPa", "hectopascal"),
    "kPa": ("KPA", "kPa", "kilopascal"),
    "MPa": ("MPA", "MPa", "megapascal"),
    "bar": ("BAR", "bar", "bar"),
    "mbar": ("MBR", "mbar", "millibar"),
    "A": ("AMP", "A", "ampere"),
    "mA": ("4K", "mA", "milliampere"),
    "V": ("VLT", "V", "volt"),
    "mV": ("2Z", "mV", "millivolt"),
    "Ohm": ("OHM", "Ω", "ohm"),
    "W": ("WTT", "W", "watt"),
    "kW": ("KWT", "kW", "kilowatt"),
    "Wh": ("WHR", "W·h", "watt hour"),
    "kWh": ("KWH", "kW·h", "kilowatt hour"),
    "J": ("JOU", "J", "joule"),
    "N": ("NEW", "N", "newton"),
    "C": ("COU", "C", "coulomb"),
    "F": ("FAR", "F", "farad"),
    "S": ("SIE", "S", "siemens"),
    "Hz": ("HTZ", "Hz", "hertz"),
    "m": ("MTR", "m", "metre"),
    "mm": ("MMT", "mm", "millimetre"),
    "cm": ("CMT", "cm", "centimetre"),
    "km": ("KMT", "km", "kilometre"),
    "m2": ("MTK", "m²", "square metre"),
    "m3": ("MTQ", "m³", "cubic metre"),
    "l": ("LTR", "l", "litre"),
    "kg": ("KGM", "kg", "kilogram"),
    "g": ("GRM", "g", "gram"),
    "s": ("SEC", "s", "second"),
    "ms": ("C26", "ms", "millisecond"),
    "min": ("MIN", "min", "minute [unit of time]"),
    "h": ("HUR", "h", "hour"),
    "m/s": ("MTS", "m/s", "metre per second"),
    "km/h": ("KMH", "km/h", "kilometre per hour"),
    "m/s2": ("MSK", "m/s²", "metre per second squared"),
    "m3/s": ("MQS", "m³/s", "cubic metre per second"),
    "m3/h": ("MQH", "m³/h", "cubic metre per hour"),
    "lx": ("LUX", "lx", "lux"),
    "%": ("P1", "%", "percent"),
    "%RH": ("P1", "%RH", "percent (relative humidity)"),
    "ppm": ("59", "ppm", "part per million"),
    "rpm": ("RPM", "r/min", "revolutions per minute"),
    "deg": ("DD", "°", "degree [unit of angle]"),
    "B": ("AD", "B", "byte"),
}


@dataclass(frozen=True, slots=True)
class EngineeringUnit:
    code: str | None  # UNECE common code; None: not in the table
    unit_id: int
    symbol: str
    description: str


def unit_id(code: str) -> int:
    """Part 8's UnitId of a common code: its characters' ASCII codes, the
    first in the most significant byte ("CEL" -> 0x43454C)."""
    value = 0
    for char in code:
        value = (value << 8) | ord(char)
    return value


@lru_cache(maxsize=1024)
def engineering_unit(senml: str) -> EngineeringUnit:
    known = UNITS.get(senml)
    if known is None:
        return EngineeringUnit(None, -1, senml, senml)
    code, symbol, description = known
    return EngineeringUnit(code, unit_id(code), symbol, description)


def eu_information(senml: str) -> ua.EUInformation:
    unit = engineering_unit(senml)
    return ua.EUInformation(NamespaceUri=UNECE_NAMESPACE, UnitId=unit.unit_id,
                            DisplayName=ua.LocalizedText(unit.symbol, "en"),
                            Description=ua.LocalizedText(unit.description, "en"))
