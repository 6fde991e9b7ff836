"""Work done for a person at most once every few seconds, however often they ask for it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from bot.background import Background


class PerKeyThrottle:
    """Runs `work(key)` at most once every `quiet` seconds for each key.

    The first request runs at once. Requests while a run is due (during the quiet time
    after the last one) make one more run when that time is over: a burst of requests costs
    two runs, and the last request is always answered by a run that starts after it.
    """

    def __init__(self, work: Callable[[str], Awaitable[None]], quiet: float) -> None:
        self.work = work
        self.quiet = quiet
        self.last_run: dict[str, float] = {}
        self.due: set[str] = set()  # keys with a run waiting to start
        self.later = Background()

    def request(self, key: str) -> None:
        if key in self.due:
            return  # the run that is waiting will start after this request: it covers it
        self.due.add(key)
        self.later.start(self._run(key))

    async def _run(self, key: str) -> None:
        wait = self.last_run.get(key, -self.quiet) + self.quiet - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)  # the quiet time is the point: nothing to wait on
        self.due.discard(key)  # requests from now on may need newer data: another run
        self.last_run[key] = time.monotonic()
        await self.work(key)
