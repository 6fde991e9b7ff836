"""The default store: one SQLite file in WAL mode.

Each store operation is one plain function run on a single worker thread that owns the
connection, so an operation is one hop off the event loop and its statements are never
interleaved with another operation's. Writes open `BEGIN IMMEDIATE` transactions, which lets
several processes (`tutor looper` and `tutor ask` in two terminals) share the file safely.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from looper.models import (
    BaseAssistant,
    ChatCompletionThread,
    Claim,
    Message,
    NewMessage,
    Snapshot,
    StoredMessage,
    utcnow,
)
from looper.store.base import (
    ASSISTANT_FOR,
    MESSAGE_COLUMNS,
    MESSAGE_FIELDS,
    PENDING,
    THREAD_COLUMNS,
    Conflict,
    LeaseLost,
    NotFound,
    SchemaTooNew,
    Store,
    StoreError,
    message_row,
    thread_row,
)

T = TypeVar("T")
Migration = Callable[[sqlite3.Connection], None]


def m001_initial(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE assistants (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            instructions TEXT NOT NULL,
            model TEXT,
            created_at TEXT NOT NULL)"""
    )
    db.execute(
        """CREATE TABLE threads (
            id TEXT PRIMARY KEY,
            assistant_id TEXT NOT NULL REFERENCES assistants(id),
            chat_completion_model TEXT NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}',
            external_key TEXT UNIQUE,
            created_at TEXT NOT NULL,
            last_activity TEXT NOT NULL,
            message_count INTEGER NOT NULL DEFAULT 0,
            last_user_id INTEGER NOT NULL DEFAULT 0,
            hwm INTEGER NOT NULL DEFAULT 0,
            settled INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            reply_upto INTEGER,
            reply_ref TEXT,
            lease_owner TEXT,
            lease_until REAL)"""
    )
    db.execute("CREATE INDEX threads_newest ON threads(created_at)")
    db.execute(
        "CREATE INDEX threads_pending ON threads(last_activity) WHERE last_user_id > settled"
    )
    db.execute("CREATE INDEX threads_leased ON threads(lease_owner) WHERE lease_owner IS NOT NULL")
    db.execute(
        """CREATE TABLE messages (
            thread_id TEXT NOT NULL REFERENCES threads(id),
            id INTEGER NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
            content TEXT NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}',
            external_id TEXT,
            created_at TEXT NOT NULL,
            PRIMARY KEY (thread_id, id))"""
    )
    db.execute(
        "CREATE UNIQUE INDEX messages_external ON messages(thread_id, external_id) "
        "WHERE external_id IS NOT NULL"
    )


