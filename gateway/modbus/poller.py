"""Poll Modbus instruments and submit their readings as virtual nodes.

Each device runs in its own task, so a dead device only ever waits on its
own timeouts.  Devices on one serial port share one client and take turns on
the wire (the bus lock is held for one request, never across a retry's
back-off), and devices behind one TCP host:port share one connection.  First
polls are staggered across the period so a bus is never flooded at once.

A poll reads each merged block of the device's register map (``plan_reads``);
a block that fails after its retries yields readings with value None,
quality "bad" and the reason (timeout, bad-frame, disconnected,
exception-N).  When the link is down or silent, the remaining blocks of that
poll are not tried (their readings carry the same reason), so a dead device
costs one timeout budget per period, not one per block.

The readings of a poll go to ``sink.submit(device, readings)``.  When the
outbox is full (``OutboxFull``) or the submit fails otherwise, the poller
keeps the readings and tries again with back-off; it takes no new readings
meanwhile, so nothing taken is ever dropped.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Protocol, Sequence

from prometheus_client import CollectorRegistry

from ..spine import QUALITY_BAD, QUALITY_GOOD, Reading
from .codec import ReadBlock, decode, plan_reads
from .config import DeviceSpec, ModbusConfig
from .links import RETRYABLE, Link, ReadFailed
from .metrics import PollerMetrics

log = logging.getLogger(__name__)


class ReadingSink(Protocol):
    """Where pollers put their readings: the gateway's commit stage
    (``GroupCommit.submit``), which stores them durably as frames of a
    virtual node."""

    async def submit(self, node: str, readings: Sequence[Reading]) -> int:
        """Commit ``readings`` of virtual node ``node``; returns the sequence
        number given to them.  Raises ``OutboxFull`` when storage is full
        (the caller keeps them and retries)."""

@dataclass(slots=True)
class DeviceState:
    """What a poller knows about its instrument right now (for the web
    console and health output; the metrics count the same events)."""

    polls: int = 0
    failing_blocks: int = 0  # blocks of the last poll that failed
    consecutive_failures: int = 0  # polls in a row with a failed block
    last_poll: float | None = None  # Unix s, end of the last poll
    last_ok: float | None = None  # Unix s of the last poll without a failed block
    last_error: str = ""  # reason of the newest failure ("timeout", "exception-2", ...)
    last_error_at: float | None = None
    held: str = ""  # why readings are held back (the outbox refused them), "" when not

    @property
    def state(self) -> str:
        """"waiting" (not polled yet), "ok" or "failing" (the last poll had a failed block)."""
        if self.last_poll is None:
            return "waiting"
        return "failing" if self.failing_blocks else "ok"


SUBMIT_BACKOFF_MIN = 0.05  # seconds; doubles up to SUBMIT_BACKOFF_MAX
SUBMIT_BACKOFF_MAX = 5.0
# After these, the rest of a poll's blocks are not tried: the device is gone.
_GIVE_UP = frozenset({"timeout", "disconnected", "bad-frame"})


async def run_pollers(config: ModbusConfig, sink: ReadingSink, stop: asyncio.Event,
                      registry: CollectorRegistry | None = None,
                      states: dict[str, DeviceState] | None = None) -> None:
    """Poll every configured device until ``stop`` is set; ``states``, when
    given, is filled with each device's live ``DeviceState`` by name."""
    if not config.devices:
        return
    metrics = PollerMetrics(registry)
    links: dict[str, Link] = {}
    for device in config.devices:
        if device.bus not in links:
            # A shared client's own timeout is the longest of its devices';
            # each request is cut at its own device's timeout.
            longest = max(d.timeout for d in config.devices if d.bus == device.bus)
            links[device.bus] = Link(device, timeout=longest + 1.0)
    tasks = []
    pollers = []
    count = len(config.devices)
    for index, device in enumerate(config.devices):
        # Stagger across the device's period: devices of one bus start apart.
        delay = device.period * index / count
        poller = DevicePoller(device, links[device.bus], sink, metrics)
        if states is not None:
            states[device.name] = poller.state
        pollers.append(poller)
        task = asyncio.create_task(poller.run(stop, delay), name=f"modbus:{device.name}")
        task.add_done_callback(_report_crash)
        tasks.append(task)
    try:
        await stop.wait()
        # Stop now: a poll waiting on a slow device is abandoned (it has no
        # readings yet); a delivery in progress is let finish.
        for poller, task in zip(pollers, tasks):
            if poller.polling:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # crashes were reported as they happened
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for link in links.values():
            link.close()


