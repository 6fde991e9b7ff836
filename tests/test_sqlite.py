"""SQLite specifics: the file's settings and the query plan of the looper's poll."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from looper.models import ChatCompletionPhysicsTutor, ChatCompletionThread
from looper.store import StoreError, open_store
from looper.store.sql import PENDING
from looper.store.sqlite import sqlite_path


def test_sqlite_urls() -> None:
    assert sqlite_path("sqlite:///tutor.db") == "tutor.db"
    assert sqlite_path("sqlite:////var/lib/tutor.db") == "/var/lib/tutor.db"
    for in_memory in ("sqlite://", "sqlite:///", "sqlite:///:memory:"):
        with pytest.raises(StoreError, match="names no file"):
            sqlite_path(in_memory)


async def test_wal_and_pending_index(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = await open_store(f"sqlite:///{path}")
    try:
        with sqlite3.connect(path) as db:  # a second reader of the same file
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            plan = db.execute(
                "EXPLAIN QUERY PLAN SELECT id FROM threads WHERE "
                f"{PENDING} AND (lease_until IS NULL OR lease_until < 0) ORDER BY last_activity"
            ).fetchall()
        assert any("threads_pending" in row[3] for row in plan), plan
    finally:
        await store.close()


async def test_a_write_cancelled_while_waiting_for_the_lock_leaves_no_transaction_open(
    tmp_path: Path,
) -> None:
    """A looper cancels an answer (lease lost, shutdown) while another process holds the
    file's write lock: the cancelled write must not leave its BEGIN behind."""
    path = tmp_path / "t.db"
    store = await open_store(f"sqlite:///{path}")
    assistant = await store.add_assistant(ChatCompletionPhysicsTutor())
    thread = await store.add_thread(
        ChatCompletionThread(assistant_id=assistant.id, chat_completion_model="m")
    )
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process writes
        write = asyncio.create_task(store.add_user_message(thread.id, "cancelled"))
        await asyncio.sleep(0)  # the task runs to its first await: BEGIN, queued behind the lock
        write.cancel()
        other.execute("COMMIT")
        with pytest.raises(asyncio.CancelledError):
            await write
        _, added = await store.add_user_message(thread.id, "next")
        assert added and [m.content for m in await store.list_messages(thread.id)] == ["next"]
        other.execute("BEGIN IMMEDIATE")  # nobody holds the write lock any more
        other.execute("COMMIT")
    finally:
        other.close()
        await store.close()
