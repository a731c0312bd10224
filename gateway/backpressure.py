"""Back-pressure: memory stays bounded at any offered load.

``Backlog`` counts the frames between admission and processed storage
(held for a commit, being committed, waiting for processing).  Above
``high`` it pauses every registered link -- the UDP socket is no longer read,
so datagrams wait in the kernel's buffer and, once that is full, the kernel
drops them (counted: ``smemet_gateway_udp_receive_drops``); the nodes keep
every unacknowledged frame and retransmit, so nothing is lost, only
delayed.  Below ``low`` the links resume.  Sinks never push back: the outbox
holds what they have not delivered, up to its size limit."""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger("smemet.gateway.backpressure")


class Pausable(Protocol):
    def pause(self) -> None: ...

    def resume(self) -> None: ...


class Backlog:
    def __init__(self, high: int, low: int | None = None, on_change=None) -> None:
        self.high = high
        self.low = low if low is not None else high // 2
        self.frames = 0
        self.paused = False
        self.pauses = 0  # how often the links were paused
        self._links: list[Pausable] = []
        self._on_change = on_change or (lambda paused: None)

    def register(self, link: Pausable) -> None:
        self._links.append(link)
        if self.paused:
            link.pause()

    def unregister(self, link: Pausable) -> None:
        if link in self._links:
            self._links.remove(link)

    def add(self, count: int) -> None:
        self.frames += count
        if not self.paused and self.frames >= self.high:
            self.paused = True
            self.pauses += 1
            for link in self._links:
                link.pause()
            self._on_change(True)

    def done(self, count: int) -> None:
        self.frames = max(0, self.frames - count)
        if self.paused and self.frames <= self.low:
            self.paused = False
            for link in self._links:
                link.resume()
            self._on_change(False)
