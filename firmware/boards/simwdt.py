"""machine.WDT for the sim board (unix port): a thread that ends the process
(the bench's supervisor restarts it) when ``feed`` stops for ``timeout_ms``."""

import os
import time
import _thread


class SimWatchdog:
    def __init__(self, timeout_ms, reset_file):
        self.timeout_ms = timeout_ms
        self._reset_file = reset_file
        self._fed = time.ticks_ms()
        self._running = True
        _thread.start_new_thread(self._watch, ())

    def feed(self):
        self._fed = time.ticks_ms()

    def stop(self):
        self._running = False

    def _watch(self):
        while self._running:
            time.sleep_ms(200)
            if self._running and time.ticks_diff(time.ticks_ms(), self._fed) > self.timeout_ms:
                print("watchdog: node hung for %d ms, resetting" % self.timeout_ms)
                try:
                    with open(self._reset_file, "w") as f:
                        f.write("watchdog")
                except OSError:
                    pass
                os.system("kill -KILL $PPID")  # the shell's parent is this VM
