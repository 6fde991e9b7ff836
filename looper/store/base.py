"""The store interface every backend implements, and its errors."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime
from typing import Any

from looper.models import (
    BaseAssistant,
    ChatCompletionThread,
    Claim,
    Message,
    NewMessage,
    Snapshot,
    StoredMessage,
)

# Facts of the schema both backends share.
THREAD_COLUMNS = (
    "id, assistant_id, chat_completion_model, metadata, created_at, last_activity, "
    "message_count, last_user_id, hwm, settled, last_error, reply_upto, reply_ref"
)
MESSAGE_COLUMNS = "thread_id, id, role, content, metadata, external_id, created_at"
MESSAGE_FIELDS = "thread_id, id, role, content, metadata, created_at"  # a Message's
# Spelled exactly as in the partial index `threads_pending`, or the index is not used.
PENDING = "last_user_id > settled"
# The assistant bound to a place, else the oldest one (both backends speak this SQL).
ASSISTANT_FOR = (
    "SELECT a.* FROM assistants a LEFT JOIN bindings b ON b.assistant_id = a.id AND b.place = ? "
    "ORDER BY (b.place IS NULL), a.created_at, a.id LIMIT 1"
)


def thread_row(
    thread: ChatCompletionThread, json_value: Callable[[Any], Any], time_value: Callable[[Any], Any]
) -> tuple[Any, ...]:
    """A thread's values in THREAD_COLUMNS order, then external_key; `json_value` and
    `time_value` turn metadata and times into what the backend's driver takes."""
    return (
        thread.id,
        thread.assistant_id,
        thread.chat_completion_model,
        json_value(thread.metadata),
        time_value(thread.created_at),
        time_value(thread.last_activity or thread.created_at),
        thread.message_count,
        thread.last_user_id,
        thread.hwm,
        thread.settled,
        thread.last_error,
        thread.reply_upto,
        thread.reply_ref,
        thread.external_key,
    )


def message_row(
    message: StoredMessage, json_value: Callable[[Any], Any], time_value: Callable[[Any], Any]
) -> tuple[Any, ...]:
    """A message's values in MESSAGE_COLUMNS order."""
    return (
        message.thread_id,
        message.id,
        message.role,
        message.content,
        json_value(message.metadata),
        message.external_id,
        time_value(message.created_at),
    )


class StoreError(Exception):
    """A store problem worth one clear line to the user."""


class NotFound(StoreError):
    """No assistant or thread with that id."""


class Conflict(StoreError):
    """The change would break a uniqueness rule (e.g. a second thread for one Slack thread)."""


class LeaseLost(StoreError):
    """Another looper took over the thread; this one must not write its answer."""


class SchemaTooNew(StoreError):
    """The database was migrated by a newer tutor than this one."""


