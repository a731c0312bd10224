"""The node app: boots, validates config.json, builds the pipeline and runs
its asyncio tasks (one sampler per channel, the batch latency timer, health,
the sender and receiver, the watchdog feeder)."""

import gc
import sys
import json
import time
import asyncio

from node import bootguard, fsutil
# The pipeline's code is loaded before config.json is validated: the
# validation code (node/config.py, unloaded after boot) then sits on top of
# it and leaves one free region behind, not holes between the pipeline's
# pieces (a fragmented heap cannot find room for the link's 1 KB buffer).
from node.clock import Clock
from node.framer import Framer
from node.sender import Sender
from node.seqno import SequenceCounter
from node.store import FrameStore
from node import links
from drivers import health
from protocol import messages, senml

VERSION = "0.1.0"
_RESTART = "restart"
_CRASH = "crash"
# What the running tasks read from config.json; the rest of the parsed,
# completed config (several KB of dicts: every section with its defaults)
# is let go once the pipeline is built.
_RUNNING = ("node_id", "cfg_ver", "health", "watchdog_ms", "stable_after_s")


def next_slot(slot, period, now):
    """The next sampling slot after ``slot`` (ticks_ms) on the channel's
    period grid that is not already past at ``now``: an overrun skips the
    missed slots rather than sampling again at once (a burst, and two
    readings of one channel in the same millisecond)."""
    slot = time.ticks_add(slot, period)
    late = time.ticks_diff(now, slot)
    if late > 0:
        slot = time.ticks_add(slot, (late // period + 1) * period)
    return slot


def _idle(message):
    """Stay reachable: on a board return to the REPL; on the unix port wait
    (a supervisor restarting us would only crash-loop)."""
    print(message)
    if sys.platform == "linux":
        while True:
            time.sleep(3600)


class App:
    def __init__(self, config, board, reset_cause="power-on"):
        self.config = {key: config[key] for key in _RUNNING if key in config}
        self.board = board
        self.reset_cause = reset_cause
        self.version = VERSION
        self.clock = Clock()
        st = config["store"]
        self.store = FrameStore("store", st["max_kib"] * 1024, st["segment_kib"] * 1024, st["full_policy"])
        self.seqs = SequenceCounter("seq", floor=self.store.highest_seq + 1)
        key, kid = config["_key"], config["node_id"].encode()
        batch = config["batch"]
        self.framer = Framer(key, kid, self.seqs, self.store, self.clock, batch["max_records"], batch["max_latency_ms"])
        tr = config["transport"]
        self.link = self._open_link(tr)
        self.sender = Sender(self.link, self.store, self.clock, key, kid, tr["window"], tr["ack_timeout_ms"],
                             tr["backoff_max_ms"])
        self.sender.on_config = self.on_config
        self.channels = []
        for ch in config["channels"]:
            driver = __import__("drivers." + ch["driver"], None, None, ("Driver",))
            self.channels.append(({"name": ch["name"], "period_ms": ch["period_ms"]}, driver.Driver(board, ch)))
        # Everything the tasks need is made here, before they start: code
        # loaded or buffers made later would have to fit in a fragmented heap.
        self.status = senml.PackBuilder(10)  # the records health.add_records can give
        timeout = config["watchdog_ms"]
        self.wdt = board.watchdog(timeout) if timeout else None
        self.outcome = None  # set (to _RESTART, _CRASH or "stop") to end main()
        self.failure = None

    def _open_link(self, tr):
        if tr["type"] == "udp":
            return links.UdpLink(tr["gateway"], tr["port"])
        if self.board.NAME == "sim":
            stream = links.open_serial_device(tr["device"], tr["baudrate"])
        else:
            stream = self.board.uart({"bus": "uart%d" % tr["uart"]}, tr["baudrate"])
        de = self.board.pin(tr["de_pin"]) if tr.get("de_pin") is not None else None
        return links.SerialLink(stream, de)

    # ------------------------------------------------------------ tasks

    async def sample(self, ch, driver):
        period = ch["period_ms"]
        try:
            driver.setup()
        except OSError as exc:
            print("channel %s: setup failed (%s); its readings carry the fault" % (ch["name"], exc))
        emit = self.framer.emit
        slot = time.ticks_ms()
        while True:
            try:
                await driver.read(emit)
            except Exception as exc:  # a driver bug must not stop the node
                print("channel %s: read failed: %r" % (ch["name"], exc))
                emit(ch["name"], None, None, "driver-error")
            now = time.ticks_ms()
            slot = next_slot(slot, period, now)
            await asyncio.sleep_ms(time.ticks_diff(slot, now))

    async def latency(self):
        while True:
            due = self.framer.due(self.clock.mono_ms())
            if due is not None and due <= 0:
                try:
                    self.framer.seal()
                except MemoryError:  # the readings stay in the pack: try again soon
                    gc.collect()
                    print("framer: no heap to seal a frame, retrying")
                due = None
            await asyncio.sleep_ms(min(due, 500) if due is not None else 100)

    async def health(self):
        period = self.config["health"]["period_s"] * 1000
        while True:
            try:
                if not len(self.status):  # else: a status a failed seal kept, sent now
                    health.add_records(self.status, self, self.clock.mono_ms())
                self.framer.seal_pack(self.status, messages.CT_STATUS)
            except MemoryError:
                gc.collect()
                print("health: no heap to seal a status frame, retrying next period")
            await asyncio.sleep_ms(period)

    async def guard(self):
        timeout = self.config["watchdog_ms"]
        wdt = self.wdt
        stable_at = self.config["stable_after_s"] * 1000
        stable = False
        while True:
            if wdt:
                wdt.feed()
            if not stable and self.clock.mono_ms() >= stable_at:
                bootguard.mark_stable()
                stable = True
            await asyncio.sleep_ms(max(50, timeout // 4) if timeout else 1000)

    def on_config(self, version, settings):
        """A MAC-verified config update: saved now, validated and applied at
        the next boot (the validation code is too big to load while the node
        runs in a small heap); the app restarts to apply it."""
        current = self.config.get("cfg_ver", 0)
        if version <= current:
            print("config update: version %d is not newer than %d" % (version, current))
            return
        # node/config.py (UPDATE_PATH) applies and removes it at boot
        fsutil.write_replace("config.update", json.dumps({"version": version, "settings": settings}).encode())
        print("config: version %d saved, restarting to apply it" % version)
        self.outcome = _RESTART

    def _task_died(self, loop, context):
        """asyncio's exception handler: a task ended with an exception (a
        bug, a MemoryError).  End the app so the node resets instead of
        running on without that task.  (One handler instead of a wrapper
        coroutine per task: ~150 B of heap less per task.)"""
        self.failure = context["exception"]
        self.outcome = _CRASH

    async def main(self):
        asyncio.get_event_loop().set_exception_handler(self._task_died)
        coros = [self.sender.run(), self.sender.receive(), self.latency(), self.health(), self.guard()]
        for ch, driver in self.channels:
            coros.append(self.sample(ch, driver))
        tasks = [asyncio.create_task(c) for c in coros]
        del coros
        gc.collect()
        print("node %s up: fw %s, %d channels, store depth %d, next seq %d, %s" % (
            self.config["node_id"], VERSION, len(self.channels), self.store.depth, self.seqs.peek(),
            "clock unsynced"))
        while self.outcome is None:
            await asyncio.sleep_ms(100)
        for task in tasks:
            task.cancel()
        if self.outcome == _CRASH:
            raise self.failure
        self.framer.seal()
        self.store.close()
        return self.outcome


def _preload():
    """Import the configured drivers (the validation would import them too)
    before the validation code, for the reason given at the imports above.
    Problems are left to the validation to report."""
    try:
        for ch in json.loads(fsutil.read_replaced("config.json"))["channels"]:
            __import__("drivers." + ch["driver"])
    except Exception:  # noqa: BLE001 - any problem: validation reports it
        pass


def run():
    """Entry point of main.py.  Never raises for a user mistake."""
    _preload()
    gc.collect()
    from node import config as configmod

    try:
        config = configmod.load()
    except configmod.ConfigError as exc:
        for line in exc.problems:
            print(line)
        _idle("node idle: fix config.json, then reset (REPL / mpremote stay available)")
        return
    # validation code is the biggest module: free it (and the drivers'
    # schemas) while the node runs
    configmod.unload()
    del configmod
    gc.collect()
    from boards import load as load_board

    board = load_board(config)
    cause = board.reset_cause()
    boots = bootguard.begin()
    if boots > config["safe_mode_after"]:
        _idle("safe mode: %d boots in a row failed (last reset: %s); fix the cause, then run "
              "`import node.bootguard as b; b.clear()` and reset" % (boots - 1, cause))
        return
    try:
        node = App(config, board, cause)
        del config  # the App keeps what its tasks read
        outcome = asyncio.run(node.main())
    except KeyboardInterrupt:
        print("node stopped")
        return
    except Exception as exc:
        sys.print_exception(exc)
        if hasattr(board, "note_reset"):
            board.note_reset("crash")
        print("node crashed (%r); resetting" % (exc,))
        board.reset()
        return
    if outcome != _RESTART:
        return
    # a config update: reset, so the next boot applies it with a clean heap
    if hasattr(board, "note_reset"):
        board.note_reset("config-update")
    bootguard.mark_stable()
    board.reset()
