"""Work a person is waiting on goes before reading completion streams.

asyncio serves its ready callbacks in turn. While hundreds of answers stream, every turn of the
event loop reads a chunk of each, and a question asked meanwhile waits a whole turn for each
step it takes: the Socket Mode frame, each store statement, its acknowledgement, the first
sign of work. Measured, 200 answers streaming delayed such an acknowledgement by a second.
So stream readers step aside while urgent work is under way, within a budget (see `Urgency`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from types import TracebackType

MAX_WAIT = 0.25
SHARE = 0.5


class Urgency:
    """Counts the urgent work under way (`with urgency:` around it, or `begin` and `end`);
    readers `await urgency.turn()` before each piece of work that can wait.

    How long readers may be held is a budget: `max_wait` at most, spent while urgent work is
    under way and earned back at `share` of the time none is. A question now and then is
    served first every time; urgent work that takes long, or a steady flow of it, slows the
    answers and never stalls them.
    """

    def __init__(
        self,
        max_wait: float = MAX_WAIT,
        share: float = SHARE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_wait = max_wait
        self.share = share
        self.clock = clock
        self.under_way = 0
        self._budget = max_wait  # how long readers may be held, as of `_at`
        self._at = clock()
        self._until = 0.0  # readers are held until then at most, while work is under way
        self._none = asyncio.Event()
        self._none.set()

    def begin(self) -> None:
        if not self.under_way:
            now = self.clock()
            earned = (now - self._at) * self.share
            self._budget = min(self.max_wait, self._budget + earned)
            self._until, self._at = now + self._budget, now
            self._none.clear()
        self.under_way += 1

    def end(self) -> None:
        self.under_way -= 1
        if not self.under_way:
            now = self.clock()
            self._budget, self._at = max(0.0, self._until - now), now
            self._none.set()

    def __enter__(self) -> Urgency:
        self.begin()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.end()

    async def turn(self) -> None:
        """At once when no urgent work is under way, or the budget is spent; else once none
        is, or it is spent."""
        while self.under_way:  # again when new urgent work began as the last ended
            left = self._until - self.clock()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._none.wait()