class Store(ABC):
    """Async storage for assistants, threads and messages.

    Every method that changes several rows does so in one transaction. Writes made through
    this object wake `wait_for_work` at once; other processes' writes are seen by polling.
    """

    def __init__(self) -> None:
        self._work = asyncio.Event()

    # lifecycle
    @abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema up to date."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def schema_version(self) -> int: ...

    # assistants
    @abstractmethod
    async def add_assistant(self, assistant: BaseAssistant) -> BaseAssistant: ...

    @abstractmethod
    async def get_assistant(self, assistant_id: str) -> BaseAssistant:
        """Raises NotFound."""

    @abstractmethod
    async def list_assistants(self) -> list[BaseAssistant]:
        """Oldest first."""

    # channel bindings: which assistant answers in a place (e.g. a Slack channel)
    @abstractmethod
    async def bind(self, place: str, assistant_id: str) -> None:
        """Raises NotFound for an unknown assistant."""

    @abstractmethod
    async def assistant_for(self, place: str) -> BaseAssistant | None:
        """The assistant bound to `place`, else the oldest one; None when there is none."""

    # threads
    @abstractmethod
    async def add_thread(
        self, thread: ChatCompletionThread, first: NewMessage | None = None
    ) -> ChatCompletionThread:
        """Add a thread, with its first user message in the same transaction.

        Raises NotFound for an unknown assistant, Conflict for a taken external key.
        """

    @abstractmethod
    async def get_thread(self, thread_id: str) -> ChatCompletionThread:
        """Raises NotFound."""

    @abstractmethod
    async def find_thread(self, external_key: str) -> ChatCompletionThread | None: ...

    @abstractmethod
    async def list_threads(self, limit: int = 100) -> list[ChatCompletionThread]:
        """Newest first."""

    @abstractmethod
    async def threads_active_since(self, moment: datetime) -> list[ChatCompletionThread]:
        """Threads with activity at or after `moment`, most recent first."""

    # messages
    @abstractmethod
    async def add_user_message(
        self,
        thread_id: str,
        content: str,
        metadata: dict[str, str] | None = None,
        external_id: str | None = None,
    ) -> tuple[Message, bool]:
        """Append a user message; returns it and whether it is new.

        A message whose `external_id` (e.g. a Slack ts) the thread already has is not added
        again: the stored one is returned with False.
        """

    @abstractmethod
    async def list_messages(self, thread_id: str) -> list[Message]:
        """Oldest first. Raises NotFound."""

    # the looper's side
    @abstractmethod
    async def claim_pending(self, owner: str, limit: int, lease_seconds: float) -> list[Claim]:
        """Lease up to `limit` threads with a user message past `settled`, oldest activity first,
        each with its messages (oldest first).

        Threads leased to someone else are skipped until their lease expires.
        """

    @abstractmethod
    async def renew_lease(self, thread_id: str, owner: str, lease_seconds: float) -> bool:
        """Extend the lease; False when it is no longer ours."""

    @abstractmethod
    async def release(self, thread_id: str, owner: str) -> None:
        """Hand a thread back untouched (shutdown); its reservation stays for the next looper."""

    @abstractmethod
    async def reserve_reply(self, thread_id: str, owner: str, upto: int, ref: str | None) -> None:
        """Record where the answer up to user message `upto` is being delivered."""

    @abstractmethod
    async def commit_answer(
        self,
        thread_id: str,
        owner: str,
        upto: int,
        content: str,
        metadata: dict[str, str] | None = None,
    ) -> Message:
        """Store the answer and advance `hwm` to `upto` together; release the lease.

        Raises LeaseLost (and writes nothing) when the lease is no longer ours.
        """

    @abstractmethod
    async def record_failure(self, thread_id: str, owner: str, upto: int, error: str) -> None:
        """Settle the thread up to `upto` without an answer, keeping `error`; release the lease."""

    @abstractmethod
    async def retry(self, thread_id: str) -> bool:
        """Make a failed thread pending again; False when no question of it failed."""

    @abstractmethod
    async def lease_owners(self) -> list[str]:
        """Owners holding unexpired leases (so a restarted looper can spot dead ones)."""

    @abstractmethod
    async def drop_leases(self, owner: str) -> int:
        """Expire every lease of a looper known to be dead."""

    # moving a store
    @abstractmethod
    async def export_all(self) -> Snapshot:
        """Everything stored, read in one transaction."""

    @abstractmethod
    async def import_all(self, snapshot: Snapshot) -> None:
        """Load a snapshot into this store, which must hold no assistants or threads yet;
        all of it or nothing, in one transaction. Raises Conflict when the store is not empty."""

    # wake-ups
    def notify_work(self) -> None:
        self._work.set()

    async def wait_for_work(self, timeout: float) -> bool:
        """Wait until this process adds work, or `timeout`; True when woken."""
        try:
            await asyncio.wait_for(self._work.wait(), timeout)
        except TimeoutError:
            return False
        finally:
            self._work.clear()
        return True
