"""The running gateway's side of calibration: it gives each chain's
``calibration`` kernel its sensor's schedule and each ``thermocouple_life``
kernel its sensor's stored count, picks up what the command line changed
(before every processing batch: one indexed read of the change log's
newest id), hands the processing stage the counts to store with the
processed frames, and reports due dates and usage as metrics and status.

Everything but the status and metrics runs on the writer thread (the
processing stage's); those read immutable snapshots the writer thread
replaces, never a kernel mid-run.

Exactly once: a reading's time is counted by its life kernel only if it is
later than the last one counted (the kernel's rule), the counts are stored
in the transaction that stores the processed frames and moves the
processing cursor, and during warm-up (frames processed before a restart,
run again with their output discarded) nothing is counted at all.  A
batch run again after kill -9 therefore starts from the counts stored with
the cursor it starts after.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily

from ..quality import QUALITY_NAMES
from . import schedule as _schedule
from .config import CalibrationConfig
from .life import LifeState
from .records import CalibrationRecord, SatResult, Sensor, SensorLife
from .store import CalibrationStore, open_for_gateway, write_lives

log = logging.getLogger("smemet.gateway.calibration")

PREFIX = "smemet_gateway"


@dataclass(frozen=True, slots=True)
class Usage:
    """A thermocouple's current life as last stored."""

    sensor: Sensor
    life: int
    state: LifeState
    limit_hours: float
    limit_cycles: int

    @property
    def exceeded(self) -> bool:
        return self.state.exceeded_at is not None


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    records: dict[Sensor, tuple[CalibrationRecord, ...]]
    sats: dict[Sensor, tuple[SatResult, ...]]
    lives: dict[Sensor, tuple[SensorLife, ...]]


def _by_sensor(items: Iterable, key=lambda item: item.sensor) -> dict:
    out: dict = {}
    for item in items:
        out.setdefault(key(item), []).append(item)
    return {sensor: tuple(found) for sensor, found in out.items()}


class _LifeKernel:
    """A life kernel and which life of its sensor it counts."""

    __slots__ = ("kernel", "life")

    def __init__(self, kernel, life: int) -> None:
        self.kernel = kernel
        self.life = life


class CalibrationBook:
    def __init__(self, path: str, config: CalibrationConfig = CalibrationConfig()) -> None:
        self.path = path
        self.config = config
        self._store: CalibrationStore | None = None
        self._snapshot = Snapshot(0, {}, {}, {})
        self._calibrated: dict[Sensor, object] = {}  # sensor -> its Calibration kernel
        self._lives: dict[Sensor, _LifeKernel] = {}
        self._counting = True
        self._written: list[_LifeKernel] = []  # by the open processing transaction
        self._pending_usage: dict[Sensor, Usage] = {}  # ...and what that makes the usage once committed
        self._usage: dict[Sensor, Usage] = {}  # as last stored: what metrics and status show

    # ------------------------------------------------------------ writer thread

    def start(self) -> None:
        """Open the tables (the outbox made the file) and read them."""
        self._store = CalibrationStore.of_connection(open_for_gateway(self.path), self.path)
        self._load()
        for sensor, lives in self._snapshot.lives.items():
            life = lives[-1]
            if life.state is not None:
                self._usage[sensor] = Usage(sensor, life.number, life.state, life.limits.get("limit_hours", 0.0),
                                            life.limits.get("limit_cycles", 0))

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def _load(self) -> None:
        assert self._store is not None
        version, records, sats, lives = self._store.snapshot()
        self._snapshot = Snapshot(version, _by_sensor(records), _by_sensor(sats), _by_sensor(lives))

    def refresh(self) -> None:
        """Before a processing batch: take what the command line changed."""
        assert self._store is not None
        try:
            version = self._store.version()
        except sqlite3.Error:  # a busy or failing read: the records in memory stay in force
            log.exception("calibration records not re-read; the ones read before stay in force")
            return
        if version == self._snapshot.version:
            return
        self._load()
        snapshot = self._snapshot
        for sensor, kernel in self._calibrated.items():
            kernel.set_schedule(self.schedule_of(sensor))
        for sensor, held in self._lives.items():
            lives = snapshot.lives.get(sensor, ())
            if lives and lives[-1].number > held.life:  # smemet calibration replace: a new sensor
                newest = lives[-1]
                held.kernel.reset(newest.started if newest.started is not None else -math.inf)
                held.life = newest.number
                log.info("a new sensor life starts", extra={"sensor": str(sensor), "life": newest.number})
        log.info("calibration records re-read", extra={"version": version, "records": sum(map(len, snapshot.records.values()))})

    def schedule_of(self, sensor: Sensor) -> tuple[_schedule.ScheduleEntry, ...]:
        snapshot = self._snapshot
        return _schedule.schedule(snapshot.records.get(sensor, ()), snapshot.sats.get(sensor, ()))

    def attach(self, node: str, channel: str, chain) -> None:
        """A chain just built for ``node/channel``: its kernels get their
        records and their stored count."""
        sensor = Sensor(node, channel)
        if chain.calibration is not None:
            chain.calibration.set_schedule(self.schedule_of(sensor))
            self._calibrated[sensor] = chain.calibration
        if chain.life is not None:
            kernel = chain.life
            lives = self._snapshot.lives.get(sensor, ())
            current = lives[-1] if lives else None
            if current is not None and current.state is not None:
                configured = (kernel.band, kernel.limit_above, kernel.cycle_above, kernel.hysteresis)
                kernel.load(current.state.for_kernel())
                if configured != (kernel.band, kernel.limit_above, kernel.cycle_above, kernel.hysteresis):
                    log.warning("the current sensor life keeps counting as it started (band, temperatures); "
                                "the new settings apply from its next life (smemet calibration replace)",
                                extra={"sensor": str(sensor), "life": current.number})
            elif current is not None and current.started is not None:
                kernel.reset(current.started)
            kernel.counting = self._counting
            self._lives[sensor] = _LifeKernel(kernel, current.number if current is not None else 1)

    def counting(self, on: bool) -> None:
        """Off while warming up: frames already counted run again."""
        self._counting = on
        for held in self._lives.values():
            held.kernel.counting = on

    def write_state(self, db: sqlite3.Connection, last_frame_id: int) -> None:
        """(In the processing transaction.)  Store the counts that moved."""
        moved = [(sensor, held) for sensor, held in self._lives.items() if held.kernel.changed]
        self._written = [held for _sensor, held in moved]
        if not moved:
            return
        rows = []
        for sensor, held in moved:
            kernel = held.kernel
            state = LifeState.of_kernel(kernel.state())
            limits = {"limit_hours": kernel.limit_seconds / 3600.0, "limit_cycles": kernel.limit_cycles,
                      "over_limit": QUALITY_NAMES[kernel.over_quality]}
            rows.append((sensor, held.life, state, limits))
        write_lives(db, rows, last_frame_id, time.time())
        self._pending_usage = {sensor: Usage(sensor, life, state, limits["limit_hours"], limits["limit_cycles"])
                               for sensor, life, state, limits in rows}

    def state_written(self) -> None:
        """The processing transaction committed: what it stored is stored."""
        for held in self._written:
            held.kernel.changed = False
        self._written = []
        if self._pending_usage:
            usage = dict(self._usage)  # a new dict: readers on other threads keep a whole one
            usage.update(self._pending_usage)
            self._usage = usage
            self._pending_usage = {}

    # ------------------------------------------------------------ status (any thread)

    def statuses(self, now: float | None = None) -> list[_schedule.SensorStatus]:
        """Every sensor with a record: its calibration now."""
        now = time.time() if now is None else now
        snapshot = self._snapshot
        return [_schedule.status(sensor, records, snapshot.sats.get(sensor, ()), now, self.config.due_warning)
                for sensor, records in sorted(snapshot.records.items(), key=lambda item: str(item[0]))]

    def usage(self) -> dict[Sensor, Usage]:
        return self._usage

    def collector(self) -> _Metrics:
        return _Metrics(self)


