"""What differs between the databases tutor runs on. Everything else is in `sql.py`.

Statements are written once, with `?` placeholders; a dialect runs them on its driver and
supplies the few SQL fragments that differ (the clock, row locks, column types).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

from looper.store.errors import StoreError

Row = dict[str, Any]
T = TypeVar("T")


def opened(handle: T | None) -> T:
    """A dialect's connection (or pool), once `open` made it."""
    if handle is None:
        raise StoreError("the store is not open")
    return handle


@dataclass(frozen=True)
class ColumnTypes:
    """Column types for the schema's statements, as each database spells them."""

    integer: str
    real: str
    time: str
    json: str
    fulltext: str  # how passages are searched: "fts5" (SQLite) or "tsvector" (PostgreSQL)


class Connection(ABC):
    """One database session; statements use `?` placeholders."""

    @abstractmethod
    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement that returns no rows; how many rows it changed."""

    @abstractmethod
    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    @abstractmethod
    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else next(iter(row.values()))


class Dialect(ABC):
    """A database tutor can store in: its connections, transactions and SQL spellings."""

    types: ColumnTypes
    now: str  # SQL: seconds since the epoch on the database's clock (leases use it)
    greatest: str  # SQL function: the larger of two values
    for_update: str  # after a SELECT: lock its rows until the transaction ends
    skip_locked: str  # after a SELECT: lock its rows, skipping rows others hold
    # Statements only some databases need (elsewhere a write transaction is exclusive, and
    # other processes poll):
    announce_work: str | None = None  # tell other processes, at commit, about work (`?`)
    lock_for_import: str | None = None  # keep other writers out until the import commits
    lock_schema: str | None = None  # one process at a time creates or upgrades the schema

    @abstractmethod
    async def open(self, on_work: Callable[[], None]) -> None:
        """Connect. `on_work` is called when another process announces work."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    def connection(self) -> AbstractAsyncContextManager[Connection]:
        """A session for statements that each stand alone."""

    def reading(self) -> AbstractAsyncContextManager[Connection]:
        """A session for reads that each stand alone (and may run beside writes)."""
        return self.connection()

    @abstractmethod
    def transaction(self, snapshot: bool = False) -> AbstractAsyncContextManager[Connection]:
        """A session whose statements commit together; with `snapshot`, a read-only one
        that sees one consistent state of every table."""