class DevicePoller:
    def __init__(self, device: DeviceSpec, link: Link, sink: ReadingSink, metrics: PollerMetrics) -> None:
        self.device = device
        self.link = link
        self.sink = sink
        self.metrics = metrics
        self.blocks: list[ReadBlock] = plan_reads(device.registers, device.max_registers, device.merge_gap)
        self.polling = False  # True while talking to the instrument (safe to cancel)
        self.state = DeviceState()

    async def run(self, stop: asyncio.Event, delay: float) -> None:
        loop = asyncio.get_running_loop()
        if await _wait(stop, delay):
            return
        due = loop.time()
        while not stop.is_set():
            self.polling = True
            readings = await self.poll_once()
            self.polling = False
            if not await self._deliver(readings, stop):
                return
            due += self.device.period
            now = loop.time()
            if due < now:
                # Overran: skip the missed slots instead of bursting to catch up.
                self.metrics.overrun(self.device.name)
                due += math.ceil((now - due) / self.device.period) * self.device.period
            if await _wait(stop, due - now):
                return

    async def poll_once(self) -> list[Reading]:
        """One poll of every block; never raises for an instrument's fault."""
        device = self.device
        started = time.perf_counter()
        readings: list[Reading] = []
        give_up: str | None = None
        failed: list[str] = []  # reasons of the blocks that failed or were not tried
        for block in self.blocks:
            if give_up is not None:
                failed.append(give_up)
                readings.extend(_bad(block, give_up, time.time()))
                continue
            try:
                words = await self._read_with_retries(block)
            except ReadFailed as exc:
                self.metrics.failure(device.name, exc.reason)
                failed.append(exc.reason)
                readings.extend(_bad(block, exc.reason, time.time()))
                if exc.reason in _GIVE_UP:
                    give_up = exc.reason
                continue
            except Exception as exc:  # a bug or an unforeseen library error: flag it, keep polling
                log.exception("modbus %s: unexpected error reading %s %d+%d",
                              device.name, block.table, block.address, block.count)
                self.metrics.failure(device.name, "error")
                failed.append(f"error: {type(exc).__name__}")
                readings.extend(_bad(block, f"error: {type(exc).__name__}", time.time()))
                continue
            now = time.time()
            self.metrics.registers(device.name, block.count)
            for spec in block.members:
                start = spec.address - block.address
                value = decode(spec, words[start:start + spec.count])
                if math.isfinite(value):
                    readings.append(Reading(spec.channel, now, value, spec.unit, QUALITY_GOOD, None))
                else:
                    readings.append(Reading(spec.channel, now, None, spec.unit, QUALITY_BAD, "not-finite"))
        self.metrics.polled(device.name, time.perf_counter() - started)
        self._note_poll(failed)
        return readings

    def _note_poll(self, failed: list[str]) -> None:
        state, now = self.state, time.time()
        state.polls += 1
        state.last_poll = now
        state.failing_blocks = len(failed)
        if failed:
            state.consecutive_failures += 1
            state.last_error, state.last_error_at = failed[0], now
        else:
            state.consecutive_failures = 0
            state.last_ok = now

    async def _read_with_retries(self, block: ReadBlock) -> list[int]:
        device = self.device
        attempt = 0
        while True:
            try:
                return await self.link.read(device.unit, block.table, block.address, block.count, device.timeout)
            except ReadFailed as exc:
                if exc.reason not in RETRYABLE or attempt >= device.retries:
                    raise
                self.metrics.retry(device.name)
                # Back off outside the bus lock, so the bus serves others meanwhile.
                await asyncio.sleep(device.backoff * (2 ** attempt))
                attempt += 1

    async def _deliver(self, readings: Sequence[Reading], stop: asyncio.Event) -> bool:
        """Submit until accepted.  False when stopped with readings still held."""
        wait = SUBMIT_BACKOFF_MIN
        last_try = False
        while True:
            try:
                await self.sink.submit(self.device.name, readings)
                self.state.held = ""
                return True
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = "outbox-full" if type(exc).__name__ == "OutboxFull" else type(exc).__name__
                self.metrics.held(self.device.name, reason)
                self.state.held = reason
                if reason != "outbox-full":
                    log.error("modbus %s: submitting %d readings failed (%s); keeping them and retrying",
                              self.device.name, len(readings), exc)
                elif wait == SUBMIT_BACKOFF_MIN:
                    log.warning("modbus %s: outbox full; holding %d readings and pausing polls",
                                self.device.name, len(readings))
            if last_try:
                log.error("modbus %s: stopped with %d readings not committed (the outbox refused them)",
                          self.device.name, len(readings))
                return False
            last_try = await _wait(stop, wait)  # stopped: one more try, then give up
            wait = min(wait * 2, SUBMIT_BACKOFF_MAX)


def _report_crash(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s: poller stopped by an unexpected error: %r (its device is no longer polled)",
                  task.get_name(), task.exception())


def _bad(block: ReadBlock, reason: str, now: float) -> list[Reading]:
    return [Reading(spec.channel, now, None, spec.unit, QUALITY_BAD, reason) for spec in block.members]


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless stopped first; True when stopped."""
    if stop.is_set():
        return True
    if seconds <= 0:
        return False
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True
