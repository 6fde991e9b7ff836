"""The store on PostgreSQL, for several replicas sharing one database.

Replicas coordinate through the database only: a pending thread is claimed with
`FOR UPDATE SKIP LOCKED` and a lease that expires on the database's clock, messages are
numbered under the thread's row lock, and every change that makes work sends
`NOTIFY tutor_work`, which wakes all replicas at once (polling stays as the safety net).
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from typing import Any

import asyncpg

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

log = logging.getLogger(__name__)
CHANNEL = "tutor_work"
MIGRATION_LOCK = 7_315_002  # pg_advisory_xact_lock key: one replica migrates at a time
NOW = "extract(epoch from clock_timestamp())::float8"

Migration = tuple[str, list[str]]
MIGRATIONS: list[Migration] = [
    (
        "m001_initial",
        [
            """CREATE TABLE assistants (
                id text PRIMARY KEY,
                name text NOT NULL,
                instructions text NOT NULL,
                model text,
                created_at timestamptz NOT NULL)""",
            """CREATE TABLE threads (
                id text PRIMARY KEY,
                assistant_id text NOT NULL REFERENCES assistants(id),
                chat_completion_model text NOT NULL,
                metadata jsonb NOT NULL DEFAULT '{}',
                external_key text UNIQUE,
                created_at timestamptz NOT NULL,
                last_activity timestamptz NOT NULL,
                message_count bigint NOT NULL DEFAULT 0,
                last_user_id bigint NOT NULL DEFAULT 0,
                hwm bigint NOT NULL DEFAULT 0,
                settled bigint NOT NULL DEFAULT 0,
                last_error text,
                reply_upto bigint,
                reply_ref text,
                lease_owner text,
                lease_until float8)""",
            "CREATE INDEX threads_newest ON threads (created_at)",
            f"CREATE INDEX threads_pending ON threads (last_activity) WHERE {PENDING}",
            "CREATE INDEX threads_leased ON threads (lease_owner) WHERE lease_owner IS NOT NULL",
            """CREATE TABLE messages (
                thread_id text NOT NULL REFERENCES threads(id),
                id bigint NOT NULL,
                role text NOT NULL CHECK (role IN ('user', 'assistant')),
                content text NOT NULL,
                metadata jsonb NOT NULL DEFAULT '{}',
                external_id text,
                created_at timestamptz NOT NULL,
                PRIMARY KEY (thread_id, id))""",
            "CREATE UNIQUE INDEX messages_external ON messages (thread_id, external_id) "
            "WHERE external_id IS NOT NULL",
        ],
    ),
    (
        "m002_bindings_and_activity",
        [
            """CREATE TABLE bindings (
                place text PRIMARY KEY,
                assistant_id text NOT NULL REFERENCES assistants(id))""",
            "CREATE INDEX threads_activity ON threads (last_activity)",
        ],
    ),
]


async def _init_connection(connection: asyncpg.Connection) -> None:
    await connection.set_type_codec(
        "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
    )


def same(value: Any) -> Any:
    """asyncpg takes dicts (jsonb codec) and datetimes as they are."""
    return value


def _thread(row: asyncpg.Record) -> ChatCompletionThread:
    return ChatCompletionThread.model_validate(dict(row))


def _message(row: asyncpg.Record) -> Message:
    return Message.model_validate(dict(row))


def _assistant(row: asyncpg.Record) -> BaseAssistant:
    return BaseAssistant.model_validate(dict(row))


class PostgresStore(Store):
    """Store on PostgreSQL (`postgresql://user@host/db`), with a connection pool."""

    def __init__(self, url: str, pool_size: int = 10) -> None:
        super().__init__()
        self.url = url
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("the store is not open")
        return self._pool

    # lifecycle
    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.url, min_size=1, max_size=self.pool_size, init=_init_connection
            )
        except (OSError, asyncpg.PostgresError, ValueError) as exc:
            raise StoreError(f"cannot open the database {self._safe_url()}: {exc}") from exc
        try:
            await self._migrate()
            await self._listen()
        except BaseException:
            await self.close()
            raise

    def _safe_url(self) -> str:
        _, at, tail = self.url.rpartition("@")
        return f"postgresql://…@{tail}" if at else self.url

    async def _migrate(self) -> None:
        async with self.pool.acquire() as db, db.transaction():
            await db.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)"
            )
            current = await self._version(db)
            if current > len(MIGRATIONS):
                raise SchemaTooNew(
                    f"the database is at schema version {current}, newer than this tutor "
                    f"knows ({len(MIGRATIONS)}): upgrade tutor"
                )
            for version, (name, statements) in enumerate(MIGRATIONS[current:], start=current + 1):
                for statement in statements:
                    await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_migrations VALUES ($1, $2, $3)", version, name, utcnow()
                )

    @staticmethod
    async def _version(db: asyncpg.Connection) -> int:
        return int(await db.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations"))

    async def schema_version(self) -> int:
        async with self.pool.acquire() as db:
            return await self._version(db)

    async def _listen(self) -> None:
        """A connection of its own that turns NOTIFY tutor_work into a wake-up."""
        self._listener = await asyncpg.connect(self.url)
        await self._listener.add_listener(CHANNEL, self._on_notify)
        self._listener.add_termination_listener(self._on_listener_lost)

    def _on_notify(self, *_: Any) -> None:
        self.notify_work()

    def _on_listener_lost(self, *_: Any) -> None:
        if self._pool is not None:  # not closing: polling covers until we listen again
            log.warning("lost the LISTEN connection; reconnecting")
            asyncio.get_running_loop().create_task(self._relisten())

    async def _relisten(self) -> None:
        for delay in (0.5, 1, 2, 5, 10, 30):
            try:
                await self._listen()
                self.notify_work()  # something may have happened while deaf
                return
            except (OSError, asyncpg.PostgresError):
                await asyncio.sleep(delay)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        if pool is not None:
            await pool.close()

    # assistants
    async def add_assistant(self, assistant: BaseAssistant) -> BaseAssistant:
        await self.pool.execute(
            "INSERT INTO assistants VALUES ($1, $2, $3, $4, $5)",
            assistant.id,
            assistant.name,
            assistant.instructions,
            assistant.model,
            assistant.created_at,
        )
        return assistant

    async def get_assistant(self, assistant_id: str) -> BaseAssistant:
        row = await self.pool.fetchrow("SELECT * FROM assistants WHERE id = $1", assistant_id)
        if row is None:
            raise NotFound(f"no assistant {assistant_id!r}")
        return _assistant(row)

    async def list_assistants(self) -> list[BaseAssistant]:
        rows = await self.pool.fetch("SELECT * FROM assistants ORDER BY created_at, id")
        return [_assistant(r) for r in rows]

    # bindings
    async def bind(self, place: str, assistant_id: str) -> None:
        async with self.pool.acquire() as db, db.transaction():
            await self._require_assistant(db, assistant_id)
            await db.execute(
                "INSERT INTO bindings VALUES ($1, $2) "
                "ON CONFLICT (place) DO UPDATE SET assistant_id = excluded.assistant_id",
                place,
                assistant_id,
            )

    async def assistant_for(self, place: str) -> BaseAssistant | None:
        row = await self.pool.fetchrow(ASSISTANT_FOR.replace("?", "$1"), place)
        return _assistant(row) if row else None

    @staticmethod
    async def _require_assistant(db: asyncpg.Connection, assistant_id: str) -> None:
        if await db.fetchval("SELECT 1 FROM assistants WHERE id = $1", assistant_id) is None:
            raise NotFound(f"no assistant {assistant_id!r}")

    # threads
    async def add_thread(
        self, thread: ChatCompletionThread, first: NewMessage | None = None
    ) -> ChatCompletionThread:
        async with self.pool.acquire() as db, db.transaction():
            await self._require_assistant(db, thread.assistant_id)
            inserted = await db.fetchval(
                "INSERT INTO threads (id, assistant_id, chat_completion_model, metadata,"
                " external_key, created_at, last_activity) VALUES ($1, $2, $3, $4, $5, $6, $6)"
                " ON CONFLICT (external_key) DO NOTHING RETURNING 1",
                thread.id,
                thread.assistant_id,
                thread.chat_completion_model,
                thread.metadata,
                thread.external_key,
                thread.created_at,
            )
            if inserted is None:
                raise Conflict(f"a thread already exists for {thread.external_key}")
            if first is not None:
                await self._append(
                    db, thread.id, "user", first.content, first.metadata, first.external_id
                )
                await db.execute("SELECT pg_notify($1, $2)", CHANNEL, thread.id)
            added = await self._get_thread(db, thread.id)
        if first is not None:
            self.notify_work()
        return added

    @staticmethod
    async def _get_thread(db: asyncpg.Connection, thread_id: str) -> ChatCompletionThread:
        row = await db.fetchrow(f"SELECT {THREAD_COLUMNS} FROM threads WHERE id = $1", thread_id)
        if row is None:
            raise NotFound(f"no thread {thread_id!r}")
        return _thread(row)

    async def get_thread(self, thread_id: str) -> ChatCompletionThread:
        async with self.pool.acquire() as db:
            return await self._get_thread(db, thread_id)

    async def find_thread(self, external_key: str) -> ChatCompletionThread | None:
        row = await self.pool.fetchrow(
            f"SELECT {THREAD_COLUMNS} FROM threads WHERE external_key = $1", external_key
        )
        return _thread(row) if row else None

    async def list_threads(self, limit: int = 100) -> list[ChatCompletionThread]:
        rows = await self.pool.fetch(
            f"SELECT {THREAD_COLUMNS} FROM threads ORDER BY created_at DESC, id DESC LIMIT $1",
            limit,
        )
        return [_thread(r) for r in rows]

    async def threads_active_since(self, moment: datetime) -> list[ChatCompletionThread]:
        rows = await self.pool.fetch(
            f"SELECT {THREAD_COLUMNS} FROM threads WHERE last_activity >= $1 "
            "ORDER BY last_activity DESC",
            moment,
        )
        return [_thread(r) for r in rows]

    # messages
    @staticmethod
    async def _append(
        db: asyncpg.Connection,
        thread_id: str,
        role: str,
        content: str,
        metadata: dict[str, str] | None,
        external_id: str | None,
    ) -> Message:
        now = utcnow()
        bump_user = ", last_user_id = message_count + 1" if role == "user" else ""
        number = await db.fetchval(
            f"UPDATE threads SET message_count = message_count + 1, last_activity = $1{bump_user}"
            " WHERE id = $2 RETURNING message_count",
            now,
            thread_id,
        )
        if number is None:
            raise NotFound(f"no thread {thread_id!r}")
        await db.execute(
            "INSERT INTO messages VALUES ($1, $2, $3, $4, $5, $6, $7)",
            thread_id,
            number,
            role,
            content,
            metadata or {},
            external_id,
            now,
        )
        return Message(
            id=number,
            thread_id=thread_id,
            role="user" if role == "user" else "assistant",
            content=content,
            created_at=now,
            metadata=metadata or {},
        )

    async def add_user_message(
        self,
        thread_id: str,
        content: str,
        metadata: dict[str, str] | None = None,
        external_id: str | None = None,
    ) -> tuple[Message, bool]:
        async with self.pool.acquire() as db, db.transaction():
            # The row lock orders appends to one thread across replicas, so the check for an
            # already stored external_id below sees every earlier append.
            if (
                await db.fetchval("SELECT 1 FROM threads WHERE id = $1 FOR UPDATE", thread_id)
                is None
            ):
                raise NotFound(f"no thread {thread_id!r}")
            if external_id is not None:
                seen = await db.fetchrow(
                    f"SELECT {MESSAGE_FIELDS} FROM messages WHERE thread_id = $1 "
                    "AND external_id = $2",
                    thread_id,
                    external_id,
                )
                if seen:
                    return _message(seen), False
            message = await self._append(db, thread_id, "user", content, metadata, external_id)
            await db.execute("SELECT pg_notify($1, $2)", CHANNEL, thread_id)
        self.notify_work()
        return message, True

    async def list_messages(self, thread_id: str) -> list[Message]:
        async with self.pool.acquire() as db:
            await self._get_thread(db, thread_id)
            return (await self._messages_of(db, [thread_id]))[thread_id]

    @staticmethod
    async def _messages_of(
        db: asyncpg.Connection, thread_ids: list[str]
    ) -> dict[str, list[Message]]:
        found: dict[str, list[Message]] = {thread_id: [] for thread_id in thread_ids}
        rows = await db.fetch(
            f"SELECT {MESSAGE_FIELDS} FROM messages WHERE thread_id = ANY($1) "
            "ORDER BY thread_id, id",
            thread_ids,
        )
        for row in rows:
            found[row["thread_id"]].append(_message(row))
        return found

    # the looper's side
    async def claim_pending(self, owner: str, limit: int, lease_seconds: float) -> list[Claim]:
        async with self.pool.acquire() as db:
            if not await db.fetchval(
                f"SELECT 1 FROM threads WHERE {PENDING} AND (lease_until IS NULL OR "
                f"lease_until < {NOW}) LIMIT 1"
            ):
                return []  # most polls find nothing: no write, no lock
            async with db.transaction():
                rows = await db.fetch(
                    f"UPDATE threads SET lease_owner = $1, lease_until = {NOW} + $2 "
                    f"WHERE id IN (SELECT id FROM threads WHERE {PENDING} "
                    f"  AND (lease_until IS NULL OR lease_until < {NOW}) "
                    "  ORDER BY last_activity LIMIT $3 FOR UPDATE SKIP LOCKED) "
                    f"RETURNING {THREAD_COLUMNS}, lease_until",
                    owner,
                    lease_seconds,
                    limit,
                )
                threads = [(_thread(r), float(r["lease_until"])) for r in rows]
                messages = await self._messages_of(db, [t.id for t, _ in threads])
        threads.sort(key=lambda pair: pair[0].last_activity or pair[0].created_at)
        return [
            Claim(thread=t, messages=messages[t.id], owner=owner, lease_until=until)
            for t, until in threads
        ]

    async def renew_lease(self, thread_id: str, owner: str, lease_seconds: float) -> bool:
        status = await self.pool.execute(
            f"UPDATE threads SET lease_until = {NOW} + $1 WHERE id = $2 AND lease_owner = $3",
            lease_seconds,
            thread_id,
            owner,
        )
        return bool(status == "UPDATE 1")

    async def release(self, thread_id: str, owner: str) -> None:
        async with self.pool.acquire() as db, db.transaction():
            await db.execute(
                "UPDATE threads SET lease_owner = NULL, lease_until = NULL "
                "WHERE id = $1 AND lease_owner = $2",
                thread_id,
                owner,
            )
            await db.execute("SELECT pg_notify($1, $2)", CHANNEL, thread_id)
        self.notify_work()

    @staticmethod
    async def _owned(db: asyncpg.Connection, sql: str, *params: Any) -> None:
        """Run an UPDATE whose last two parameters are the thread id and the lease owner."""
        count = len(params)
        status = await db.execute(
            f"{sql} WHERE id = ${count - 1} AND lease_owner = ${count}", *params
        )
        if status != "UPDATE 1":
            raise LeaseLost(f"thread {params[-2]!r} is no longer leased to {params[-1]!r}")

    async def reserve_reply(self, thread_id: str, owner: str, upto: int, ref: str | None) -> None:
        async with self.pool.acquire() as db:
            await self._owned(
                db,
                "UPDATE threads SET reply_upto = $1, reply_ref = $2",
                upto,
                ref,
                thread_id,
                owner,
            )

    async def commit_answer(
        self,
        thread_id: str,
        owner: str,
        upto: int,
        content: str,
        metadata: dict[str, str] | None = None,
    ) -> Message:
        async with self.pool.acquire() as db, db.transaction():
            await self._owned(
                db,
                "UPDATE threads SET hwm = greatest(hwm, $1), settled = greatest(settled, $1),"
                " last_error = NULL, reply_upto = NULL, reply_ref = NULL,"
                " lease_owner = NULL, lease_until = NULL",
                upto,
                thread_id,
                owner,
            )
            message = await self._append(db, thread_id, "assistant", content, metadata, None)
            await db.execute("SELECT pg_notify($1, $2)", CHANNEL, thread_id)
        self.notify_work()
        return message

    async def record_failure(self, thread_id: str, owner: str, upto: int, error: str) -> None:
        async with self.pool.acquire() as db:
            await self._owned(
                db,
                "UPDATE threads SET settled = greatest(settled, $1), last_error = $2,"
                " reply_upto = NULL, reply_ref = NULL, lease_owner = NULL, lease_until = NULL",
                upto,
                error,
                thread_id,
                owner,
            )
        self.notify_work()

    async def retry(self, thread_id: str) -> bool:
        async with self.pool.acquire() as db, db.transaction():
            status = await db.execute(
                "UPDATE threads SET settled = hwm, last_error = NULL "
                "WHERE id = $1 AND settled > hwm",
                thread_id,
            )
            if status != "UPDATE 1":
                await self._get_thread(db, thread_id)  # NotFound for an unknown id
                return False
            await db.execute("SELECT pg_notify($1, $2)", CHANNEL, thread_id)
        self.notify_work()
        return True

    async def export_all(self) -> Snapshot:
        async with self.pool.acquire() as db, db.transaction(isolation="repeatable_read"):
            assistants = await db.fetch("SELECT * FROM assistants ORDER BY created_at, id")
            bindings = await db.fetch("SELECT * FROM bindings")
            threads = await db.fetch(
                f"SELECT {THREAD_COLUMNS} FROM threads ORDER BY created_at, id"
            )
            messages = await db.fetch("SELECT * FROM messages ORDER BY thread_id, id")
        return Snapshot(
            assistants=[_assistant(r) for r in assistants],
            bindings={r["place"]: r["assistant_id"] for r in bindings},
            threads=[_thread(r) for r in threads],
            messages=[StoredMessage.model_validate(dict(r)) for r in messages],
        )

    async def import_all(self, snapshot: Snapshot) -> None:
        async with self.pool.acquire() as db, db.transaction():
            await db.execute("LOCK TABLE assistants, threads IN EXCLUSIVE MODE")
            if await db.fetchval("SELECT 1 FROM assistants UNION SELECT 1 FROM threads"):
                raise Conflict("the target store is not empty: import into a new one")
            await db.executemany(
                "INSERT INTO assistants VALUES ($1, $2, $3, $4, $5)",
                [
                    (a.id, a.name, a.instructions, a.model, a.created_at)
                    for a in snapshot.assistants
                ],
            )
            await db.executemany("INSERT INTO bindings VALUES ($1, $2)", snapshot.bindings.items())
            await db.executemany(
                f"INSERT INTO threads ({THREAD_COLUMNS}, external_key) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                [thread_row(t, same, same) for t in snapshot.threads],
            )
            await db.executemany(
                f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                [message_row(m, same, same) for m in snapshot.messages],
            )
            await db.execute("SELECT pg_notify($1, 'import')", CHANNEL)
        self.notify_work()

    async def lease_owners(self) -> list[str]:
        rows = await self.pool.fetch(
            "SELECT DISTINCT lease_owner FROM threads "
            f"WHERE lease_owner IS NOT NULL AND lease_until >= {NOW}"
        )
        return [r[0] for r in rows]

    async def drop_leases(self, owner: str) -> int:
        async with self.pool.acquire() as db, db.transaction():
            status = await db.execute(
                "UPDATE threads SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1",
                owner,
            )
            dropped = int(status.split()[-1])
            if dropped:
                await db.execute("SELECT pg_notify($1, $2)", CHANNEL, owner)
        if dropped:
            self.notify_work()
        return dropped
