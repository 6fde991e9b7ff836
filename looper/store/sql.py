"""The store: every statement and rule, written once for every database (see `dialect.py`).

Every method that changes several rows does so in one transaction. Writes made through this
object wake `wait_for_work` at once; other processes' writes wake it through the dialect
(PostgreSQL's NOTIFY) or are seen by the looper's poll.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel

from looper.models import (
    AccessRule,
    Attachment,
    BaseAssistant,
    ChatCompletionThread,
    Claim,
    Conversation,
    Feedback,
    Message,
    NewMessage,
    PendingSummary,
    Snapshot,
    StoredMessage,
    UsageRecord,
    utcnow,
)
from looper.store.batch import Batcher, in_batches, marks
from looper.store.dialect import Connection, Dialect, Row
from looper.store.errors import Conflict, LeaseLost, NotFound
from looper.store.ledger import ADD_USAGE, USAGE_COLUMNS, Ledger, add_usage, usage_values
from looper.store.migrations import SCHEMA_VERSION, migrate
from looper.store.shelf import Shelf

ASSISTANT_COLUMNS = "id, name, instructions, model, created_at, icon, prompts, style"
BOUND_ASSISTANT = ", ".join(f"a.{column}" for column in ASSISTANT_COLUMNS.split(", "))
THREAD_COLUMNS = (
    "id, assistant_id, chat_completion_model, metadata, external_key, created_at, "
    "last_activity, message_count, last_user_id, hwm, settled, last_error, reply_upto, reply_ref, "
    "awaiting_place, failure_ref, asker, place"
)
FEEDBACK_COLUMNS = (
    "thread_id, answers, person, assistant_id, vote, comment, message_ref, link, "
    "created_at, updated_at"
)
MESSAGE_COLUMNS = "thread_id, id, role, content, metadata, external_id, created_at, asker"
ATTACHMENT_COLUMNS = "thread_id, message_id, position, kind, name, mime, content"
ADD_ATTACHMENT = f"INSERT INTO attachments ({ATTACHMENT_COLUMNS}) VALUES ({', '.join('?' * 7)})"
ADD_ASSISTANT = f"INSERT INTO assistants ({ASSISTANT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
ADD_THREAD = f"INSERT INTO threads ({THREAD_COLUMNS}) VALUES ({', '.join('?' * 18)})"
ADD_MESSAGE = f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES ({', '.join('?' * 8)})"
SEEN_MESSAGE = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE thread_id = ? AND external_id = ?"
# Spelled exactly as in the partial index `threads_pending`, or the index is not used.
PENDING = "(last_user_id > settled OR awaiting_place = 1)"
UNLEASED = PENDING + " AND (lease_until IS NULL OR lease_until < {now})"
RELEASED = "lease_owner = NULL, lease_until = NULL"
OWNED = "WHERE id = ? AND lease_owner = ?"
M = TypeVar("M", bound=BaseModel)
Role = Literal["user", "assistant"]
NewThread = tuple[ChatCompletionThread, NewMessage | None]


@dataclass(frozen=True)
class Answer:
    """A leased thread's answer up to user message `upto`, ready to be committed."""

    thread_id: str
    owner: str
    upto: int
    content: str
    metadata: dict[str, str]
    usage: UsageRecord | None

    def message(self, number: int, at: datetime) -> Message:
        return Message(
            id=number,
            thread_id=self.thread_id,
            role="assistant",
            content=self.content,
            created_at=at,
            metadata=self.metadata,
        )


@dataclass(frozen=True)
class Placement:
    """Where the sink placed a leased thread that was `awaiting_place`."""

    thread_id: str
    owner: str
    metadata: dict[str, str]
    external_key: str | None


@dataclass(frozen=True)
class Reservation:
    """Where a leased thread's answer up to user message `upto` is being delivered."""

    thread_id: str
    owner: str
    upto: int
    ref: str | None


ANY_NUMBER = 1 << 40  # no per-asker cap: more turns than any asker has threads
KEYED_ROWS = 100  # threads a multi-row INSERT: 1,800 parameters, under every database's limit


class Leased(Protocol):
    """An item of a batch that only the holder of its thread's lease may write."""

    @property
    def thread_id(self) -> str: ...

    @property
    def owner(self) -> str: ...


L = TypeVar("L", bound=Leased)


def lease_lost(thread_id: str, owner: str) -> LeaseLost:
    return LeaseLost(f"thread {thread_id!r} is no longer leased to {owner!r}")


def _parsed(model: type[M], row: Row) -> M:
    """A row whose `metadata` column holds JSON text, as `model`."""
    return model.model_validate({**row, "metadata": json.loads(row["metadata"])})


def _assistant_values(a: BaseAssistant) -> tuple[Any, ...]:
    return (
        *(a.id, a.name, a.instructions, a.model, a.created_at, a.icon, json.dumps(a.prompts)),
        a.style,
    )


def _assistant(row: Row) -> BaseAssistant:
    """A row of `assistants` (its `prompts` column holds a JSON list)."""
    return BaseAssistant.model_validate({**row, "prompts": json.loads(row["prompts"])})


def _feedback_values(f: Feedback) -> tuple[Any, ...]:
    return (
        *(f.thread_id, f.answers, f.person, f.assistant_id, f.vote, f.comment),
        *(f.message_ref, f.link, f.created_at, f.updated_at),
    )


