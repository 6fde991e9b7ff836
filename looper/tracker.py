"""ThreadTracker: how front ends find threads."""

from __future__ import annotations

from datetime import datetime

from looper.models import ChatCompletionThread
from looper.store import NotFound, Store


class ThreadTracker:
    """Lists and finds threads: by id, by a front end's key for their place, newest first."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def get(self, thread_id: str) -> ChatCompletionThread:
        return await self.store.get_thread(thread_id)

    async def by_key(self, external_key: str) -> ChatCompletionThread | None:
        return await self.store.find_thread(external_key)

    async def newest(self, limit: int = 100) -> list[ChatCompletionThread]:
        return await self.store.list_threads(limit)

    async def active_since(self, moment: datetime) -> list[ChatCompletionThread]:
        """Threads with activity since `moment` (UTC), most recent first."""
        return await self.store.threads_active_since(moment)

    async def latest(self) -> ChatCompletionThread:
        """The most recently added thread; NotFound when there is none."""
        threads = await self.store.list_threads(1)
        if not threads:
            raise NotFound("no thread yet: add one with `tutor thread add --assistant-id ID`")
        return threads[0]
