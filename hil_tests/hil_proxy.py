"""A UDP fault proxy between nodes and the gateway.

Nodes send to the proxy's port; the proxy forwards each datagram to the
gateway from a socket of its own per node, and the gateway's replies back to
that node.  On the way it injects faults, decided by one seeded random
generator: loss, duplication, reordering (a datagram is held back and
overtaken by the next one), delay, and partition (everything dropped).
It counts what it did, by direction ("up": node to gateway, "down":
gateway to node).  ``tap`` sees every datagram a node sent *before* any
fault: that is the bench's record of the frames the nodes produced.

The proxy runs its own asyncio loop in a thread, so synchronous and
asynchronous tests use it alike.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Callable

HOST = "127.0.0.1"
_HOLD_MAX_S = 0.3  # a held-back datagram goes out alone after this


@dataclass
class Faults:
    loss: float = 0.0  # probability a datagram is dropped
    duplicate: float = 0.0  # probability it is sent twice
    reorder: float = 0.0  # probability it is held back behind the next one
    delay: tuple[float, float] = (0.0, 0.0)  # uniform extra latency, seconds
    partition: bool = False


class _Upstream(asyncio.DatagramProtocol):
    """The proxy's socket towards the gateway for one node."""

    def __init__(self, proxy: FaultProxy, node_addr) -> None:
        self.proxy = proxy
        self.node_addr = node_addr
        self.transport = None
        self.waiting: list[bytes] = []  # datagrams that came before the socket opened

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data, addr) -> None:
        self.proxy._pass("down", data, lambda d: self.proxy._listener.sendto(d, self.node_addr))

    def error_received(self, exc) -> None:  # gateway down: ICMP port unreachable
        self.proxy.stats["down", "gateway-unreachable"] += 1


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy

    def datagram_received(self, data, addr) -> None:
        self.proxy._from_node(data, addr)

    def error_received(self, exc) -> None:
        self.proxy.stats["up", "node-unreachable"] += 1


class FaultProxy:
    def __init__(self, target: tuple[str, int], seed: int = 0, tap: Callable[[bytes, tuple], None] | None = None) -> None:
        self.target = target
        self.random = random.Random(seed)
        self.tap = tap
        self.faults = {"up": Faults(), "down": Faults()}
        self.stats: Counter = Counter()
        self._held: dict[str, tuple | None] = {"up": None, "down": None}
        self._upstreams: dict[tuple, _Upstream] = {}
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="udp fault proxy", daemon=True)
        self._listener = None
        self.port = 0

    # ------------------------------------------------------------ control

    def start(self) -> FaultProxy:
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("the UDP fault proxy did not start")
        return self

    def set(self, direction: str = "both", **faults) -> None:
        """Change faults, e.g. ``set(loss=0.2, duplicate=0.1)``; direction
        "up", "down" or "both"."""
        for d in ("up", "down") if direction == "both" else (direction,):
            for name, value in faults.items():
                if not hasattr(self.faults[d], name):
                    raise TypeError(f"unknown fault {name!r}")
                self._loop.call_soon_threadsafe(lambda d=d, name=name, value=value: setattr(self.faults[d], name, value))

    def clear(self) -> None:
        for d in ("up", "down"):
            self._loop.call_soon_threadsafe(self.faults.__setitem__, d, Faults())

    def partition(self, on: bool = True) -> None:
        self.set("both", partition=on)
        if on:
            self.stats["partitions"] += 1

    def close(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def injected(self) -> Counter:
        """Faults injected, by kind (both directions)."""
        out: Counter = Counter()
        for key, n in list(self.stats.items()):
            if isinstance(key, tuple) and key[1] in ("loss", "duplicate", "reorder", "delay", "partition-drop"):
                out[key[1]] += n
        return out

    # ------------------------------------------------------------ loop

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def open_listener():
            transport, _ = await self._loop.create_datagram_endpoint(lambda: _Listener(self), local_addr=(HOST, 0))
            self._listener = transport
            self.port = transport.get_extra_info("sockname")[1]

        self._loop.run_until_complete(open_listener())
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            for up in self._upstreams.values():
                if up.transport:
                    up.transport.close()
            if self._listener:
                self._listener.close()
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    def _from_node(self, data: bytes, addr) -> None:
        self.stats["up", "received"] += 1
        if self.tap:
            self.tap(data, addr)
        up = self._upstreams.get(addr)
        if up is None:
            up = self._upstreams[addr] = _Upstream(self, addr)
            up.waiting.append(data)
            self._loop.create_task(self._open_upstream(up))
            return
        if up.transport is None:
            up.waiting.append(data)
            return
        self._send_up(up, data)

    async def _open_upstream(self, up: _Upstream) -> None:
        await self._loop.create_datagram_endpoint(lambda: up, remote_addr=self.target)
        waiting, up.waiting = up.waiting, []
        for data in waiting:
            self._send_up(up, data)

    def _send_up(self, up: _Upstream, data: bytes) -> None:
        self._pass("up", data, lambda d: up.transport.sendto(d) if up.transport else None)

    def _pass(self, direction: str, data: bytes, send: Callable[[bytes], None]) -> None:
        f = self.faults[direction]
        stats = self.stats
        rnd = self.random.random
        if f.partition:
            stats[direction, "partition-drop"] += 1
            return
        if f.loss and rnd() < f.loss:
            stats[direction, "loss"] += 1
            return
        copies = 1
        if f.duplicate and rnd() < f.duplicate:
            copies = 2
            stats[direction, "duplicate"] += 1
        delay = 0.0
        if f.delay[1] > 0:
            delay = self.random.uniform(*f.delay)
            stats[direction, "delay"] += 1

        def out(d=data, n=copies) -> None:
            for _ in range(n):
                try:
                    send(d)
                    stats[direction, "forwarded"] += 1
                except OSError:
                    stats[direction, "send-error"] += 1

        held = self._held[direction]
        if held is None and f.reorder and rnd() < f.reorder:
            stats[direction, "reorder"] += 1
            handle = self._loop.call_later(_HOLD_MAX_S, self._release, direction)
            self._held[direction] = (out, handle)
            return
        if held is not None:  # this one overtakes the held one
            self._held[direction] = None
            held[1].cancel()
            self._later(delay, out)
            self._later(delay, held[0])
            return
        self._later(delay, out)

    def _later(self, delay: float, fn) -> None:
        if delay > 0:
            self._loop.call_later(delay, fn)
        else:
            fn()

    def _release(self, direction: str) -> None:
        held = self._held[direction]
        self._held[direction] = None
        if held is not None:
            held[0]()