def _thread_values(t: ChatCompletionThread) -> tuple[Any, ...]:
    return (
        *(t.id, t.assistant_id, t.chat_completion_model, json.dumps(t.metadata), t.external_key),
        *(t.created_at, t.last_activity or t.created_at, t.message_count, t.last_user_id),
        *(t.hwm, t.settled, t.last_error, t.reply_upto, t.reply_ref),
        *(int(t.awaiting_place), t.failure_ref, t.asker, t.place),
    )


def _started(
    thread: ChatCompletionThread, first: NewMessage | None, now: datetime
) -> ChatCompletionThread:
    """The row of a new thread: with its first question (message 1) when it has one."""
    asked = 1 if first is not None else 0
    return thread.model_copy(
        update={
            "message_count": asked,
            "last_user_id": asked,
            "last_activity": now,
            "asker": first.asker if first is not None else None,
            "place": (first.place if first is not None else None) or thread.place,
        }
    )


def _first_message(thread: ChatCompletionThread, first: NewMessage) -> Message:
    """Message 1 of a new thread."""
    return Message(
        id=1,
        thread_id=thread.id,
        role="user",
        content=first.content,
        created_at=thread.last_activity or thread.created_at,
        metadata=first.metadata,
        attachments=first.attachments,
    )


def _first_values(thread: ChatCompletionThread, first: NewMessage) -> tuple[Any, ...]:
    """The row of message 1 of a new thread."""
    return _message_values(_first_message(thread, first), first.external_id, first.asker)


def _attachment_values(m: Message) -> list[tuple[Any, ...]]:
    """The rows of a message's attachments, in their order."""
    return [
        (m.thread_id, m.id, position, a.kind, a.name, a.mime, a.content)
        for position, a in enumerate(m.attachments)
    ]


async def _attachments_of(
    db: Connection, thread_ids: list[str]
) -> dict[tuple[str, int], list[Attachment]]:
    """The attachments of the threads' messages, by (thread id, message id), in order."""
    found: dict[tuple[str, int], list[Attachment]] = {}
    for batch in in_batches(thread_ids):
        rows = await db.fetch(
            f"SELECT {ATTACHMENT_COLUMNS} FROM attachments WHERE thread_id IN ({marks(batch)}) "
            "ORDER BY thread_id, message_id, position",
            *batch,
        )
        for row in rows:
            key = (row["thread_id"], int(row["message_id"]))
            found.setdefault(key, []).append(Attachment.model_validate(dict(row)))
    return found


def _message_values(m: Message, external_id: str | None, asker: str | None) -> tuple[Any, ...]:
    metadata = json.dumps(m.metadata)
    return (m.thread_id, m.id, m.role, m.content, metadata, external_id, m.created_at, asker)


