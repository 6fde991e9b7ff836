"""Batches: many callers' small requests, served together.

Each caller waits for its own item's result. Items that arrive while a batch is being served
go together in the next one, so a burst (200 `/tutor ask` at once) costs a few transactions
or queries instead of one each, and none of them waits long. Writes so batched are a group
commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
# Serves a batch; for each item, its result or the exception that item alone raises.
Serve = Callable[[list[Item]], Awaitable[list[Result | Exception]]]
IN_LIST = 500  # values an IN (…) list, well under every database's limit on parameters


def in_batches(values: Sequence[str]) -> Iterator[list[str]]:
    """`values` in slices short enough for one IN (…) list."""
    for start in range(0, len(values), IN_LIST):
        yield list(values[start : start + IN_LIST])


def marks(values: Sequence[Any]) -> str:
    """The placeholders of an IN (…) list."""
    return ", ".join("?" * len(values))


class Batcher(Generic[Item, Result]):
    """Collects items and serves them with `serve`, one batch at a time."""

    def __init__(self, serve: Serve[Item, Result]) -> None:
        self.serve = serve
        self.waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self.server: asyncio.Task[None] | None = None

    async def add(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self.waiting.append((item, future))
        if self.server is None or self.server.done():
            self.server = asyncio.create_task(self._serve_waiting())
        return await asyncio.shield(future)  # a cancelled caller's item is still served

    async def _serve_waiting(self) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting, []
            try:
                results = await self.serve([item for item, _ in batch])
            except Exception as exc:  # the whole batch failed (the database is away, say)
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
