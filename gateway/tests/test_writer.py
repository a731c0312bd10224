"""The outbox writer thread: jobs in submission order, off the event loop,
errors back to the caller, every queued job finished at shutdown."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from smemet.gateway.writer import Writer


def test_jobs_run_in_order_on_one_thread_that_is_not_the_loops():
    writer = Writer()
    ran: list[tuple[int, str]] = []

    def job(i):
        ran.append((i, threading.current_thread().name))
        return i * 2

    async def main():
        return await asyncio.gather(*(writer.run(job, i) for i in range(50)))

    try:
        assert asyncio.run(main()) == [i * 2 for i in range(50)]
    finally:
        writer.shutdown()
    assert [i for i, _ in ran] == list(range(50))
    assert {name for _, name in ran} == {"outbox-writer"}


def test_an_error_reaches_the_caller_and_the_writer_goes_on():
    writer = Writer()

    def fails():
        raise ValueError("disk says no")

    def stops():
        raise StopIteration  # an asyncio future cannot carry this one

    async def main():
        with pytest.raises(ValueError, match="disk says no"):
            await writer.run(fails)
        with pytest.raises(RuntimeError, match="StopIteration"):
            await writer.run(stops)
        return await writer.run(lambda: "still here")

    try:
        assert asyncio.run(main()) == "still here"
    finally:
        writer.shutdown()


def test_shutdown_finishes_queued_jobs_and_refuses_new_ones():
    writer = Writer()
    done: list[int] = []

    def slow(i):
        time.sleep(0.01)
        done.append(i)

    async def main():
        tasks = [asyncio.ensure_future(writer.run(slow, i)) for i in range(5)]
        await asyncio.sleep(0)  # the jobs are queued
        tasks[-1].cancel()  # a cancelled caller: its job was queued, so it still runs
        await asyncio.sleep(0)
        return tasks

    asyncio.run(main())
    writer.shutdown()
    assert done == [0, 1, 2, 3, 4]

    async def after():
        with pytest.raises(RuntimeError, match="shut down"):
            await writer.run(slow, 9)

    asyncio.run(after())
    assert done == [0, 1, 2, 3, 4]
