"""SQLite, the default: one file in WAL mode.

One writing connection per process, driven by aiosqlite's worker thread, so no statement
blocks the event loop. A lock hands it to one store operation at a time, so the statements
of two operations never interleave. Lone reads go through a second, read-only connection,
so that they do not wait behind writes. Writes take `BEGIN IMMEDIATE`, which lets several
processes (`tutor looper` and `tutor ask` in two terminals) share the file safely.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import aiosqlite

from looper.store.dialect import ColumnTypes, Connection, Dialect, Row, opened
from looper.store.errors import StoreError

IN_MEMORY = ("", "/", "/:memory:")


def sqlite_path(url: str) -> str:
    """`sqlite:///rel.db` is relative, `sqlite:////abs.db` absolute.

    A URL without a file would open an in-memory database, whose every write is gone when
    the command ends (`tutor assistant add` would print an id that no longer exists), so it
    is refused; nothing needs one (the tests use files).
    """
    if not url.startswith("sqlite://"):
        raise StoreError(f"not a SQLite URL: {url!r}")
    path = url.removeprefix("sqlite://")
    if path in IN_MEMORY:
        raise StoreError(
            f"TUTOR_DATABASE_URL {url!r} names no file (an in-memory store would lose "
            "everything when tutor exits): use sqlite:///tutor.db or sqlite:////absolute/path.db"
        )
    return path.removeprefix("/")


def refuse_unusable(path: str) -> None:
    """A folder, a device (/dev/null) or a pipe is no database: SQLite would fail late, and
    would create its journal beside it (as /dev/null-journal)."""
    directory = os.path.dirname(path)
    if directory and not os.path.isdir(directory):
        raise StoreError(f"cannot open the database {path!r}: no directory {directory!r}")
    if os.path.isdir(path):
        raise StoreError(f"cannot open the database {path!r}: it is a folder")
    if os.path.exists(path) and not os.path.isfile(path):
        raise StoreError(f"cannot open the database {path!r}: it is not a regular file")


def _value(value: Any) -> Any:
    # Times are ISO 8601 text, which sorts in time order (and is what earlier files hold).
    return value.isoformat() if isinstance(value, datetime) else value


class SQLiteConnection(Connection):
    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    async def execute(self, sql: str, *args: Any) -> int:
        cursor = await self.db.execute(sql, [_value(a) for a in args])
        return cursor.rowcount

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        rows = await self.db.execute_fetchall(sql, [_value(a) for a in args])
        return [dict(row) for row in rows]

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self.db.executemany(sql, [[_value(v) for v in row] for row in rows])


PRAGMAS = (
    "busy_timeout = 10000",
    "journal_mode = WAL",
    "synchronous = NORMAL",
    "foreign_keys = ON",
)


class SQLite(Dialect):
    types = ColumnTypes(integer="INTEGER", real="REAL", time="TEXT", json="TEXT", fulltext="fts5")
    now = "((julianday('now') - 2440587.5) * 86400.0)"
    greatest = "max"
    for_update = ""  # one writer at a time: BEGIN IMMEDIATE already excludes the others
    skip_locked = ""

    def __init__(self, url: str) -> None:
        self.path = sqlite_path(url)
        refuse_unusable(self.path)
        self._db: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._turn = asyncio.Lock()

    @property
    def db(self) -> aiosqlite.Connection:
        return opened(self._db)

    async def open(self, on_work: Callable[[], None]) -> None:
        try:
            self._db = await self._connect()
            self._reader = await self._connect("query_only = ON")
        except sqlite3.DatabaseError as exc:
            await self.close()
            raise StoreError(f"cannot open the database {self.path!r}: {exc}") from exc

    async def _connect(self, *pragmas: str) -> aiosqlite.Connection:
        db = await aiosqlite.connect(self.path, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            for pragma in (*PRAGMAS, *pragmas):
                await db.execute(f"PRAGMA {pragma}")
        except BaseException:
            await db.close()  # its worker thread would keep the process alive
            raise
        return db

    async def close(self) -> None:
        for db in (self._db, self._reader):
            if db is not None:
                await db.close()
        self._db = self._reader = None

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Connection]:
        # WAL: readers see the last commit and never wait for the writer's turn.
        yield SQLiteConnection(opened(self._reader))

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        async with self._turn:
            yield SQLiteConnection(self.db)

    @asynccontextmanager
    async def transaction(self, snapshot: bool = False) -> AsyncIterator[Connection]:
        async with self._turn:
            db = self.db
            try:
                await db.execute("BEGIN" if snapshot else "BEGIN IMMEDIATE")
                yield SQLiteConnection(db)
                await db.execute("COMMIT")
            except BaseException:
                # Also when cancelled while BEGIN waited for another process's lock: the
                # worker thread still runs it, and runs this ROLLBACK right after.
                await asyncio.shield(self._roll_back(db))
                raise

    @staticmethod
    async def _roll_back(db: aiosqlite.Connection) -> None:
        try:
            await db.execute("ROLLBACK")
        except sqlite3.OperationalError:
            pass  # no transaction was open: BEGIN itself failed