def m002_bindings_and_activity(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE bindings (
            place TEXT PRIMARY KEY,
            assistant_id TEXT NOT NULL REFERENCES assistants(id))"""
    )
    db.execute("CREATE INDEX threads_activity ON threads(last_activity)")


MIGRATIONS: list[Migration] = [m001_initial, m002_bindings_and_activity]


def sqlite_path(url: str) -> str:
    """`sqlite:///rel.db` is relative, `sqlite:////abs.db` absolute, `sqlite://` in memory."""
    if not url.startswith("sqlite://"):
        raise StoreError(f"not a SQLite URL: {url!r}")
    path = url.removeprefix("sqlite://")
    if path in ("", "/", "/:memory:"):
        return ":memory:"
    return path.removeprefix("/")


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _thread(row: sqlite3.Row) -> ChatCompletionThread:
    data = dict(row)
    data["metadata"] = json.loads(data["metadata"])
    return ChatCompletionThread.model_validate(data)


def _message(row: sqlite3.Row) -> Message:
    data = dict(row)
    data["metadata"] = json.loads(data["metadata"])
    return Message.model_validate(data)


class SQLiteStore(Store):
    """Store on a SQLite file (`sqlite:///tutor.db`)."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.path = sqlite_path(url)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._db: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("the store is not open")
        return self._db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # lifecycle
    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        directory = os.path.dirname(self.path)
        if self.path != ":memory:" and directory and not os.path.isdir(directory):
            raise StoreError(f"cannot open the database {self.path!r}: no directory {directory!r}")
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout = 10000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open the database {self.path!r}: {exc}") from exc
        self._db = db
        try:
            self._migrate()
        except (sqlite3.DatabaseError, StoreError):
            db.close()
            self._db = None
            raise

    def _migrate(self) -> None:
        with self._write() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            current = self._version()
            if current > len(MIGRATIONS):
                raise SchemaTooNew(
                    f"the database is at schema version {current}, newer than this tutor "
                    f"knows ({len(MIGRATIONS)}): upgrade tutor"
                )
            for version, migration in enumerate(MIGRATIONS[current:], start=current + 1):
                migration(db)
                db.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                    (version, migration.__name__, _iso(utcnow())),
                )

    def _version(self) -> int:
        row = self.db.execute("SELECT max(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    async def schema_version(self) -> int:
        return await self._run(self._version)

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self.db.close)
            self._db = None
        self._executor.shutdown(wait=False)

    # assistants
    async def add_assistant(self, assistant: BaseAssistant) -> BaseAssistant:
        def add() -> None:
            with self._write() as db:
                db.execute(
                    "INSERT INTO assistants VALUES (?, ?, ?, ?, ?)",
                    (
                        assistant.id,
                        assistant.name,
                        assistant.instructions,
                        assistant.model,
                        _iso(assistant.created_at),
                    ),
                )

        await self._run(add)
        return assistant

    async def get_assistant(self, assistant_id: str) -> BaseAssistant:
        def get() -> BaseAssistant:
            row = self.db.execute(
                "SELECT * FROM assistants WHERE id = ?", (assistant_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no assistant {assistant_id!r}")
            return BaseAssistant.model_validate(dict(row))

        return await self._run(get)

    async def list_assistants(self) -> list[BaseAssistant]:
        def rows() -> list[BaseAssistant]:
            cursor = self.db.execute("SELECT * FROM assistants ORDER BY created_at, id")
            return [BaseAssistant.model_validate(dict(r)) for r in cursor]

        return await self._run(rows)

    # bindings
    async def bind(self, place: str, assistant_id: str) -> None:
        def bind() -> None:
            with self._write() as db:
                self._require_assistant(db, assistant_id)
                db.execute(
                    "INSERT INTO bindings VALUES (?, ?) "
                    "ON CONFLICT (place) DO UPDATE SET assistant_id = excluded.assistant_id",
                    (place, assistant_id),
                )

        await self._run(bind)

    async def assistant_for(self, place: str) -> BaseAssistant | None:
        def get() -> BaseAssistant | None:
            row = self.db.execute(ASSISTANT_FOR, (place,)).fetchone()
            return BaseAssistant.model_validate(dict(row)) if row else None

        return await self._run(get)

    @staticmethod
    def _require_assistant(db: sqlite3.Connection, assistant_id: str) -> None:
        if not db.execute("SELECT 1 FROM assistants WHERE id = ?", (assistant_id,)).fetchone():
            raise NotFound(f"no assistant {assistant_id!r}")

    # threads
    async def add_thread(
        self, thread: ChatCompletionThread, first: NewMessage | None = None
    ) -> ChatCompletionThread:
        def add() -> ChatCompletionThread:
            with self._write() as db:
                self._require_assistant(db, thread.assistant_id)
                try:
                    db.execute(
                        "INSERT INTO threads (id, assistant_id, chat_completion_model, metadata,"
                        " external_key, created_at, last_activity) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            thread.id,
                            thread.assistant_id,
                            thread.chat_completion_model,
                            json.dumps(thread.metadata),
                            thread.external_key,
                            _iso(thread.created_at),
                            _iso(thread.created_at),
                        ),
                    )
                except sqlite3.IntegrityError as exc:
                    raise Conflict(f"a thread already exists for {thread.external_key}") from exc
                if first is not None:
                    self._append(
                        db, thread.id, "user", first.content, first.metadata, first.external_id
                    )
                return self._get_thread(thread.id)

        added = await self._run(add)
        if first is not None:
            self.notify_work()
        return added

    def _get_thread(self, thread_id: str) -> ChatCompletionThread:
        row = self.db.execute(
            f"SELECT {THREAD_COLUMNS} FROM threads WHERE id = ?", (thread_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"no thread {thread_id!r}")
        return _thread(row)

    async def get_thread(self, thread_id: str) -> ChatCompletionThread:
        return await self._run(self._get_thread, thread_id)

    async def find_thread(self, external_key: str) -> ChatCompletionThread | None:
        def find() -> ChatCompletionThread | None:
            row = self.db.execute(
                f"SELECT {THREAD_COLUMNS} FROM threads WHERE external_key = ?", (external_key,)
            ).fetchone()
            return _thread(row) if row else None

        return await self._run(find)

    async def list_threads(self, limit: int = 100) -> list[ChatCompletionThread]:
        def rows() -> list[ChatCompletionThread]:
            cursor = self.db.execute(
                f"SELECT {THREAD_COLUMNS} FROM threads ORDER BY created_at DESC, rowid DESC "
                "LIMIT ?",
                (limit,),
            )
            return [_thread(r) for r in cursor]

        return await self._run(rows)

    async def threads_active_since(self, moment: datetime) -> list[ChatCompletionThread]:
        def rows() -> list[ChatCompletionThread]:
            cursor = self.db.execute(
                f"SELECT {THREAD_COLUMNS} FROM threads WHERE last_activity >= ? "
                "ORDER BY last_activity DESC",
                (_iso(moment),),
            )
            return [_thread(r) for r in cursor]

        return await self._run(rows)

    # messages
    def _append(
        self,
        db: sqlite3.Connection,
        thread_id: str,
        role: str,
        content: str,
        metadata: dict[str, str] | None,
        external_id: str | None,
    ) -> Message:
        now = _iso(utcnow())
        bump_user = ", last_user_id = message_count + 1" if role == "user" else ""
        row = db.execute(
            f"UPDATE threads SET message_count = message_count + 1, last_activity = ?{bump_user}"
            " WHERE id = ? RETURNING message_count",
            (now, thread_id),
        ).fetchone()
        if row is None:
            raise NotFound(f"no thread {thread_id!r}")
        db.execute(
            "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)",
            (thread_id, row[0], role, content, json.dumps(metadata or {}), external_id, now),
        )
        return Message(
            id=row[0],
            thread_id=thread_id,
            role="user" if role == "user" else "assistant",
            content=content,
            created_at=datetime.fromisoformat(now),
            metadata=metadata or {},
        )

    async def add_user_message(
        self,
        thread_id: str,
        content: str,
        metadata: dict[str, str] | None = None,
        external_id: str | None = None,
    ) -> tuple[Message, bool]:
        def add() -> tuple[Message, bool]:
            with self._write() as db:
                if external_id is not None:
                    seen = db.execute(
                        "SELECT * FROM messages WHERE thread_id = ? AND external_id = ?",
                        (thread_id, external_id),
                    ).fetchone()
                    if seen:
                        return _message(seen), False
                return self._append(db, thread_id, "user", content, metadata, external_id), True

        message, added = await self._run(add)
        if added:
            self.notify_work()
        return message, added

    async def list_messages(self, thread_id: str) -> list[Message]:
        def rows() -> list[Message]:
            self._get_thread(thread_id)
            return self._messages_of([thread_id])[thread_id]

        return await self._run(rows)

    def _messages_of(self, thread_ids: list[str]) -> dict[str, list[Message]]:
        found: dict[str, list[Message]] = {thread_id: [] for thread_id in thread_ids}
        for start in range(0, len(thread_ids), 500):  # stay under SQLite's variable limit
            batch = thread_ids[start : start + 500]
            cursor = self.db.execute(
                f"SELECT {MESSAGE_FIELDS} FROM messages "
                f"WHERE thread_id IN ({', '.join('?' * len(batch))}) ORDER BY thread_id, id",
                batch,
            )
            for row in cursor:
                found[row["thread_id"]].append(_message(row))
        return found

    # the looper's side
    async def claim_pending(self, owner: str, limit: int, lease_seconds: float) -> list[Claim]:
        def claim() -> list[Claim]:
            now = time.time()
            until = now + lease_seconds
            # Most polls find nothing: look without taking the write lock first.
            if not self.db.execute(
                f"SELECT 1 FROM threads WHERE {PENDING} AND (lease_until IS NULL OR "
                "lease_until < ?) LIMIT 1",
                (now,),
            ).fetchone():
                return []
            with self._write() as db:
                threads = [
                    _thread(row)
                    for row in db.execute(
                        f"UPDATE threads SET lease_owner = ?, lease_until = ? WHERE id IN ("
                        f" SELECT id FROM threads WHERE {PENDING}"
                        "  AND (lease_until IS NULL OR lease_until < ?)"
                        "  ORDER BY last_activity LIMIT ?)"
                        f" RETURNING {THREAD_COLUMNS}",
                        (owner, until, now, limit),
                    ).fetchall()
                ]
                messages = self._messages_of([t.id for t in threads])
            return [
                Claim(thread=t, messages=messages[t.id], owner=owner, lease_until=until)
                for t in sorted(threads, key=lambda t: t.last_activity or t.created_at)
            ]

        return await self._run(claim)

    async def renew_lease(self, thread_id: str, owner: str, lease_seconds: float) -> bool:
        def renew() -> bool:
            with self._write() as db:
                cursor = db.execute(
                    "UPDATE threads SET lease_until = ? WHERE id = ? AND lease_owner = ?",
                    (time.time() + lease_seconds, thread_id, owner),
                )
                return cursor.rowcount == 1

        return await self._run(renew)

    async def release(self, thread_id: str, owner: str) -> None:
        def release() -> None:
            with self._write() as db:
                db.execute(
                    "UPDATE threads SET lease_owner = NULL, lease_until = NULL "
                    "WHERE id = ? AND lease_owner = ?",
                    (thread_id, owner),
                )

        await self._run(release)
        self.notify_work()

    def _owned(self, db: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> None:
        """Run an UPDATE whose last two parameters are the thread id and the lease owner."""
        if db.execute(sql + " WHERE id = ? AND lease_owner = ?", params).rowcount != 1:
            raise LeaseLost(f"thread {params[-2]!r} is no longer leased to {params[-1]!r}")

    async def reserve_reply(self, thread_id: str, owner: str, upto: int, ref: str | None) -> None:
        def reserve() -> None:
            with self._write() as db:
                self._owned(
                    db,
                    "UPDATE threads SET reply_upto = ?, reply_ref = ?",
                    (upto, ref, thread_id, owner),
                )

        await self._run(reserve)

    async def commit_answer(
        self,
        thread_id: str,
        owner: str,
        upto: int,
        content: str,
        metadata: dict[str, str] | None = None,
    ) -> Message:
        def commit() -> Message:
            with self._write() as db:
                self._owned(
                    db,
                    "UPDATE threads SET hwm = max(hwm, ?), settled = max(settled, ?),"
                    " last_error = NULL, reply_upto = NULL, reply_ref = NULL,"
                    " lease_owner = NULL, lease_until = NULL",
                    (upto, upto, thread_id, owner),
                )
                return self._append(db, thread_id, "assistant", content, metadata, None)

        message = await self._run(commit)
        self.notify_work()
        return message

    async def record_failure(self, thread_id: str, owner: str, upto: int, error: str) -> None:
        def fail() -> None:
            with self._write() as db:
                self._owned(
                    db,
                    "UPDATE threads SET settled = max(settled, ?), last_error = ?,"
                    " reply_upto = NULL, reply_ref = NULL, lease_owner = NULL, lease_until = NULL",
                    (upto, error, thread_id, owner),
                )

        await self._run(fail)
        self.notify_work()

    async def retry(self, thread_id: str) -> bool:
        def retry() -> bool:
            with self._write() as db:
                thread = self._get_thread(thread_id)
                if thread.settled <= thread.hwm:
                    return False  # nothing was given up on
                db.execute(
                    "UPDATE threads SET settled = hwm, last_error = NULL WHERE id = ?",
                    (thread_id,),
                )
                return True

        retried = await self._run(retry)
        if retried:
            self.notify_work()
        return retried

    async def export_all(self) -> Snapshot:
        def read() -> Snapshot:
            db = self.db
            db.execute("BEGIN")  # one consistent view of all four tables
            try:
                return Snapshot(
                    assistants=[
                        BaseAssistant.model_validate(dict(r))
                        for r in db.execute("SELECT * FROM assistants ORDER BY created_at, id")
                    ],
                    bindings={r[0]: r[1] for r in db.execute("SELECT * FROM bindings")},
                    threads=[
                        _thread(r)
                        for r in db.execute(
                            f"SELECT {THREAD_COLUMNS} FROM threads ORDER BY created_at, id"
                        )
                    ],
                    messages=[
                        StoredMessage.model_validate(
                            {**dict(r), "metadata": json.loads(r["metadata"])}
                        )
                        for r in db.execute("SELECT * FROM messages ORDER BY thread_id, id")
                    ],
                )
            finally:
                db.execute("COMMIT")

        return await self._run(read)

    async def import_all(self, snapshot: Snapshot) -> None:
        def load() -> None:
            with self._write() as db:
                if db.execute("SELECT 1 FROM assistants UNION SELECT 1 FROM threads").fetchone():
                    raise Conflict("the target store is not empty: import into a new one")
                db.executemany(
                    "INSERT INTO assistants VALUES (?, ?, ?, ?, ?)",
                    [
                        (a.id, a.name, a.instructions, a.model, _iso(a.created_at))
                        for a in snapshot.assistants
                    ],
                )
                db.executemany("INSERT INTO bindings VALUES (?, ?)", snapshot.bindings.items())
                db.executemany(
                    f"INSERT INTO threads ({THREAD_COLUMNS}, external_key) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [thread_row(t, json.dumps, _iso) for t in snapshot.threads],
                )
                db.executemany(
                    f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [message_row(m, json.dumps, _iso) for m in snapshot.messages],
                )

        await self._run(load)
        self.notify_work()

    async def lease_owners(self) -> list[str]:
        def owners() -> list[str]:
            cursor = self.db.execute(
                "SELECT DISTINCT lease_owner FROM threads "
                "WHERE lease_owner IS NOT NULL AND lease_until >= ?",
                (time.time(),),
            )
            return [r[0] for r in cursor]

        return await self._run(owners)

    async def drop_leases(self, owner: str) -> int:
        def drop() -> int:
            with self._write() as db:
                return db.execute(
                    "UPDATE threads SET lease_owner = NULL, lease_until = NULL "
                    "WHERE lease_owner = ?",
                    (owner,),
                ).rowcount

        dropped = await self._run(drop)
        if dropped:
            self.notify_work()
        return dropped
