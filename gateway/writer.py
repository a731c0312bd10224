"""The one thread that writes the outbox: frame commits, processing and
maintenance run on it in submission order, so SQLite sees one writer and the
event loop never waits on an fsync."""

from __future__ import annotations

import asyncio
import queue
import sys
import threading

# The writer thread and the event loop pass the GIL back and forth for every
# commit; CPython's default 5 ms switch interval made each hand-over wait up
# to 5 ms, which showed up directly in latency.
SWITCH_INTERVAL = 0.0005  # seconds

_STOP = object()


class Writer:
    """Jobs in, results out, in order.  A queue and ``call_soon_threadsafe``
    rather than ``run_in_executor``: the executor's submit, its concurrent
    future and the chained asyncio future cost about twice the CPU per round
    trip (~120 µs against ~60 µs here), and there are two round trips per
    commit group and processing batch."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        # daemon: a gateway that dies without shutdown() must still exit;
        # shutdown() joins, so an orderly stop finishes every queued job
        self._thread = threading.Thread(target=self._work, name="outbox-writer", daemon=True)
        self._thread.start()
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))

    async def run(self, function, *args):
        """Run ``function(*args)`` on the writer thread; raises RuntimeError
        once the writer is shut down.  A job runs even if its caller is
        cancelled meanwhile (a commit that was started is finished)."""
        if self._closed:
            raise RuntimeError("the outbox writer is shut down")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put((loop, future, function, args))
        return await future

    def shutdown(self) -> None:
        """Finish the queued jobs, then stop the thread."""
        if not self._closed:
            self._closed = True
            self._jobs.put(_STOP)
        self._thread.join()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            loop, future, function, args = job
            try:
                outcome = (function(*args), None)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, as an executor would
                outcome = (None, exc)
            try:
                loop.call_soon_threadsafe(_settle, future, *outcome)
            except RuntimeError:  # the loop is closed: nobody waits for this result any more
                pass


def _settle(future: asyncio.Future, result, exc: BaseException | None) -> None:
    if future.cancelled():
        return
    if exc is None:
        future.set_result(result)
    elif isinstance(exc, StopIteration):  # an asyncio future refuses StopIteration
        future.set_exception(RuntimeError(f"writer job raised {exc!r}"))
    else:
        future.set_exception(exc)