class _Metrics:
    """Due dates and usage as Prometheus gauges, computed when scraped."""

    def __init__(self, book: CalibrationBook) -> None:
        self._book = book

    def describe(self):
        return []

    def collect(self):
        book = self._book
        statuses = book.statuses()
        due = GaugeMetricFamily(f"{PREFIX}_calibration_due_seconds",
                                "Seconds until the record in force is overdue (negative: overdue for that long)",
                                labels=["node", "channel", "record"])
        counts = GaugeMetricFamily(f"{PREFIX}_calibrations", "Sensors with calibration records, by state "
                                   "(due-soon: within [calibration] due_warning)", labels=["state"])
        by_state = dict.fromkeys(_schedule.STATES, 0)
        for status in statuses:
            by_state[status.state] += 1
            if status.record is not None:
                due.add_metric([status.sensor.node, status.sensor.channel, status.record.id], status.due_in)
        for state, n in by_state.items():
            counts.add_metric([state], n)
        yield due
        yield counts
        hours = GaugeMetricFamily(f"{PREFIX}_sensor_hours_above", "Hours of the current sensor life at or above its "
                                  "usage temperature (thermocouple_life limit_above)", labels=["node", "channel"])
        cycles = GaugeMetricFamily(f"{PREFIX}_sensor_heat_cycles", "Heat cycles of the current sensor life",
                                   labels=["node", "channel"])
        peak = GaugeMetricFamily(f"{PREFIX}_sensor_peak_celsius", "Highest reading of the current sensor life",
                                 labels=["node", "channel"])
        exceeded = GaugeMetricFamily(f"{PREFIX}_sensor_usage_exceeded",
                                     "1 when the current sensor life is past its usage limit (readings uncertain "
                                     "usage-limit)", labels=["node", "channel"])
        for sensor, usage in sorted(book.usage().items(), key=lambda item: str(item[0])):
            labels = [sensor.node, sensor.channel]
            hours.add_metric(labels, usage.state.hours_above)
            cycles.add_metric(labels, usage.state.cycles)
            peak.add_metric(labels, usage.state.peak)
            exceeded.add_metric(labels, 1.0 if usage.exceeded else 0.0)
        yield hours
        yield cycles
        yield peak
        yield exceeded
