"""Several `tutor run` replicas on one PostgreSQL database and one Slack app.

The fake Slack hands each Socket Mode envelope to one connected replica at random and sends
unacknowledged events again after 3 s, as Slack does.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg

from fakes.openai_server import FakeOpenAI
from fakes.slack_server import BOT_ID, FakeSlack
from tests.harness import Bot, Cli, new_store_url
from tests.slack_user import STUDENT, answers, is_root

LEASE = "2"


def query(url: str, sql: str) -> list[Any]:
    """Rows of one query on the replicas' database (from a test, not through tutor)."""

    async def fetch() -> list[Any]:
        connection = await asyncpg.connect(url)
        try:
            return list(await connection.fetch(sql))
        finally:
            await connection.close()

    with ThreadPoolExecutor(1) as worker:
        return worker.submit(asyncio.run, fetch()).result()


def replicas(cli: Cli, slack: FakeSlack, url: str, count: int) -> list[Bot]:
    return [
        Bot(cli, slack).start(TUTOR_DATABASE_URL=url, TUTOR_LEASE_SECONDS=LEASE)
        for _ in range(count)
    ]


def wait_quiet(url: str, questions: int, timeout: float = 90) -> None:
    """Wait until the store holds `questions` questions and every one is answered and
    committed; re-checked at each NOTIFY the replicas send, not by sleeping."""

    async def watch() -> None:
        connection = await asyncpg.connect(url)
        changed = asyncio.Event()
        await connection.add_listener("tutor_work", lambda *_: changed.set())
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed.clear()
                    row = await connection.fetchrow(QUIET)
                    if row["questions"] == questions and row["open"] == 0:
                        return
                    await changed.wait()
        finally:
            await connection.close()

    with ThreadPoolExecutor(1) as worker:
        worker.submit(asyncio.run, watch()).result()


QUIET = """SELECT
    (SELECT count(*) FROM messages WHERE role = 'user') AS questions,
    (SELECT count(*) FROM threads WHERE last_user_id > hwm OR reply_ref IS NOT NULL) AS open"""


