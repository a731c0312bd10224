"""The one thread that writes the outbox: frame commits, processing and
maintenance run on it in submission order, so SQLite sees one writer and the
event loop never waits on an fsync."""

from __future__ import annotations

import asyncio
import sys
from concurrent.futures import ThreadPoolExecutor

# The writer thread and the event loop pass the GIL back and forth for every
# commit; CPython's default 5 ms switch interval made each hand-over wait up
# to 5 ms, which showed up directly in latency.
SWITCH_INTERVAL = 0.0005  # seconds


class Writer:
    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-writer")
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))

    async def run(self, function, *args):
        """Run ``function(*args)`` on the writer thread; raises RuntimeError
        once the writer is shut down."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)
