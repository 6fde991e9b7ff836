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

from looper.store.errors import StoreUnavailable

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
    """Collects items and serves them with `serve`, one batch at a time.

    When a batch of several fails as a whole (one item broke a constraint, or a deadlock
    chose it), its items are served again one at a time, so that only the item at fault
    fails; unless the database is away, which fails them all alike.
    """

    def __init__(self, serve: Serve[Item, Result]) -> None:
        self.serve = serve
        self.waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self.server: asyncio.Task[None] | None = None

    async def add(self, item: Item) -> Result:
        return await self.submit(item)

    def submit(self, item: Item) -> asyncio.Future[Result]:
        """The future of `item`'s result: several submitted items can be awaited together
        without a task each. A caller that stops waiting cancels only its future; the item
        is still served."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self.waiting.append((item, future))
        if self.server is None or self.server.done():
            self.server = asyncio.create_task(self._serve_waiting())
        return future

    async def _serve_waiting(self) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting, []
            items = [item for item, _ in batch]
            results = await self._served(items)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _served(self, items: list[Item]) -> list[Result | Exception]:
        try:
            return await self.serve(items)
        except Exception as exc:
            if len(items) == 1 or isinstance(exc, StoreUnavailable):
                return [exc] * len(items)
        alone = [await self._served([item]) for item in items]
        return [result for [result] in alone]
