"""Named plant scenarios for the ``sim`` board.

Each scenario gives the channels a node needs (config.json ``channels``
entries) and the physics that drive their simulated chips (the scenario file
``sim.json`` of firmware/boards/scenario.py: signals as breakpoints over
scenario time, fault windows).  Scenario time is node uptime times
``sim.time_scale``, so a 30-minute heat-up can run in 30 s at time_scale 60.

``expected_quality(channel, t)`` says which quality and reason a reading of a
channel taken at scenario time ``t`` must carry: the HIL tests compare it
with what reaches MQTT.  Near a fault edge the answer is None (either is
right: the reading and the edge race).

    from smemet import scenarios
    s = scenarios.get("furnace_heatup", period_ms=200)
    config["channels"] = s.channels
    (flash / "sim.json").write_text(json.dumps(s.sim_json()))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

FOREVER = 1e9  # scenario seconds: "until the end of the run"

GOOD = ("good", None)


@dataclass(frozen=True)
class FaultWindow:
    channel: str
    start: float  # scenario seconds
    end: float
    fault: str  # the sim chip's fault name
    quality: str  # what the gateway must report while it lasts
    reason: str

    def covers(self, t: float, guard: float = 0.0) -> bool | None:
        """True inside, False outside, None within ``guard`` of an edge."""
        if self.start + guard <= t < self.end - guard:
            return True
        if t < self.start - guard or t >= self.end + guard:
            return False
        return None


@dataclass
class Scenario:
    name: str
    description: str
    channels: list[dict]
    signals: dict[str, dict]
    faults: list[FaultWindow] = field(default_factory=list)
    # channel -> function(value, t) -> (quality, reason) for readings outside faults
    normal: dict[str, Callable[[float | None, float], tuple[str, str | None]]] = field(default_factory=dict)
    duration: float = 60.0  # scenario seconds the story takes

    def sim_json(self) -> dict:
        """The sim board's scenario file content."""
        channels: dict[str, dict] = {}
        for name, signals in self.signals.items():
            channels[name] = dict(signals)
        for w in self.faults:
            chip = _chip_of(w.channel)
            channels.setdefault(chip, {}).setdefault("faults", []).append({"from": w.start, "to": w.end, "fault": w.fault})
        return {"scenario": self.name, "channels": channels}

    def expected_quality(self, channel: str, t: float, value: float | None = None, guard: float = 0.0):
        """(quality, reason) a reading of ``channel`` at scenario time ``t``
        must have, or None when ``t`` is within ``guard`` of a fault edge."""
        undecided = False
        for w in self.faults:
            if w.channel != channel:
                continue
            inside = w.covers(t, guard)
            if inside:
                return (w.quality, w.reason)
            if inside is None:
                undecided = True
        if undecided:
            return None
        rule = self.normal.get(channel)
        return rule(value, t) if rule else GOOD


def _chip_of(channel: str) -> str:
    # Readings such as "tc_s.cj" or "fan.rms" come from the chip of "tc_s"/"fan".
    return channel.split(".", 1)[0]


def _ramp(points: list[tuple[float, float]]) -> list[list[float]]:
    return [[float(t), float(v)] for t, v in points]


# ---------------------------------------------------------------- scenarios


def furnace_heatup(period_ms: int = 250, duration: float = 60.0) -> Scenario:
    """An electric arc furnace heat-up from ambient to 1,600 °C, read by a
    type S and a type B thermocouple on MAX31856 converters.  Type B is
    specified from 250 °C: below it the chip flags the reading
    (tc-out-of-range, value kept: uncertain)."""
    hot = _ramp([(0, 25), (duration * 0.8, 1600), (duration, 1600)])
    channels = [
        {"name": "tc_s", "driver": "max31856", "tc_type": "S", "period_ms": period_ms},
        {"name": "tc_b", "driver": "max31856", "tc_type": "B", "period_ms": period_ms},
    ]
    signals = {"tc_s": {"value": hot, "cj": 35.0}, "tc_b": {"value": hot, "cj": 35.0}}

    def type_b(value, t):
        if value is None:
            return None
        if value < 245:
            return ("uncertain", "tc-out-of-range")
        if value > 255:
            return GOOD
        return None  # at the limit: either

    return Scenario("furnace_heatup", furnace_heatup.__doc__, channels, signals, [], {"tc_b": type_b}, duration)


