"""Logins: checking a password without blocking the event loop, sessions
that expire, and a brake on guessing.

* A password check (scrypt, tens of ms) runs in a thread, one at a time, so
  a flood of logins costs the data path at most one core's slice.
* An unknown user costs the same check as a wrong password (no user list
  by timing).
* After ``FREE_FAILURES`` wrong logins from one address, each further try
  waits twice as long as the last (up to ``MAX_DELAY``); a good login clears it.
* A session is a random token in an HttpOnly, SameSite=Strict cookie; it
  ends ``ttl`` seconds after the login, at logout, or when the gateway stops
  (sessions live in memory only).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

from .passwords import KEY_BYTES, SALT_BYTES, N, P, R, PasswordHash

COOKIE = "smemet_console"
MAX_SESSIONS = 256  # the oldest is dropped beyond this
FREE_FAILURES = 5
MAX_DELAY = 300.0
_MAX_ADDRESSES = 10_000


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    created: float  # Unix s
    expires: float  # Unix s


class Sessions:
    def __init__(self, ttl: float, clock=time.time) -> None:
        self.ttl = ttl
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def create(self, user: str) -> tuple[str, Session]:
        now = self._clock()
        token = secrets.token_urlsafe(32)
        session = Session(user, now, now + self.ttl)
        self._sessions[token] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return token, session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        session = self._sessions.get(token)
        if session is None:
            return None
        if self._clock() >= session.expires:
            del self._sessions[token]
            return None
        return session

    def end(self, token: str | None) -> None:
        if token:
            self._sessions.pop(token, None)

    def __len__(self) -> int:
        return len(self._sessions)


class Throttle:
    """Per client address: how long it must wait before its next try."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._failures: dict[str, tuple[int, float]] = {}  # address -> (failures, next try allowed at)

    def wait(self, address: str) -> float:
        """Seconds ``address`` must still wait (0: it may try now)."""
        entry = self._failures.get(address)
        return 0.0 if entry is None else max(0.0, entry[1] - self._clock())

    def failed(self, address: str) -> None:
        count = self._failures.get(address, (0, 0.0))[0] + 1
        delay = 0.0 if count <= FREE_FAILURES else min(MAX_DELAY, 2.0 ** (count - FREE_FAILURES))
        if len(self._failures) >= _MAX_ADDRESSES and address not in self._failures:
            self._failures.pop(next(iter(self._failures)))
        self._failures[address] = (count, self._clock() + delay)

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)


class Checker:
    """Checks user name and password against the configured hashes."""

    def __init__(self, users: dict[str, PasswordHash]) -> None:
        self._users = users
        # for unknown users: the same work as a real check, and never a match
        self._dummy = PasswordHash(N, R, P, secrets.token_bytes(SALT_BYTES), secrets.token_bytes(KEY_BYTES))
        self._one_at_a_time = asyncio.Semaphore(1)

    async def check(self, user: str, password: str) -> bool:
        stored = self._users.get(user)
        async with self._one_at_a_time:
            matched = await asyncio.to_thread((stored or self._dummy).matches, password)
        return stored is not None and matched
