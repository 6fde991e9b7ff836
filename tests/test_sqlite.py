"""SQLite specifics: the file's settings and the query plan of the looper's poll."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from looper.store import open_store
from looper.store.sql import PENDING
from looper.store.sqlite import sqlite_path


def test_sqlite_urls() -> None:
    assert sqlite_path("sqlite:///tutor.db") == "tutor.db"
    assert sqlite_path("sqlite:////var/lib/tutor.db") == "/var/lib/tutor.db"
    assert sqlite_path("sqlite://") == ":memory:"


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
