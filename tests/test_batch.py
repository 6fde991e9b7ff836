"""The batcher on its own: who gets which result, and what a caller that stops waiting leaves."""

from __future__ import annotations

import asyncio

from looper.store.batch import Batcher


class Doubler:
    """Serves a batch by doubling each item, remembering every batch it saw; 13 is an error."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()

    async def serve(self, items: list[int]) -> list[int | Exception]:
        self.batches.append(items)
        await self.release.wait()
        return [ValueError("unlucky") if item == 13 else item * 2 for item in items]


async def test_items_submitted_together_share_a_batch_and_each_gets_its_own_result() -> None:
    doubler = Doubler()
    batcher = Batcher(doubler.serve)
    first = asyncio.ensure_future(batcher.add(1))
    rest = [batcher.submit(item) for item in (2, 3, 13)]
    doubler.release.set()
    assert await first == 2
    results = await asyncio.gather(*rest, return_exceptions=True)
    assert results[:2] == [4, 6] and isinstance(results[2], ValueError)
    assert doubler.batches == [[2, 3, 13, 1]]  # one batch; 13's error is its own


async def test_a_caller_that_stops_waiting_still_has_its_item_served() -> None:
    doubler = Doubler()
    batcher = Batcher(doubler.serve)
    busy = batcher.submit(1)  # the first batch holds the server while the next one gathers
    await asyncio.sleep(0)
    gone = asyncio.ensure_future(batcher.add(5))
    kept = batcher.submit(6)
    await asyncio.sleep(0)
    gone.cancel()
    doubler.release.set()
    assert await asyncio.wait_for(kept, 5) == 12
    assert await busy == 2 and gone.cancelled()
    assert [sorted(batch) for batch in doubler.batches] == [[1], [5, 6]]