def test_three_replicas_answer_every_question_once_in_order_when_one_dies(
    bot_env: Cli, fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    url = new_store_url("postgres", tmp_path)
    fake_openai.chunks = 8
    fake_openai.chunk_delay = 0.05
    bots = replicas(bot_env, fake_slack, url, 3)
    channels = [f"C0THREAD{i:02d}" for i in range(50)]
    try:
        for channel in channels:
            fake_slack.slash(STUDENT, channel, f"ask question 1 in {channel}")
        wait_quiet(url, 50)
        roots = {c: fake_slack.messages(c)[0]["ts"] for c in channels}
        for number in (2, 3, 4):  # 150 replies; one replica dies half-way through
            for index, channel in enumerate(channels):
                text = f"question {number} in {channel}"
                fake_slack.user_says(STUDENT, channel, text, thread_ts=roots[channel])
                if (number, index) == (3, 25):
                    bots[0].kill()
            wait_quiet(url, 50 * number)
    finally:
        for bot in bots:
            if bot.process and bot.process.poll() is None:
                bot.stop()

    stored = query(url, "SELECT thread_id, id, role, content, metadata FROM messages ORDER BY id")
    for channel in channels:
        root = roots[channel]
        [thread_id] = {
            m["metadata"]["event_payload"]["thread_id"] for m in fake_slack.messages(channel)[:1]
        }
        mine = [r for r in stored if r["thread_id"] == thread_id]
        questions = [r["content"] for r in mine if r["role"] == "user"]
        assert questions == [f"question {n} in {channel}" for n in (1, 2, 3, 4)]  # each once
        covered = [json.loads(r["metadata"])["answers"] for r in mine if r["role"] == "assistant"]
        assert covered == sorted(covered, key=int) and len(set(covered)) == len(covered)
        last_question = max(r["id"] for r in mine if r["role"] == "user")
        assert int(covered[-1]) == last_question  # every question covered by one answer
        posted = [m for m in fake_slack.replies(channel, root) if m.get("bot_id") == BOT_ID]
        assert posted == answers(fake_slack, channel, root)  # no strays, nothing streaming
        assert [m["metadata"]["event_payload"]["answers"] for m in posted] == covered


def test_fifty_asks_in_one_channel_survive_a_killed_replica(
    bot_env: Cli, fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    """50 /tutor ask at once in one channel, Slack's tiers enforced (its per-channel posting
    limit raised tenfold, for both, to keep the test short; the replicas' bursts together
    can draw a 429, which is waited out), one of three replicas SIGKILLed after 4 s with
    acknowledged asks whose roots it had not posted; then 3 follow-ups per thread: every
    ask has one root and four answers in order."""
    url = new_store_url("postgres", tmp_path)
    fake_slack.enforce_tiers = True
    fake_slack.posts_per_second = 10
    fake_openai.chunks = 8
    fake_openai.chunk_delay = 0.05
    bots = [
        Bot(bot_env, fake_slack).start(
            TUTOR_DATABASE_URL=url,
            TUTOR_LEASE_SECONDS=LEASE,
            TUTOR_REPLICAS="3",
            TUTOR_POSTS_PER_SECOND="10",
        )
        for _ in range(3)
    ]
    try:
        asked = [
            fake_slack.slash(STUDENT, ONE_CHANNEL, f"ask question 1 of {n}") for n in range(50)
        ]
        started = time.monotonic()
        for envelope_id in asked:
            assert fake_slack.wait_ack(envelope_id) == {}  # acknowledged: stored
        fake_slack.wait_until(lambda: time.monotonic() - started > 4 or None, timeout=10)
        bots[0].kill()
        wait_quiet(url, 50)
        posted = [m for m in fake_slack.messages(ONE_CHANNEL) if root_of(m) is not None]
        roots = {n: m["ts"] for m in posted if (n := root_of(m)) is not None}
        assert len(roots) == len(posted) == 50  # one root for each ask
        for number in (2, 3, 4):
            for n in range(50):
                text = f"question {number} of {n}"
                fake_slack.user_says(STUDENT, ONE_CHANNEL, text, thread_ts=roots[n])
            wait_quiet(url, 50 * number)
    finally:
        for bot in bots:
            if bot.process and bot.process.poll() is None:
                bot.stop()
    for n, root in roots.items():
        texts = [m["text"] for m in answers(fake_slack, ONE_CHANNEL, root)]
        assert texts == [f"An answer to: question {q} of {n}" for q in (1, 2, 3, 4)]
        posted = [m for m in fake_slack.replies(ONE_CHANNEL, root) if m.get("bot_id") == BOT_ID]
        assert len(posted) == 4


ONE_CHANNEL = "C0CROWDED1"


def root_of(message: dict[str, Any]) -> int | None:
    """Which of the 50 asks a root message is for."""
    if not is_root(message):
        return None
    return int(message["text"].rsplit(" of ", 1)[1])


def test_lease_of_a_dead_replica_is_finished_by_another_in_the_same_message(
    bot_env: Cli, fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    url = new_store_url("postgres", tmp_path)
    fake_openai.chunks = 40
    fake_openai.chunk_delay = 0.1
    fake_openai.answer_chars = 2000
    bots = replicas(bot_env, fake_slack, url, 2)
    try:
        fake_slack.slash(STUDENT, "C0LEASE001", "ask How did the universe begin?")
        fake_slack.wait_until(lambda: fake_slack.calls_of("chat.appendStream"))  # text shows
        [stream] = [m for m in fake_slack.messages("C0LEASE001") if m.get("streaming")]
        [(owner,)] = query(url, "SELECT lease_owner FROM threads WHERE lease_owner IS NOT NULL")
        pid = int(owner.split("/")[1])
        [holder] = [b for b in bots if b.process and b.process.pid == pid]
        holder.kill()
        fake_openai.chunk_delay = 0
        root = stream["thread_ts"]
        fake_slack.wait_until(lambda: answers(fake_slack, "C0LEASE001", root), 30)
    finally:
        for bot in bots:
            if bot.process and bot.process.poll() is None:
                bot.stop()
    [answer] = answers(fake_slack, "C0LEASE001", root)
    assert answer["ts"] == stream["ts"]  # completed in place, not posted again
    assert len(answer["text"]) == 2000
    bot_replies = [m for m in fake_slack.replies("C0LEASE001", root) if m.get("bot_id")]
    assert len(bot_replies) == 1
