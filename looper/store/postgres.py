"""PostgreSQL, for several replicas sharing one database.

Replicas coordinate through the database only: pending threads are claimed with
`FOR UPDATE SKIP LOCKED` under leases that expire on the database's clock, and a change that
makes work sends `NOTIFY tutor_work`, which wakes every replica at once (polling stays as
the safety net).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from looper.store import masked_url
from looper.store.dialect import ColumnTypes, Connection, Dialect, Row, opened
from looper.store.errors import StoreError, StoreUnavailable

log = logging.getLogger(__name__)
CHANNEL = "tutor_work"
SCHEMA_LOCK = 7_315_002  # pg_advisory_xact_lock key: one replica migrates at a time
RELISTEN_DELAYS = (0.5, 1, 2, 5, 10, 30)  # then every 30 s until it listens again
# Failing to get a connection means the database is out of reach, whatever the reason (down,
# not accepting connections, dropped); a statement fails that way only with these, or when
# it finds its connection closed.
CANNOT_CONNECT = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)
LOST_CONNECTION = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # e.g. terminated by an administrator
    asyncpg.InternalClientError,  # a connection whose server went away while it was idle
)


@functools.lru_cache(maxsize=512)
def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1, $2, …`. Every `?` is one: the store's
    statements hold no `?` in a literal and use no jsonb `?` operator."""
    count = itertools.count(1)
    return re.sub(r"\?", lambda _: f"${next(count)}", sql)


class PostgresConnection(Connection):
    def __init__(self, db: asyncpg.Connection) -> None:
        self.db = db

    async def execute(self, sql: str, *args: Any) -> int:
        status: str = await self.db.execute(numbered(sql), *args)
        changed = status.rsplit(" ", 1)[-1]  # "UPDATE 3", "INSERT 0 1"
        return int(changed) if changed.isdigit() else 0

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return [dict(row) for row in await self.db.fetch(numbered(sql), *args)]

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self.db.executemany(numbered(sql), rows)


class Postgres(Dialect):
    types = ColumnTypes(
        integer="bigint", real="float8", time="timestamptz", json="jsonb", fulltext="tsvector"
    )
    now = "extract(epoch from clock_timestamp())::float8"
    greatest = "greatest"
    for_update = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    announce_work = f"SELECT pg_notify('{CHANNEL}', ?)"
    lock_for_import = "LOCK TABLE assistants, threads IN EXCLUSIVE MODE"
    lock_schema = f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})"

    def __init__(self, url: str, pool_size: int = 10) -> None:
        self.url = url
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._on_work: Callable[[], None] = lambda: None

    @property
    def pool(self) -> asyncpg.Pool:
        return opened(self._pool)

    async def open(self, on_work: Callable[[], None]) -> None:
        self._on_work = on_work
        try:
            # No floor of open connections: asyncpg would log a traceback each time it failed
            # to restore it while the database is away (the looper reports that once).
            self._pool = await asyncpg.create_pool(self.url, min_size=0, max_size=self.pool_size)
            await self._listen()
        except (OSError, asyncpg.PostgresError, ValueError) as exc:
            await self.close()
            raise StoreError(f"cannot open the database {masked_url(self.url)}: {exc}") from exc

    async def _listen(self) -> None:
        """A connection of its own that turns NOTIFY tutor_work into a wake-up."""
        self._listener = await asyncpg.connect(self.url)
        await self._listener.add_listener(CHANNEL, lambda *_: self._on_work())
        self._listener.add_termination_listener(self._on_listener_lost)

    def _on_listener_lost(self, *_: Any) -> None:
        if self._pool is not None:  # not closing: polling covers until we listen again
            log.warning("lost the LISTEN connection; reconnecting")
            asyncio.get_running_loop().create_task(self._relisten())

    async def _relisten(self) -> None:
        delays = itertools.chain(RELISTEN_DELAYS, itertools.repeat(RELISTEN_DELAYS[-1]))
        while self._pool is not None:
            try:
                await self._listen()
                self._on_work()  # something may have happened while deaf
                return
            except CANNOT_CONNECT:
                await asyncio.sleep(next(delays))

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.close()
        if pool is not None:
            await pool.close()

    @asynccontextmanager
    async def _acquired(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; StoreUnavailable when the database is out of reach."""
        pool = self.pool
        try:
            db = await pool.acquire()
        except CANNOT_CONNECT as exc:
            raise self._unavailable(exc) from exc
        try:
            yield db
        except LOST_CONNECTION as exc:
            raise self._unavailable(exc) from exc
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if db.is_closed():
                raise self._unavailable(exc) from exc
            raise
        finally:
            await pool.release(db)

    def _unavailable(self, error: Exception) -> StoreUnavailable:
        reason = " ".join(str(error).split()) or type(error).__name__
        return StoreUnavailable(f"cannot reach the database {masked_url(self.url)}: {reason}")

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        async with self._acquired() as db:
            yield PostgresConnection(db)

    @asynccontextmanager
    async def transaction(self, snapshot: bool = False) -> AsyncIterator[Connection]:
        isolation = "repeatable_read" if snapshot else None
        async with self._acquired() as db, db.transaction(isolation=isolation):
            yield PostgresConnection(db)