def ladle_cooling(period_ms: int = 250, duration: float = 60.0, start_c: float = 1600.0, tau: float = 90.0) -> Scenario:
    """A full ladle cooling by radiation and convection from 1,600 °C:
    Newton cooling towards 300 °C with time constant ``tau`` scenario seconds,
    read by a type R thermocouple (MAX31856)."""
    points = [(t, 300 + (start_c - 300) * math.exp(-t / tau)) for t in range(0, int(duration) + 1, max(1, int(duration) // 20))]
    channels = [{"name": "ladle", "driver": "max31856", "tc_type": "R", "period_ms": period_ms}]
    return Scenario("ladle_cooling", ladle_cooling.__doc__, channels, {"ladle": {"value": _ramp(points), "cj": 40.0}}, [], {}, duration)


def thermocouple_burnout(period_ms: int = 250, at: float = 20.0, duration: float = 60.0) -> Scenario:
    """A type K thermocouple (MAX31855) in a reheating furnace burns out
    ``at`` scenario seconds: open circuit from then on (quality bad)."""
    channels = [{"name": "tc_k", "driver": "max31855", "period_ms": period_ms}]
    signals = {"tc_k": {"value": _ramp([(0, 1150), (duration, 1180)]), "cj": 30.0}}
    faults = [FaultWindow("tc_k", at, FOREVER, "open-circuit", "bad", "open-circuit")]
    return Scenario("thermocouple_burnout", thermocouple_burnout.__doc__, channels, signals, faults, {}, duration)


def wire_break(period_ms: int = 250, start: float = 15.0, end: float = 35.0, duration: float = 60.0) -> Scenario:
    """A 4–20 mA cooling-water flow transmitter (ADS1115 across 100 Ω, 0–50
    m3/h scaled in %) whose loop wire breaks from ``start`` to ``end``: the
    current falls below 3.6 mA (NAMUR NE43 failure: quality bad)."""
    channels = [{"name": "flow", "driver": "ads1115", "period_ms": period_ms, "lrv": 0.0, "urv": 100.0, "unit": "%"}]
    signals = {"flow": {"value": _ramp([(0, 12.0), (duration, 14.0)])}}
    faults = [FaultWindow("flow", start, end, "wire-break", "bad", "namur-fail-low")]
    return Scenario("wire_break", wire_break.__doc__, channels, signals, faults, {}, duration)


def bearing_fault(period_ms: int = 500, duration: float = 60.0) -> Scenario:
    """A rolling-mill fan bearing degrading: vibration amplitude on the
    ADXL345 rises from 0.5 to 12 m/s2 over the run (RMS and peak rise)."""
    channels = [{"name": "fan", "driver": "adxl345", "period_ms": period_ms, "rate_hz": 100, "window_ms": 200, "range_g": 4}]
    signals = {"fan": {"value": _ramp([(0, 0.5), (duration * 0.3, 0.8), (duration, 12.0)]), "freq": 13.0}}
    return Scenario("bearing_fault", bearing_fault.__doc__, channels, signals, [], {}, duration)


def offgas_modbus(period_ms: int = 500, every: float = 12.0, length: float = 3.0, duration: float = 60.0) -> Scenario:
    """An off-gas analyzer (CO, CO2, O2 in %, float32) on Modbus RTU that
    stops answering for ``length`` scenario seconds every ``every``: those
    readings are faults (modbus-timeout, quality bad)."""
    registers = [
        {"name": "co", "address": 0, "type": "float32", "function": 4, "unit": "%"},
        {"name": "co2", "address": 2, "type": "float32", "function": 4, "unit": "%"},
        {"name": "o2", "address": 4, "type": "float32", "function": 4, "unit": "%"},
    ]
    channels = [{"name": "offgas", "driver": "modbus_rtu", "period_ms": period_ms, "slave": 7, "timeout_ms": 50,
                 "retries": 0, "registers": registers}]
    signals = {"offgas": {"co": _ramp([(0, 18.0), (duration, 24.0)]), "co2": _ramp([(0, 20.0), (duration, 14.0)]), "o2": 1.5}}
    faults = []
    t = every
    while t < duration:
        for reg in ("co", "co2", "o2"):
            faults.append(FaultWindow(f"offgas.{reg}", t, t + length, "no-response", "bad", "modbus-timeout"))
        t += every
    scenario = Scenario("offgas_modbus", offgas_modbus.__doc__, channels, signals, faults, {}, duration)
    return scenario


SCENARIOS: dict[str, Callable[..., Scenario]] = {
    "furnace_heatup": furnace_heatup,
    "ladle_cooling": ladle_cooling,
    "thermocouple_burnout": thermocouple_burnout,
    "wire_break": wire_break,
    "bearing_fault": bearing_fault,
    "offgas_modbus": offgas_modbus,
}


def get(name: str, **options) -> Scenario:
    try:
        factory = SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(sorted(SCENARIOS))}") from None
    return factory(**options)


def combine(name: str, *parts: Scenario) -> Scenario:
    """One node running several scenarios' channels at once."""
    channels, signals, faults, normal = [], {}, [], {}
    for p in parts:
        channels += p.channels
        signals.update(p.signals)
        faults += p.faults
        normal.update(p.normal)
    return Scenario(name, "; ".join(p.name for p in parts), channels, signals, faults, normal,
                    max(p.duration for p in parts))
