"""The node app: boots, validates config.json, builds the pipeline and runs
its asyncio tasks (one sampler per channel, the batch latency timer, health,
the sender and receiver, the watchdog feeder)."""

import gc
import sys
import time
import asyncio
import binascii

from node import bootguard
from node.clock import Clock
from node.framer import Framer
from node.sender import Sender
from node.seqno import SequenceCounter
from node.store import FrameStore

VERSION = "0.1.0"
_RESTART = "restart"


def _idle(message):
    """Stay reachable: on a board return to the REPL; on the unix port wait
    (a supervisor restarting us would only crash-loop)."""
    print(message)
    if sys.platform == "linux":
        while True:
            time.sleep(3600)


class App:
    def __init__(self, config, board, reset_cause="power-on"):
        self.config = config
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
        self.framer.on_frame = self.sender.wake.set
        self.channels = []
        for ch in config["channels"]:
            driver = __import__("drivers." + ch["driver"], None, None, ("Driver",))
            self.channels.append((ch, driver.Driver(board, ch)))
        self.stop = asyncio.Event()
        self.outcome = None

    def _open_link(self, tr):
        from node import links

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
        next_at = time.ticks_ms()
        while True:
            try:
                await driver.read(emit)
            except Exception as exc:  # a driver bug must not stop the node
                print("channel %s: read failed: %r" % (ch["name"], exc))
                emit(ch["name"], None, None, "driver-error")
            next_at = time.ticks_add(next_at, period)
            wait = time.ticks_diff(next_at, time.ticks_ms())
            if wait < 0:
                next_at = time.ticks_ms()  # overrun: do not try to catch up
                wait = 0
            await asyncio.sleep_ms(wait)

    async def latency(self):
        while True:
            due = self.framer.due(self.clock.mono_ms())
            if due is not None and due <= 0:
                self.framer.seal()
                due = None
            await asyncio.sleep_ms(min(due, 500) if due is not None else 100)

    async def health(self):
        from drivers import health
        from protocol import messages, senml

        builder = senml.PackBuilder(12)
        period = self.config["health"]["period_s"] * 1000
        while True:
            health.add_records(builder, self, self.clock.mono_ms())
            self.framer.seal_pack(builder, messages.CT_STATUS)
            await asyncio.sleep_ms(period)

    async def guard(self):
        timeout = self.config["watchdog_ms"]
        wdt = self.board.watchdog(timeout) if timeout else None
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
        from node import config as configmod  # loaded only when needed: it is big

        try:
            new = configmod.apply_update(self.config, version, settings)
        except configmod.ConfigError as exc:
            for line in exc.problems:
                print(line)
            return
        configmod.save(new)
        print("config: version %d saved, restarting to apply it" % version)
        self.outcome = _RESTART
        self.stop.set()

    async def main(self):
        tasks = [asyncio.create_task(self.sender.run()), asyncio.create_task(self.sender.receive()),
                 asyncio.create_task(self.latency()), asyncio.create_task(self.health()),
                 asyncio.create_task(self.guard())]
        for ch, driver in self.channels:
            tasks.append(asyncio.create_task(self.sample(ch, driver)))
        gc.collect()
        print("node %s up: fw %s, %d channels, store depth %d, next seq %d, %s" % (
            self.config["node_id"], VERSION, len(self.channels), self.store.depth, self.seqs.peek(),
            "clock unsynced"))
        await self.stop.wait()
        for task in tasks:
            task.cancel()
        self.framer.seal()
        self.store.close()
        return self.outcome


def run():
    """Entry point of main.py.  Never raises for a user mistake."""
    while True:
        from node import config as configmod

        try:
            config = configmod.load()
        except configmod.ConfigError as exc:
            for line in exc.problems:
                print(line)
            _idle("node idle: fix config.json, then reset (REPL / mpremote stay available)")
            return
        # validation code is the biggest module: free it while the node runs
        del configmod
        del sys.modules["node.config"]
        import node

        if hasattr(node, "config"):
            del node.config
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
            app = App(config, board, cause)
            outcome = asyncio.run(app.main())
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
        if hasattr(board, "note_reset"):
            board.note_reset("config-update")
        bootguard.mark_stable()
        asyncio.new_event_loop()