class Store(Ledger, Shelf):
    """Assistants, threads and messages in one SQL database (and the ledger of usage)."""

    def __init__(self, dialect: Dialect) -> None:
        super().__init__()
        self.dialect = dialect
        self._work = asyncio.Event()
        self._new_threads = Batcher(self._add_threads)
        self._bound = Batcher(self._assistants_for)
        self._rules = Batcher(self._rules_of)
        self._reservations = Batcher(self._reserve_replies)
        self._placements = Batcher(self._place_threads)
        self._commits = Batcher(self._commit_answers)

    async def open(self) -> None:
        """Connect and bring the schema up to date."""
        await self.dialect.open(self.notify_work)
        try:
            await migrate(self.dialect)
        except BaseException:
            await self.dialect.close()
            raise

    async def close(self) -> None:
        await self.dialect.close()

    async def schema_version(self) -> int:
        return int((await self._fetch(SCHEMA_VERSION))[0]["version"])

    async def _fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self.dialect.reading() as db:
            return await db.fetch(sql, *args)

    # assistants
    async def add_assistant(self, assistant: BaseAssistant) -> BaseAssistant:
        async with self.dialect.connection() as db:
            await db.execute(ADD_ASSISTANT, *_assistant_values(assistant))
        return assistant

    async def get_assistant(self, assistant_id: str) -> BaseAssistant:
        """Raises NotFound."""
        found = await self._assistants("WHERE id = ?", assistant_id)
        if not found:
            raise NotFound(f"no assistant {assistant_id!r}")
        return found[0]

    async def list_assistants(self) -> list[BaseAssistant]:
        """Oldest first."""
        return await self._assistants("ORDER BY created_at, id")

    async def _assistants(self, condition: str, *args: Any) -> list[BaseAssistant]:
        rows = await self._fetch(f"SELECT {ASSISTANT_COLUMNS} FROM assistants {condition}", *args)
        return [_assistant(r) for r in rows]

    async def update_assistant(self, assistant: BaseAssistant) -> None:
        """Store an assistant's new name, instructions, model, icon, prompts and style (its
        id and creation time stay). Raises NotFound."""
        async with self.dialect.connection() as db:
            changed = await db.execute(
                "UPDATE assistants SET name = ?, instructions = ?, model = ?, icon = ?, "
                "prompts = ?, style = ? WHERE id = ?",
                *_assistant_values(assistant)[1:4],
                *_assistant_values(assistant)[5:],
                assistant.id,
            )
        if not changed:
            raise NotFound(f"no assistant {assistant.id!r}")

    @staticmethod
    async def _require_assistant(db: Connection, assistant_id: str) -> None:
        if await db.fetchval("SELECT 1 FROM assistants WHERE id = ?", assistant_id) is None:
            raise NotFound(f"no assistant {assistant_id!r}")

    # bindings: which assistant answers in a place (e.g. a channel)
    async def bind(self, place: str, assistant_id: str) -> None:
        """Raises NotFound for an unknown assistant."""
        async with self.dialect.transaction() as db:
            await self._require_assistant(db, assistant_id)
            await db.execute(
                "INSERT INTO bindings (place, assistant_id) VALUES (?, ?) "
                "ON CONFLICT (place) DO UPDATE SET assistant_id = excluded.assistant_id",
                place,
                assistant_id,
            )

    async def assistant_for(self, place: str) -> BaseAssistant | None:
        """The assistant bound to `place`, else the oldest one; None when there is none
        (places asked for at the same moment are read together)."""
        return await self._bound.add(place)

    async def _assistants_for(self, places: list[str]) -> list[BaseAssistant | Exception | None]:
        # One query a batch: the bound assistants, and the oldest (place NULL) for the rest.
        by_place: dict[str | None, BaseAssistant] = {}
        for chunk in in_batches(sorted(set(places))):
            rows = await self._fetch(
                f"SELECT b.place, {BOUND_ASSISTANT} FROM bindings b "
                f"JOIN assistants a ON a.id = b.assistant_id WHERE b.place IN ({marks(chunk)}) "
                f"UNION ALL SELECT * FROM (SELECT NULL AS place, {ASSISTANT_COLUMNS} "
                "FROM assistants ORDER BY created_at, id LIMIT 1) oldest",
                *chunk,
            )
            by_place.update({r["place"]: _assistant(r) for r in rows})
        return [by_place.get(place, by_place.get(None)) for place in places]

    async def bindings(self) -> dict[str, str]:
        """Every bound place and its assistant's id."""
        rows = await self._fetch("SELECT place, assistant_id FROM bindings ORDER BY place")
        return {r["place"]: r["assistant_id"] for r in rows}

    # access: a front end's subjects (opaque strings), each allowed or denied
    async def set_rule(self, subject: str, rule: AccessRule) -> None:
        """Allow or deny `subject`, replacing its earlier rule."""
        async with self.dialect.connection() as db:
            await db.execute(
                "INSERT INTO access (subject, rule) VALUES (?, ?) "
                "ON CONFLICT (subject) DO UPDATE SET rule = excluded.rule",
                subject,
                rule,
            )

    async def rules_of(self, subjects: Sequence[str]) -> list[AccessRule | None]:
        """Each subject's rule, None where it has none (subjects asked for at the same
        moment, by any caller, are read together)."""
        return list(await asyncio.gather(*(self._rules.submit(s) for s in subjects)))

    async def _rules_of(self, subjects: list[str]) -> list[AccessRule | Exception | None]:
        wanted = sorted(set(subjects))
        found: dict[str, AccessRule] = {}
        for chunk in in_batches(wanted):
            found.update(await self.rules(chunk))
        return [found.get(subject) for subject in subjects]

    async def rules(self, subjects: Sequence[str] | None = None) -> dict[str, AccessRule]:
        """The rules of `subjects` (of every subject when None), by subject."""
        if subjects is not None and not subjects:
            return {}
        condition = f"WHERE subject IN ({marks(subjects)})" if subjects is not None else ""
        rows = await self._fetch(
            f"SELECT subject, rule FROM access {condition} ORDER BY subject", *(subjects or ())
        )
        return {r["subject"]: r["rule"] for r in rows}

    # threads
    async def add_thread(
        self, thread: ChatCompletionThread, first: NewMessage | None = None
    ) -> ChatCompletionThread:
        """Add a thread, with its first user message in the same transaction (threads added
        at the same moment share one; see `Batcher`).

        Raises NotFound for an unknown assistant, Conflict for a taken external key or id.
        """
        return await self._new_threads.add((thread, first))

    async def _add_threads(self, batch: list[NewThread]) -> list[ChatCompletionThread | Exception]:
        now = utcnow()
        started = [(_started(thread, first, now), first) for thread, first in batch]
        results: list[ChatCompletionThread | Exception] = []
        keyless: list[ChatCompletionThread] = []
        async with self.dialect.transaction() as db:
            known = await self._known_assistants(db, {t.assistant_id for t, _ in started})
            keyed = [t for t, _ in started if t.assistant_id in known and t.external_key]
            inserted = await self._insert_keyed(db, keyed)
            for thread, _ in started:
                if thread.assistant_id not in known:
                    results.append(NotFound(f"no assistant {thread.assistant_id!r}"))
                elif thread.external_key is None:
                    keyless.append(thread)
                    results.append(thread)
                elif thread.id in inserted:
                    results.append(thread)
                else:  # the key (or the id) is taken
                    key = thread.external_key or thread.id
                    results.append(Conflict(f"a thread already exists for {key}"))
            # Fresh random ids: rows without a key go in together (a clash fails the batch,
            # whose threads are then added one at a time: see `Batcher`).
            await db.executemany(ADD_THREAD, map(_thread_values, keyless))
            added = [(t, f) for (t, f), r in zip(started, results, strict=True) if r is t]
            await db.executemany(ADD_MESSAGE, [_first_values(t, f) for t, f in added if f])
            attached = [
                row for t, f in added if f for row in _attachment_values(_first_message(t, f))
            ]
            if attached:
                await db.executemany(ADD_ATTACHMENT, attached)
            if any(t.pending or t.awaiting_place for t, _ in added):
                await self._announce_work(db, "threads")
        if any(t.pending or t.awaiting_place for t, _ in added):
            self.notify_work()
        return results

    @staticmethod
    async def _known_assistants(db: Connection, ids: set[str]) -> set[str]:
        rows = await db.fetch(f"SELECT id FROM assistants WHERE id IN ({marks(list(ids))})", *ids)
        return {row["id"] for row in rows}

    @staticmethod
    async def _insert_keyed(db: Connection, threads: list[ChatCompletionThread]) -> set[str]:
        """Insert threads filed under keys, many rows a statement; the ids of those inserted
        (one whose key or id is taken, even by an earlier row of the same batch, is not)."""
        inserted: set[str] = set()
        for start in range(0, len(threads), KEYED_ROWS):
            chunk = threads[start : start + KEYED_ROWS]
            rows = ", ".join(f"({marks(THREAD_COLUMNS.split(', '))})" for _ in chunk)
            added = await db.fetch(
                f"INSERT INTO threads ({THREAD_COLUMNS}) VALUES {rows} "
                "ON CONFLICT DO NOTHING RETURNING id",
                *(value for thread in chunk for value in _thread_values(thread)),
            )
            inserted.update(row["id"] for row in added)
        return inserted

    @staticmethod
    async def _get_thread(db: Connection, thread_id: str) -> ChatCompletionThread:
        row = await db.fetchrow(f"SELECT {THREAD_COLUMNS} FROM threads WHERE id = ?", thread_id)
        if row is None:
            raise NotFound(f"no thread {thread_id!r}")
        return _parsed(ChatCompletionThread, row)

    async def get_thread(self, thread_id: str) -> ChatCompletionThread:
        """Raises NotFound."""
        async with self.dialect.connection() as db:
            return await self._get_thread(db, thread_id)

    async def find_thread(self, external_key: str) -> ChatCompletionThread | None:
        """The thread a front end filed under `external_key`, if any."""
        return next(iter(await self._threads("WHERE external_key = ?", external_key)), None)

    async def list_threads(self, limit: int = 100) -> list[ChatCompletionThread]:
        """Newest first."""
        return await self._threads("ORDER BY created_at DESC, id DESC LIMIT ?", limit)

    async def threads_active_since(self, moment: datetime) -> list[ChatCompletionThread]:
        """Threads with activity at or after `moment`, most recent first."""
        return await self._threads("WHERE last_activity >= ? ORDER BY last_activity DESC", moment)

    async def threads_asked_by(self, asker: str, limit: int = 5) -> list[Conversation]:
        """The threads in which `asker` asked a question, most recently active first, each
        with its first question."""
        rows = await self._fetch(
            f"SELECT {THREAD_COLUMNS}, (SELECT m.content FROM messages m WHERE m.thread_id = "
            "threads.id AND m.role = 'user' ORDER BY m.id LIMIT 1) AS first_question "
            "FROM threads WHERE id IN (SELECT thread_id FROM messages WHERE asker = ?) "
            "ORDER BY last_activity DESC, id DESC LIMIT ?",
            asker,
            limit,
        )
        return [
            Conversation(
                thread=_parsed(ChatCompletionThread, r), first_question=r["first_question"] or ""
            )
            for r in rows
        ]

    async def thread_models(self) -> dict[str, int]:
        """How many threads each model answers."""
        rows = await self._fetch(
            "SELECT chat_completion_model AS model, count(*) AS threads FROM threads "
            "GROUP BY chat_completion_model"
        )
        return {r["model"]: int(r["threads"]) for r in rows}

    async def move_assistant(
        self, assistant_id: str, model: str, from_model: str | None = None
    ) -> int:
        """Set the assistant's model and its threads' (only those on `from_model`, when
        given) in one transaction; how many threads moved. Raises NotFound."""
        only, args = (" AND chat_completion_model = ?", [from_model]) if from_model else ("", [])
        async with self.dialect.transaction() as db:
            if not await db.execute(
                "UPDATE assistants SET model = ? WHERE id = ?", model, assistant_id
            ):
                raise NotFound(f"no assistant {assistant_id!r}")
            return await db.execute(
                f"UPDATE threads SET chat_completion_model = ? WHERE assistant_id = ?{only}",
                *(model, assistant_id, *args),
            )

    async def _threads(self, condition: str, *args: Any) -> list[ChatCompletionThread]:
        rows = await self._fetch(f"SELECT {THREAD_COLUMNS} FROM threads {condition}", *args)
        return [_parsed(ChatCompletionThread, r) for r in rows]

    # messages
    @staticmethod
    async def _append(db: Connection, thread_id: str, role: Role, new: NewMessage) -> Message:
        """Number the message after the thread's last one and store it."""
        now = utcnow()
        asked = role == "user"
        bump_user = (
            ", last_user_id = message_count + 1, asker = ?, place = coalesce(?, place)"
            if asked
            else ""
        )
        number = await db.fetchval(
            f"UPDATE threads SET message_count = message_count + 1, last_activity = ?{bump_user}"
            " WHERE id = ? RETURNING message_count",
            *(now, *([new.asker, new.place] if asked else []), thread_id),
        )
        if number is None:
            raise NotFound(f"no thread {thread_id!r}")
        message = Message(
            id=number,
            thread_id=thread_id,
            role=role,
            content=new.content,
            created_at=now,
            metadata=new.metadata,
            attachments=new.attachments,
        )
        await db.execute(ADD_MESSAGE, *_message_values(message, new.external_id, new.asker))
        if message.attachments:
            await db.executemany(ADD_ATTACHMENT, _attachment_values(message))
        return message

    async def add_user_message(
        self,
        thread_id: str,
        content: str,
        metadata: dict[str, str] | None = None,
        external_id: str | None = None,
        asker: str | None = None,
        place: str | None = None,
        attachments: list[Attachment] | None = None,
    ) -> tuple[Message, bool]:
        """Append a user message (with the files that came with it); returns it and whether
        it is new.

        A message whose `external_id` (the front end's id for it) the thread already has is
        not added again: the stored one is returned with False.
        """
        async with self.dialect.transaction() as db:
            # The row lock orders appends to one thread across processes, so the look for
            # an already stored external_id below sees every earlier append.
            locked = f"SELECT 1 FROM threads WHERE id = ?{self.dialect.for_update}"
            if await db.fetchval(locked, thread_id) is None:
                raise NotFound(f"no thread {thread_id!r}")
            if external_id is not None:
                seen = await db.fetchrow(SEEN_MESSAGE, thread_id, external_id)
                if seen:
                    return _parsed(Message, seen), False
            new = NewMessage(
                content=content,
                metadata=metadata or {},
                external_id=external_id,
                asker=asker,
                place=place,
                attachments=attachments or [],
            )
            message = await self._append(db, thread_id, "user", new)
            await self._announce_work(db, thread_id)
        self.notify_work()
        return message, True

    async def list_messages(self, thread_id: str) -> list[Message]:
        """Oldest first. Raises NotFound."""
        async with self.dialect.connection() as db:
            await self._get_thread(db, thread_id)
            return (await self._messages_of(db, [thread_id]))[thread_id]

    @staticmethod
    async def _messages_of(db: Connection, thread_ids: list[str]) -> dict[str, list[Message]]:
        found: dict[str, list[Message]] = {thread_id: [] for thread_id in thread_ids}
        for batch in in_batches(thread_ids):
            rows = await db.fetch(
                f"SELECT {MESSAGE_COLUMNS} FROM messages "
                f"WHERE thread_id IN ({marks(batch)}) ORDER BY thread_id, id",
                *batch,
            )
            for row in rows:
                found[row["thread_id"]].append(_parsed(Message, row))
        attached = await _attachments_of(db, thread_ids)
        for message in (m for messages in found.values() for m in messages):
            message.attachments = attached.get((message.thread_id, message.id), [])
        return found

    # the looper's side
    async def claimable(self) -> bool:
        """Whether a thread waits to be claimed: one read, no lock. Most polls find none,
        so the looper asks this before `claim_pending`, which writes."""
        unleased = UNLEASED.format(now=self.dialect.now)
        return bool(await self._fetch(f"SELECT 1 FROM threads WHERE {unleased} LIMIT 1"))

    async def claim_pending(
        self, owner: str, limit: int, lease_seconds: float, per_asker: int = 0
    ) -> list[Claim]:
        """Lease up to `limit` threads with a user message past `settled`, each with its
        messages (oldest first): askers take turns, each asker's oldest first, and with
        `per_asker` no asker has more than that many threads leased at once (threads
        without an asker count as their own askers).

        Threads leased to someone else are skipped until their lease expires.
        """
        d = self.dialect
        unleased = UNLEASED.format(now=d.now)
        turns = (
            "WITH ready AS ("
            f"SELECT id, last_activity, coalesce(asker, id) AS who FROM threads WHERE {unleased}"
            "), busy AS ("
            "SELECT coalesce(asker, id) AS who, count(*) AS leased FROM threads "
            f"WHERE lease_owner IS NOT NULL AND lease_until >= {d.now} GROUP BY 1"
            "), turns AS ("
            "SELECT r.id, r.last_activity, coalesce(b.leased, 0) + row_number() OVER "
            "(PARTITION BY r.who ORDER BY r.last_activity, r.id) AS turn "
            "FROM ready r LEFT JOIN busy b ON b.who = r.who"
            ") SELECT id FROM turns WHERE turn <= ? ORDER BY turn, last_activity LIMIT ?"
        )
        async with d.transaction() as db:
            rows = await db.fetch(
                f"UPDATE threads SET lease_owner = ?, lease_until = {d.now} + ? WHERE id IN ("
                # `unleased` again: a row another looper leased meanwhile is re-checked
                # against it when locked (PostgreSQL), and then skipped.
                f"SELECT id FROM threads WHERE id IN ({turns}) AND {unleased}{d.skip_locked}) "
                f"RETURNING {THREAD_COLUMNS}, lease_until",
                owner,
                lease_seconds,
                per_asker or ANY_NUMBER,
                limit,
            )
            threads = [(_parsed(ChatCompletionThread, r), float(r["lease_until"])) for r in rows]
            messages = await self._messages_of(db, [t.id for t, _ in threads])
        threads.sort(key=lambda pair: pair[0].last_activity or pair[0].created_at)
        return [
            Claim(thread=t, messages=messages[t.id], owner=owner, lease_until=until)
            for t, until in threads
        ]

    async def renew_lease(self, thread_id: str, owner: str, lease_seconds: float) -> bool:
        """Extend the lease; False when it is no longer ours."""
        renew = f"UPDATE threads SET lease_until = {self.dialect.now} + ? {OWNED}"
        async with self.dialect.connection() as db:
            return await db.execute(renew, lease_seconds, thread_id, owner) == 1

    async def release(self, thread_id: str, owner: str) -> None:
        """Hand a thread back untouched (shutdown); its reservation stays for the next looper."""
        await self._release(OWNED, thread_id, owner)

    async def drop_leases(self, owner: str) -> int:
        """Expire every lease of a looper known to be dead."""
        return await self._release("WHERE lease_owner = ?", owner)

    async def _release(self, condition: str, *args: str) -> int:
        async with self.dialect.transaction() as db:
            released = await db.execute(f"UPDATE threads SET {RELEASED} {condition}", *args)
            if released:
                await self._announce_work(db, args[0])
        if released:
            self.notify_work()
        return released

    @staticmethod
    async def _owned(db: Connection, changes: str, *args: Any) -> None:
        """UPDATE the thread with `changes` while it is still leased; the last two `args`
        are the thread id and the owner."""
        sql = f"UPDATE threads SET {changes} {OWNED}"
        if await db.execute(sql, *args) != 1:
            raise lease_lost(args[-2], args[-1])

    async def reserve_reply(self, thread_id: str, owner: str, upto: int, ref: str | None) -> None:
        """Record where the answer up to user message `upto` is being delivered (answers
        starting together record theirs in one transaction). Raises LeaseLost."""
        await self._reservations.add(Reservation(thread_id, owner, upto, ref))

    async def _reserve_replies(self, batch: list[Reservation]) -> list[Exception | None]:
        # Two statements for the whole batch, not one a thread: under a burst each round
        # trip to the database waits behind everything else the event loop has to do.
        async with self.dialect.transaction() as db:
            held = await self._still_held(db, batch)
            await db.executemany(
                "UPDATE threads SET reply_upto = ?, reply_ref = ? WHERE id = ?",
                [(r.upto, r.ref, r.thread_id) for r in held],
            )
        reserved = {id(r) for r in held}
        return [None if id(r) in reserved else lease_lost(r.thread_id, r.owner) for r in batch]

    async def _still_held(self, db: Connection, batch: list[L]) -> list[L]:
        """The items of `batch` whose thread is still leased to their owner, those threads'
        rows locked until the transaction ends (in id order, as every batch locks them).
        Only a thread's first item: a second one for the same thread (two attempts at one
        answer) is refused, as it would be after the first one's transaction."""
        holders: dict[str, str] = {}
        for chunk in in_batches(sorted({item.thread_id for item in batch})):
            rows = await db.fetch(
                f"SELECT id, lease_owner FROM threads WHERE id IN ({marks(chunk)}) "
                f"ORDER BY id{self.dialect.for_update}",
                *chunk,
            )
            holders.update({row["id"]: row["lease_owner"] for row in rows})
        held: dict[str, L] = {}
        for item in batch:
            if holders.get(item.thread_id) == item.owner:
                held.setdefault(item.thread_id, item)
        return list(held.values())

    async def commit_answer(
        self,
        thread_id: str,
        owner: str,
        upto: int,
        content: str,
        metadata: dict[str, str] | None = None,
        usage: UsageRecord | None = None,
    ) -> Message:
        """Store the answer, what it took (`usage`) and advance `hwm` to `upto` together;
        release the lease (answers finishing together are committed in one transaction).

        Raises LeaseLost (and writes nothing) when the lease is no longer ours.
        """
        answer = Answer(thread_id, owner, upto, content, metadata or {}, usage)
        return await self._commits.add(answer)

    async def _commit_answers(self, batch: list[Answer]) -> list[Message | Exception]:
        # A handful of statements for the whole batch, however many answers it holds.
        most = self.dialect.greatest
        settle = f"hwm = {most}(hwm, ?), settled = {most}(settled, ?), last_error = NULL"
        now = utcnow()
        async with self.dialect.transaction() as db:
            held = await self._still_held(db, batch)
            await db.executemany(
                f"UPDATE threads SET {settle}, failure_ref = NULL, reply_upto = NULL, "
                f"reply_ref = NULL, {RELEASED}, message_count = message_count + 1, "
                "last_activity = ? WHERE id = ?",
                [(a.upto, a.upto, now, a.thread_id) for a in held],
            )
            numbers = await self._message_counts(db, [a.thread_id for a in held])
            messages = {id(a): a.message(numbers[a.thread_id], now) for a in held}
            await db.executemany(
                ADD_MESSAGE, [_message_values(m, None, None) for m in messages.values()]
            )
            await db.executemany(ADD_USAGE, [usage_values(a.usage) for a in held if a.usage])
            if held:
                await self._announce_work(db, "answers")
        if held:
            self.notify_work()
        return [messages.get(id(a)) or lease_lost(a.thread_id, a.owner) for a in batch]

    @staticmethod
    async def _message_counts(db: Connection, thread_ids: list[str]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for chunk in in_batches(thread_ids):
            rows = await db.fetch(
                f"SELECT id, message_count FROM threads WHERE id IN ({marks(chunk)})", *chunk
            )
            counts.update({row["id"]: int(row["message_count"]) for row in rows})
        return counts

    async def record_failure(
        self,
        thread_id: str,
        owner: str,
        upto: int,
        error: str,
        shown: str | None = None,
        refusal: UsageRecord | None = None,
    ) -> None:
        """Settle the thread up to `upto` without an answer, keeping `error`, where the
        sink showed it (`shown`, if it did) and the budget's `refusal` (if one refused it);
        release the lease."""
        settle = f"settled = {self.dialect.greatest}(settled, ?), last_error = ?"
        async with self.dialect.transaction() as db:
            await self._owned(
                db,
                f"{settle}, failure_ref = coalesce(?, failure_ref), "
                f"reply_upto = NULL, reply_ref = NULL, {RELEASED}",
                *(upto, error, shown, thread_id, owner),
            )
            await add_usage(db, refusal)
        self.notify_work()

    async def place_thread(
        self, thread_id: str, owner: str, metadata: dict[str, str], external_key: str | None
    ) -> ChatCompletionThread:
        """Record the place the sink gave a thread `awaiting_place` (the lease stays; threads
        placed at the same moment are recorded together).

        Raises LeaseLost when the lease is no longer ours.
        """
        return await self._placements.add(Placement(thread_id, owner, metadata, external_key))

    async def _place_threads(
        self, batch: list[Placement]
    ) -> list[ChatCompletionThread | Exception]:
        placed = "metadata = ?, external_key = ?, awaiting_place = 0, reply_upto = NULL"
        async with self.dialect.transaction() as db:
            held = await self._still_held(db, batch)
            await db.executemany(
                f"UPDATE threads SET {placed}, reply_ref = NULL WHERE id = ?",
                [(json.dumps(p.metadata), p.external_key, p.thread_id) for p in held],
            )
            rows = []
            for chunk in in_batches([p.thread_id for p in held]):
                condition = f"WHERE id IN ({marks(chunk)})"
                rows += await db.fetch(f"SELECT {THREAD_COLUMNS} FROM threads {condition}", *chunk)
        stored = {row["id"]: _parsed(ChatCompletionThread, row) for row in rows}
        kept = {id(p) for p in held}
        return [
            stored[p.thread_id] if id(p) in kept else lease_lost(p.thread_id, p.owner)
            for p in batch
        ]

    async def abandon_place(self, thread_id: str, owner: str, upto: int, error: str) -> None:
        """The sink cannot place the thread anywhere: settle it with `error`, unplaced."""
        settle = f"settled = {self.dialect.greatest}(settled, ?), last_error = ?"
        async with self.dialect.connection() as db:
            await self._owned(
                db,
                f"{settle}, awaiting_place = 0, reply_upto = NULL, reply_ref = NULL, {RELEASED}",
                *(upto, error, thread_id, owner),
            )

    async def retry(self, thread_id: str) -> bool:
        """Make a failed thread pending again; False when no question of it failed."""
        async with self.dialect.transaction() as db:
            reopened = await db.execute(
                "UPDATE threads SET settled = hwm, last_error = NULL "
                "WHERE id = ? AND settled > hwm",
                thread_id,
            )
            if not reopened:
                await self._get_thread(db, thread_id)  # NotFound for an unknown id
                return False
            await self._announce_work(db, thread_id)
        self.notify_work()
        return True

    async def pending_summary(self) -> PendingSummary:
        """How many threads wait for an answer (being answered or not), and when the oldest
        question not answered yet was stored."""
        rows = await self._fetch(
            "SELECT count(asked) AS threads, min(asked) AS oldest_question FROM ("
            "SELECT (SELECT min(m.created_at) FROM messages m WHERE m.thread_id = t.id "
            "AND m.role = 'user' AND m.id > t.settled) AS asked "
            f"FROM threads t WHERE {PENDING}) pending"
        )
        return PendingSummary.model_validate(rows[0])

    async def lease_owners(self) -> list[str]:
        """Owners holding unexpired leases (so a restarted looper can spot dead ones)."""
        rows = await self._fetch(
            "SELECT DISTINCT lease_owner FROM threads "
            f"WHERE lease_owner IS NOT NULL AND lease_until >= {self.dialect.now}"
        )
        return [r["lease_owner"] for r in rows]

    # feedback: one vote per answer and person
    async def record_vote(self, feedback: Feedback) -> None:
        """Store a vote; a person's earlier vote on the same answer is replaced (its comment
        kept only when the vote stays the same)."""
        async with self.dialect.connection() as db:
            await db.execute(
                f"INSERT INTO feedback ({FEEDBACK_COLUMNS}) VALUES ({marks(range(10))}) "
                "ON CONFLICT (thread_id, answers, person) DO UPDATE SET "
                "vote = excluded.vote, updated_at = excluded.updated_at, "
                "assistant_id = excluded.assistant_id, "
                "message_ref = coalesce(excluded.message_ref, feedback.message_ref), "
                "link = coalesce(excluded.link, feedback.link), comment = CASE "
                "WHEN excluded.vote = feedback.vote THEN feedback.comment ELSE NULL END",
                *_feedback_values(feedback),
            )

    async def record_comment(self, thread_id: str, answers: int, person: str, comment: str) -> bool:
        """Add a comment to a person's 👎 on an answer; False when they have none."""
        async with self.dialect.connection() as db:
            changed = await db.execute(
                "UPDATE feedback SET comment = ?, updated_at = ? "
                "WHERE thread_id = ? AND answers = ? AND person = ? AND vote = 'down'",
                *(comment, utcnow(), thread_id, answers, person),
            )
        return changed == 1

    async def votes_since(self, since: datetime) -> dict[str, dict[str, int]]:
        """Votes given or changed at or after `since`: by assistant, the count of each vote."""
        rows = await self._fetch(
            "SELECT assistant_id, vote, count(*) AS votes FROM feedback "
            "WHERE updated_at >= ? GROUP BY assistant_id, vote",
            since,
        )
        counts: dict[str, dict[str, int]] = {}
        for row in rows:
            counts.setdefault(row["assistant_id"], {})[row["vote"]] = int(row["votes"])
        return counts

    async def latest_down(
        self, since: datetime, limit: int, assistant_id: str | None = None
    ) -> list[Feedback]:
        """The newest 👎 at or after `since` (of one assistant, when given), newest first."""
        only, args = (" AND assistant_id = ?", [assistant_id]) if assistant_id else ("", [])
        rows = await self._fetch(
            f"SELECT {FEEDBACK_COLUMNS} FROM feedback "
            f"WHERE vote = 'down' AND updated_at >= ?{only} ORDER BY updated_at DESC LIMIT ?",
            *(since, *args, limit),
        )
        return [Feedback.model_validate(dict(r)) for r in rows]

    # moving a store
    async def export_all(self) -> Snapshot:
        """Everything stored, read in one transaction (leases are not moved)."""
        async with self.dialect.transaction(snapshot=True) as db:
            assistants = await db.fetch(
                f"SELECT {ASSISTANT_COLUMNS} FROM assistants ORDER BY created_at, id"
            )
            bindings = await db.fetch("SELECT place, assistant_id FROM bindings ORDER BY place")
            threads = await db.fetch(
                f"SELECT {THREAD_COLUMNS} FROM threads ORDER BY created_at, id"
            )
            messages = await db.fetch(
                f"SELECT {MESSAGE_COLUMNS} FROM messages ORDER BY thread_id, id"
            )
            rules = await db.fetch("SELECT subject, rule FROM access ORDER BY subject")
            limits = await db.fetch("SELECT name, value FROM limits ORDER BY name")
            usage = await db.fetch(f"SELECT {USAGE_COLUMNS} FROM usage ORDER BY at")
            feedback = await db.fetch(
                f"SELECT {FEEDBACK_COLUMNS} FROM feedback ORDER BY thread_id, answers, person"
            )
            attached = await _attachments_of(db, [r["id"] for r in threads])
            materials = await self._all_materials(db)
        stored = [_parsed(StoredMessage, r) for r in messages]
        for message in stored:
            message.attachments = attached.get((message.thread_id, message.id), [])
        return Snapshot(
            assistants=[_assistant(r) for r in assistants],
            bindings={r["place"]: r["assistant_id"] for r in bindings},
            threads=[_parsed(ChatCompletionThread, r) for r in threads],
            messages=stored,
            access={r["subject"]: r["rule"] for r in rules},
            limits={r["name"]: float(r["value"]) for r in limits},
            usage=[UsageRecord.model_validate(r) for r in usage],
            feedback=[Feedback.model_validate(dict(r)) for r in feedback],
            materials=materials,
        )

    async def import_all(self, snapshot: Snapshot) -> None:
        """Load a snapshot into this store, which must hold no assistants, threads or access
        rules yet; all of it or nothing. Raises Conflict when the store is not empty."""
        async with self.dialect.transaction() as db:
            if self.dialect.lock_for_import:
                await db.execute(self.dialect.lock_for_import)
            if await db.fetchval(
                "SELECT 1 FROM assistants UNION SELECT 1 FROM threads UNION SELECT 1 FROM access"
            ):
                raise Conflict("the target store is not empty: import into a new one")
            await db.executemany(ADD_ASSISTANT, map(_assistant_values, snapshot.assistants))
            await db.executemany(
                "INSERT INTO bindings (place, assistant_id) VALUES (?, ?)",
                snapshot.bindings.items(),
            )
            await db.executemany(ADD_THREAD, map(_thread_values, snapshot.threads))
            await db.executemany(
                ADD_MESSAGE, [_message_values(m, m.external_id, m.asker) for m in snapshot.messages]
            )
            await db.executemany(
                ADD_ATTACHMENT, [row for m in snapshot.messages for row in _attachment_values(m)]
            )
            await db.executemany(
                "INSERT INTO access (subject, rule) VALUES (?, ?)", snapshot.access.items()
            )
            await db.executemany(
                "INSERT INTO limits (name, value) VALUES (?, ?)", snapshot.limits.items()
            )
            await db.executemany(ADD_USAGE, map(usage_values, snapshot.usage))
            await db.executemany(
                f"INSERT INTO feedback ({FEEDBACK_COLUMNS}) VALUES ({marks(range(10))})",
                [_feedback_values(f) for f in snapshot.feedback],
            )
            await self._put_materials(db, snapshot.materials)
            await self._announce_work(db, "import")
        self.notify_work()

    # wake-ups
    async def _announce_work(self, db: Connection, about: str) -> None:
        if self.dialect.announce_work:
            await db.fetch(self.dialect.announce_work, about)

    def notify_work(self) -> None:
        self._work.set()

    async def wait_for_work(self, timeout: float) -> bool:
        """Wait until there is new work, or `timeout`; True when woken."""
        try:
            await asyncio.wait_for(self._work.wait(), timeout)
        except TimeoutError:
            return False
        finally:
            self._work.clear()
        return True
