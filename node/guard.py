"""Backing off clients that keep sending garbage.

Every bad request to the sync API already gets a 400 and changes nothing. A client
that sends many of them in a short time is then refused outright for a while (429 with
``Retry-After``), so a broken or hostile peer cannot keep a node busy decoding garbage.
Well-formed requests from the same address are not counted.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable

from aiohttp import web

__all__ = ["BadRequestGuard"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequestGuard:
    """``limit`` bad requests within ``window`` seconds bans an address for ``ban``
    seconds. The clock is injectable for tests."""

    def __init__(
        self,
        limit: int = 20,
        window: float = 60.0,
        ban: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_tracked: int = 10_000,
    ) -> None:
        self.limit, self.window, self.ban = limit, window, ban
        self.clock = clock
        self.max_tracked = max_tracked
        self._bad: dict[str, deque[float]] = {}
        self._banned: dict[str, float] = {}

    def banned_for(self, address: str) -> float:
        """Seconds left of this address's ban (0 when not banned)."""
        until = self._banned.get(address)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            del self._banned[address]
            return 0.0
        return left

    def record_bad(self, address: str) -> None:
        now = self.clock()
        if len(self._bad) >= self.max_tracked and address not in self._bad:
            self._bad.pop(next(iter(self._bad)))  # forget the oldest address tracked
        times = self._bad.setdefault(address, deque())
        times.append(now)
        while times and times[0] < now - self.window:
            times.popleft()
        if len(times) >= self.limit:
            self._banned[address] = now + self.ban
            del self._bad[address]

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/sync/"):
            return await handler(request)
        address = request.remote or "?"
        left = self.banned_for(address)
        if left:
            raise web.HTTPTooManyRequests(
                text="Error: too many bad requests; try again later\n",
                headers={"Retry-After": str(int(left) + 1)},
            )
        try:
            return await handler(request)
        except web.HTTPClientError as exc:
            if exc.status in (400, 413):
                self.record_bad(address)
            raise
