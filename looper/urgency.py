"""Work a person is waiting on goes before reading completion streams.

asyncio serves its ready callbacks in turn. While hundreds of answers stream, every turn of the
event loop reads a chunk of each, and a question asked meanwhile waits a whole turn for each
step it takes: the Socket Mode frame, each store statement, its acknowledgement, the first
sign of work. Measured, 200 answers streaming delayed such an acknowledgement by a second.
So stream readers step aside while urgent work is under way: for `MAX_WAIT` of it at most, so
that urgent work that takes long (or a steady flow of it) slows the answers, never stalls them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import TracebackType

MAX_WAIT = 0.25


class Urgency:
    """Counts the urgent work under way (`with urgency:` around it, or `begin` and `end`);
    readers `await urgency.turn()` before each piece of work that can wait."""

    def __init__(self, max_wait: float = MAX_WAIT) -> None:
        self.max_wait = max_wait
        self.under_way = 0
        self._since = 0.0  # when urgent work was last taken up with none under way
        self._none = asyncio.Event()
        self._none.set()

    def begin(self) -> None:
        if not self.under_way:
            self._since = time.monotonic()
            self._none.clear()
        self.under_way += 1

    def end(self) -> None:
        self.under_way -= 1
        if not self.under_way:
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
        """At once when no urgent work is under way, or it has been for `max_wait`; else
        once none is, or it has been."""
        while self.under_way:  # again when new urgent work began as the last ended
            left = self._since + self.max_wait - time.monotonic()
            if left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._none.wait()
