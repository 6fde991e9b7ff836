"""Group commit: many callers' small writes, written together in one transaction.

Each caller waits for its own item's result. Items that arrive while a batch is being
written go together in the next one, so a burst of writes (200 `/tutor ask` at once) costs a
few transactions instead of one each, and none of them waits long.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
# Writes a batch; for each item, its result or the exception that item alone raises.
WriteBatch = Callable[[list[Item]], Awaitable[list[Result | Exception]]]


class GroupCommit(Generic[Item, Result]):
    """Collects items and writes them with `write`, one batch at a time."""

    def __init__(self, write: WriteBatch[Item, Result]) -> None:
        self.write = write
        self.waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self.writer: asyncio.Task[None] | None = None

    async def add(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self.waiting.append((item, future))
        if self.writer is None or self.writer.done():
            self.writer = asyncio.create_task(self._write_waiting())
        return await asyncio.shield(future)  # a cancelled caller's item is still written

    async def _write_waiting(self) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting, []
            try:
                results = await self.write([item for item, _ in batch])
            except Exception as exc:  # the whole batch failed (the database is away, say)
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
