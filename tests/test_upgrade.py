"""Stores made by the previous tutor open with this one, keep everything, and answer on.

`data/previous_schema.*.sql` were dumped from a SQLite file and a PostgreSQL database that
the code of commit 43bf2b0 (each backend with its own SQL) filled through its own store:
two assistants, a channel binding, a Slack thread with an answer and a pending question
whose reply was reserved, a CLI thread whose question failed, and an empty thread.
`data/previous_export.json` is that code's `tutor export` of the same store.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from fakes.openai_server import API_KEY, FakeOpenAI
from looper.completion import Completer, make_client
from looper.loop import Looper
from looper.store import Store, open_store
from looper.store.migrations import MIGRATIONS
from tests.harness import Cli, RecordingSink, new_store_url

DATA = Path(__file__).parent / "data"
SLACK_THREAD = "thread_slack"
SLACK_KEY = "slack:C0CLASS001:1700000000.000100"
RESERVED = "stream:1700000000.000400"


def previous_store(backend: str, tmp_path: Path) -> str:
    """A fresh database holding what the previous tutor stored; its URL."""
    url = new_store_url(backend, tmp_path)
    script = (DATA / f"previous_schema.{backend}.sql").read_text()
    if backend == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            db.executescript(script)
    else:

        async def load() -> None:
            connection = await asyncpg.connect(url)
            try:
                await connection.execute(script)
            finally:
                await connection.close()

        asyncio.run(load())
    return url


@pytest.fixture(params=["sqlite", "postgres"])
async def previous(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    url = await asyncio.to_thread(previous_store, request.param, tmp_path)
    store = await open_store(url)
    yield store
    await store.close()


async def test_everything_stored_before_is_kept(previous: Store) -> None:
    assert await previous.schema_version() == len(MIGRATIONS)  # upgraded from 2
    assistants = await previous.list_assistants()
    assert [(a.id, a.name, a.model) for a in assistants] == [
        ("asst_physics", "Physics Tutor", None),
        ("asst_poet", "Poet", "gpt-5-nano"),
    ]
    bound = await previous.assistant_for("slack:C0CLASS001")
    unbound = await previous.assistant_for("slack:C0OTHER")
    assert (bound and bound.id, unbound and unbound.id) == ("asst_poet", "asst_physics")

    threads = {t.id: t for t in await previous.list_threads()}
    assert set(threads) == {SLACK_THREAD, "thread_cli", "thread_empty"}
    slack = await previous.find_thread(SLACK_KEY)
    assert slack == threads[SLACK_THREAD]
    assert slack.metadata["slack_thread_ts"] == "1700000000.000100"
    assert (slack.hwm, slack.pending, slack.reply_upto, slack.reply_ref) == (1, True, 3, RESERVED)
    cli = threads["thread_cli"]
    assert cli.failed and cli.last_error and "retired" in cli.last_error

    messages = await previous.list_messages(SLACK_THREAD)
    assert [(m.id, m.role, m.content) for m in messages] == [
        (1, "user", "How did the universe begin?"),
        (2, "assistant", "With a bang, they say."),
        (3, "user", "what models?"),
    ]
    assert messages[1].metadata == {"slack_ts": "1700000000.000200", "answers": "1"}
    again, added = await previous.add_user_message(
        SLACK_THREAD, "what models?", external_id="1700000000.000300"
    )
    assert (again.id, added) == (3, False)  # a Slack message stored before is not asked twice
    assert await previous.retry("thread_cli")


async def test_the_pending_question_is_answered_in_its_reserved_reply(
    previous: Store, fake_openai: FakeOpenAI
) -> None:
    sink = RecordingSink()
    client = make_client(API_KEY, fake_openai.base_url, 10)
    looper = Looper(previous, Completer(client), sink, poll_interval=30)
    assert await looper.tick() == 1
    await sink.wait_for(1)
    await asyncio.gather(*looper.answering)
    await looper.completer.close()

    [job] = sink.opened
    assert (job.thread.id, job.resumed_ref) == (SLACK_THREAD, RESERVED)
    assert fake_openai.requests[0].body["model"] == "gpt-5-nano"
    assert fake_openai.requests[0].body["messages"] == [
        {"role": "system", "content": "You answer in rhyme."},
        {"role": "user", "content": "How did the universe begin?"},
        {"role": "assistant", "content": "With a bang, they say."},
        {"role": "user", "content": "what models?"},
    ]
    answered = await previous.get_thread(SLACK_THREAD)
    assert (answered.hwm, answered.pending, answered.reply_ref) == (3, False, None)
    last = (await previous.list_messages(SLACK_THREAD))[-1]
    assert (last.content, last.metadata["answers"]) == ("An answer to: what models?", "3")


def test_an_export_made_before_keeps_its_slack_threads(cli: Cli, tmp_path: Path) -> None:
    """The previous export has no thread keys (they were derived from Slack metadata)."""
    imported = cli.ok("import", str(DATA / "previous_export.json"))
    assert "imported 3 threads, 4 messages" in imported

    async def find() -> str | None:
        store = await open_store(cli.env["TUTOR_DATABASE_URL"])
        try:
            found = await store.find_thread(SLACK_KEY)
            return found.id if found else None
        finally:
            await store.close()

    assert asyncio.run(find()) == SLACK_THREAD
