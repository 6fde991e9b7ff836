"""Catch-up at start: top-level mentions and DMs sent while no replica was running.

Slack sends nothing to an app with no connection (the fake drops those envelopes too), so
these messages reach the bot only through `users.conversations` and `conversations.history`.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from fakes.openai_server import FakeOpenAI
from fakes.slack_server import BOT_ID, BOT_USER, HISTORY_METHODS, FakeSlack
from looper.models import Snapshot
from tests.harness import Bot, Cli, new_store_url
from tests.slack_user import CLASS, STUDENT, answers, ask, user_turns, wait_answers

DM = "D0DIRECT01"
ELSEWHERE = "C0ELSEWHERE"  # a channel the bot is not a member of
DONE = "catch-up done: conversations started: "


def mention(slack: FakeSlack, channel: str, text: str) -> str:
    return slack.user_says(STUDENT, channel, f"<@{BOT_USER}> {text}")


def stored_questions(cli: Cli, **env: str) -> dict[str, list[str]]:
    """Each stored thread's questions, by the thread's key (`tutor export`)."""
    snapshot = Snapshot.model_validate_json(cli.ok("export", **env))
    keys = {t.id: t.external_key or t.id for t in snapshot.threads}
    questions: dict[str, list[str]] = {key: [] for key in keys.values()}
    for message in snapshot.messages:
        if message.role == "user":
            questions[keys[message.thread_id]].append(message.content)
    return questions


def bot_replies(slack: FakeSlack, channel: str, root: str) -> list[dict[str, object]]:
    return [m for m in slack.replies(channel, root) if m.get("bot_id") == BOT_ID]


def test_a_mention_and_a_dm_sent_while_down_are_answered_once(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    fake_slack.without_bot.add(ELSEWHERE)
    asked = mention(fake_slack, CLASS, "what is a photon?")
    fake_slack.user_says(STUDENT, CLASS, "chatter, not for the bot")
    dm = fake_slack.user_says(STUDENT, DM, "hello tutor")
    outside = mention(fake_slack, ELSEWHERE, "anyone here?")
    dropped = fake_slack.wait_until(
        lambda: len(fake_slack.undelivered) == 4 and fake_slack.undelivered
    )

    bot.start()
    assert DONE + "2," in bot.wait_line(DONE)
    [answer] = wait_answers(fake_slack, CLASS, asked, 1)
    assert answer["text"] == "An answer to: what is a photon?"
    [answer] = wait_answers(fake_slack, DM, dm, 1)
    assert answer["text"] == "An answer to: hello tutor"
    assert stored_questions(bot.cli) == {
        f"slack:{CLASS}:{asked}": ["what is a photon?"],
        f"slack:{DM}:{dm}": ["hello tutor"],
    }
    assert len(bot_replies(fake_slack, CLASS, asked)) == len(bot_replies(fake_slack, DM, dm)) == 1
    assert all(fake_slack.envelopes[e].acked_at is None for e in dropped)  # never sent later
    read = {c.args["channel"] for c in fake_slack.calls_of("conversations.history")}
    assert read == {CLASS, DM}
    assert fake_slack.replies(ELSEWHERE, outside) == []
    assert sorted(user_turns(r.body)[-1] for r in fake_openai.requests) == [
        "hello tutor",
        "what is a photon?",
    ]


def test_a_mention_older_than_the_window_is_not_answered(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    old = fake_slack.said_earlier(STUDENT, CLASS, f"<@{BOT_USER}> an old one", 2 * 3600)
    recent = mention(fake_slack, CLASS, "a recent one")
    bot.start(TUTOR_CATCHUP_HOURS="1")
    assert DONE + "1," in bot.wait_line(DONE)
    wait_answers(fake_slack, CLASS, recent, 1)
    assert fake_slack.replies(CLASS, old) == []
    assert [user_turns(r.body) for r in fake_openai.requests] == [["a recent one"]]


def test_replies_under_a_missed_mention_are_asked_in_its_conversation(
    bot: Bot, fake_slack: FakeSlack
) -> None:
    asked = mention(fake_slack, CLASS, "what is a photon?")
    fake_slack.user_says("U0STUDENT2", CLASS, "and its mass?", thread_ts=asked)
    bot.start()
    assert DONE + "1," in bot.wait_line(DONE)
    assert stored_questions(bot.cli) == {
        f"slack:{CLASS}:{asked}": ["what is a photon?", "and its mass?"]
    }
    wait_answers(fake_slack, CLASS, asked, 1)


@pytest.mark.parametrize("known_to", ["the store", "Slack only"])
def test_an_answered_message_is_not_answered_again(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path: Path, known_to: str
) -> None:
    """The store's thread is the authority (here its answer is gone from Slack); with a new,
    empty store, the bot among the repliers Slack lists keeps it from answering twice."""
    bot.start()
    asked = mention(fake_slack, CLASS, "what is a photon?")
    dm = fake_slack.user_says(STUDENT, DM, "hello tutor")
    posted = [wait_answers(fake_slack, CLASS, asked, 1)[0], wait_answers(fake_slack, DM, dm, 1)[0]]
    assert bot.stop() == 0
    fake_slack.wait_disconnected()
    env = {}
    if known_to == "the store":
        fake_slack.delete(CLASS, posted[0]["ts"])
        fake_slack.delete(DM, posted[1]["ts"])
    else:
        env["TUTOR_DATABASE_URL"] = f"sqlite:///{tmp_path / 'empty.db'}"
    statuses = len(fake_slack.statuses)

    bot.start(**env)
    assert DONE + "0," in bot.wait_line(DONE)
    assert len(fake_openai.requests) == 2
    assert len(fake_slack.statuses) == statuses  # no "is thinking…" shown again
    assert len(answers(fake_slack, CLASS, asked)) + len(answers(fake_slack, DM, dm)) == (
        0 if known_to == "the store" else 2
    )


def test_two_replicas_starting_together_answer_each_once(
    bot_env: Cli, fake_slack: FakeSlack, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    url = new_store_url("postgres", tmp_path)
    questions = {
        CLASS: "question in the class",
        "C0CLASS002": "question in the other class",
        DM: "question in a DM",
        "D0DIRECT02": "question in another DM",
    }
    asked = {
        channel: fake_slack.user_says(
            STUDENT, channel, question if channel.startswith("D") else f"<@{BOT_USER}> {question}"
        )
        for channel, question in questions.items()
    }
    bots = [Bot(bot_env, fake_slack).launch(TUTOR_DATABASE_URL=url) for _ in range(2)]
    try:
        for replica in bots:
            replica.wait_line(DONE)
        for channel, root in asked.items():
            wait_answers(fake_slack, channel, root, 1)
    finally:
        for replica in bots:
            replica.stop()
    assert stored_questions(bot_env, TUTOR_DATABASE_URL=url) == {
        f"slack:{channel}:{asked[channel]}": [question] for channel, question in questions.items()
    }
    for channel, root in asked.items():
        assert len(bot_replies(fake_slack, channel, root)) == 1
    assert len(fake_openai.requests) == 4


def test_history_reads_stay_within_the_history_rate(bot: Bot, fake_slack: FakeSlack) -> None:
    """At a rate below Tier 3 (Slack's restricted limit), `conversations.history` and
    `conversations.replies` calls are spaced to it and ask for 15 messages at most."""
    per_minute = 20
    bot.start()
    known = [ask(fake_slack, "first question"), ask(fake_slack, "second question")]
    for root in known:
        wait_answers(fake_slack, CLASS, root, 1)
    assert bot.stop() == 0
    fake_slack.wait_disconnected()
    asked = mention(fake_slack, "C0CLASS002", "is the mention on the second page?")
    for n in range(16):
        fake_slack.user_says(STUDENT, "C0CLASS002", f"chatter {n}")
    dm = fake_slack.user_says(STUDENT, DM, "hello tutor")
    fake_slack.history_per_minute = per_minute
    before = len(fake_slack.calls)

    bot.start(TUTOR_HISTORY_PER_MINUTE=str(per_minute))
    assert DONE + "2," in bot.wait_line(DONE)
    wait_answers(fake_slack, "C0CLASS002", asked, 1)
    wait_answers(fake_slack, DM, dm, 1)
    reads = {m: [c for c in fake_slack.calls[before:] if c.method == m] for m in HISTORY_METHODS}
    read = [c.args["channel"] for c in reads["conversations.history"]]
    assert read == [CLASS, "C0CLASS002", "C0CLASS002", DM]
    assert len(reads["conversations.replies"]) == 2  # the two known threads
    for calls in reads.values():
        assert [c.status for c in calls] == [200] * len(calls)  # no 429
        assert all(b.at - a.at >= 60 / per_minute for a, b in itertools.pairwise(calls))
        assert all(int(c.args["limit"]) <= 15 for c in calls)
