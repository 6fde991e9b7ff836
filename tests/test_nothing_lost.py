"""Nothing acknowledged is lost: /tutor ask is stored before it is acknowledged and its root
message is posted exactly once, whenever the bot dies; an answer outlives the streams Slack
ends. `tutor run` as a real process against the fake Slack and the fake OpenAI."""

from __future__ import annotations

from typing import Any

from bot.formatting import NOT_IN_CHANNEL
from fakes.openai_server import FakeOpenAI
from fakes.slack_server import BOT_ID, FakeSlack
from tests.harness import Bot
from tests.slack_user import CLASS, STUDENT, answers, ask, is_root, user_turns, wait_answers

QUESTION = "How did the universe begin?"


def roots(slack: FakeSlack, channel: str = CLASS) -> list[dict[str, Any]]:
    return [m for m in slack.messages(channel) if is_root(m)]


def slash_ask(slack: FakeSlack, question: str = QUESTION, channel: str = CLASS) -> None:
    """/tutor ask, acknowledged (once stored) with nothing to say."""
    assert slack.wait_ack(slack.slash(STUDENT, channel, f"ask {question}")) == {}


def test_killed_before_the_root_is_posted(bot: Bot, fake_slack: FakeSlack) -> None:
    """Acknowledged, then killed while Slack's posting budget holds the root back: the
    restarted bot posts it once and answers under it."""
    bot.start()
    fake_slack.fail_next("chat.postMessage", 429, retry_after=60)
    slash_ask(fake_slack)
    fake_slack.wait_until(lambda: fake_slack.calls_of("chat.postMessage"))
    bot.kill()
    assert not roots(fake_slack)
    bot.start()
    [root] = fake_slack.wait_until(lambda: roots(fake_slack))
    [answer] = wait_answers(fake_slack, CLASS, root["ts"], 1)
    assert root["text"] == f"<@{STUDENT}> asked *Physics Tutor*: {QUESTION}"
    assert answer["text"] == f"An answer to: {QUESTION}"
    assert bot.stop() == 0 and len(roots(fake_slack)) == 1


def test_killed_after_the_root_is_posted(bot: Bot, fake_slack: FakeSlack) -> None:
    """Killed after Slack posted the root but before the bot heard back: the restarted bot
    finds that root by its metadata instead of posting a second one."""
    bot.start()
    fake_slack.lose_answer("chat.postMessage", is_root)
    slash_ask(fake_slack)
    fake_slack.wait_until(lambda: any(c.lost for c in fake_slack.calls_of("chat.postMessage")))
    bot.kill()
    bot.start()
    [root] = roots(fake_slack)
    wait_answers(fake_slack, CLASS, root["ts"], 1)
    assert bot.stop() == 0
    assert len(roots(fake_slack)) == 1 and fake_slack.calls_of("conversations.history")


def test_a_reply_before_the_root_is_recorded_is_asked(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    """Someone replies under a root the bot has posted but not yet recorded (here it never
    hears back, and dies): the reply is found to belong to that conversation by the root's
    metadata, stored (its event acknowledged), and answered with the question after restart."""
    bot.start()
    fake_slack.lose_answer("chat.postMessage", is_root)
    slash_ask(fake_slack)
    [root] = fake_slack.wait_until(lambda: roots(fake_slack))
    fake_slack.user_says(STUDENT, CLASS, "and before that?", thread_ts=root["ts"])
    fake_slack.wait_events_acked()  # the reply stored (its root's echo may come after it)
    bot.kill()
    bot.start()
    [answer] = wait_answers(fake_slack, CLASS, root["ts"], 1)
    assert bot.stop() == 0
    assert user_turns(fake_openai.requests[-1].body) == [QUESTION, "and before that?"]
    assert answer["metadata"]["event_payload"]["answers"] == "2" and len(roots(fake_slack)) == 1


def test_a_root_posted_by_another_app_names_no_thread(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    """Another app posts a message carrying tutor's root metadata for a real thread: a reply
    under it is not asked into that thread."""
    bot.start()
    root = ask(fake_slack, QUESTION)
    wait_answers(fake_slack, CLASS, root, 1)
    [mine] = roots(fake_slack)
    forged = fake_slack.user_says("U0OTHERBOT", CLASS, "a look-alike", bot_id="B0OTHER")
    fake_slack.alter_message(CLASS, forged, metadata=mine["metadata"])
    fake_slack.user_says(STUDENT, CLASS, "injected?", thread_ts=forged)
    fake_slack.wait_events_acked()
    assert bot.stop() == 0
    assert [user_turns(r.body) for r in fake_openai.requests] == [[QUESTION]]
    assert "injected?" not in bot.cli.ok("messages")


def test_a_channel_the_bot_is_not_in_is_told_once(bot: Bot, fake_slack: FakeSlack) -> None:
    """Slack refuses the root post: the asker hears why, only them, and the question is not
    tried again and again; the next ask, once the bot is invited, is answered."""
    bot.start()
    fake_slack.fail_next("chat.postMessage", status=200, error="not_in_channel")
    slash_ask(fake_slack, "first?")
    told = fake_slack.wait_until(lambda: fake_slack.responses)
    assert [(r["text"], r["response_type"]) for r in told] == [(NOT_IN_CHANNEL, "ephemeral")]
    slash_ask(fake_slack, "second?")
    [root] = fake_slack.wait_until(lambda: roots(fake_slack))
    wait_answers(fake_slack, CLASS, root["ts"], 1)
    assert bot.stop() == 0
    assert [r["text"] for r in roots(fake_slack)] == [
        f"<@{STUDENT}> asked *Physics Tutor*: second?"
    ]
    assert len(fake_slack.calls_of("chat.postMessage")) == 2  # the refused root, this one


def whole_answer(slack: FakeSlack, root: str, length: int = 4000) -> str | None:
    """The answer's parts joined, once every message of the thread is a finished part and
    they hold `length` characters."""
    replies = [m for m in slack.replies(CLASS, root) if m.get("bot_id") == BOT_ID]
    parts = answers(slack, CLASS, root)
    if not parts or len(parts) != len(replies) or any(m.get("broken") for m in replies):
        return None
    numbers = [m["metadata"]["event_payload"].get("part", 1) for m in parts]
    text = "".join(m["text"] for m in parts)
    return text if numbers == list(range(1, len(parts) + 1)) and len(text) == length else None


def slow_long_answers(fake_openai: FakeOpenAI) -> None:
    fake_openai.chunks = 80
    fake_openai.chunk_delay = 0.1  # 8 s of streaming
    fake_openai.answer_chars = 4000


def test_streams_that_slack_ends_go_on_without_loss(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    """Slack ends every stream after 2 s while the model writes for 8 s: what each stream
    showed stays, the rest continues in new streams and then in posted replies; the thread
    holds the whole answer once, and no message stays broken."""
    slow_long_answers(fake_openai)
    fake_slack.stream_lifetime = 2
    bot.start()
    slash_ask(fake_slack)
    [root] = fake_slack.wait_until(lambda: roots(fake_slack))
    shown = fake_slack.wait_until(lambda: whole_answer(fake_slack, root["ts"]), timeout=30)
    assert bot.stop() == 0
    stored = bot.cli.ok("messages").split("assistant: ", 1)[1].rstrip("\n")
    assert shown == stored and len(stored) == 4000
    assert len(fake_slack.calls_of("chat.startStream")) == 3
    assert len(answers(fake_slack, CLASS, root["ts"])) >= 4  # three streams, then posts


def test_killed_while_moving_to_a_new_stream(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    """Killed after Slack ended the first stream and a second one began, before the bot
    recorded it: the restarted bot finds both messages and writes the new answer into them."""
    slow_long_answers(fake_openai)
    fake_slack.stream_lifetime = 2
    bot.start()
    fake_slack.lose_answer(
        "chat.startStream", lambda args: len(fake_slack.calls_of("chat.startStream")) == 2
    )
    slash_ask(fake_slack)
    fake_slack.wait_until(lambda: any(c.lost for c in fake_slack.calls_of("chat.startStream")))
    bot.kill()
    fake_slack.stream_lifetime = None
    fake_openai.chunk_delay = 0
    bot.start()
    [root] = roots(fake_slack)
    shown = fake_slack.wait_until(lambda: whole_answer(fake_slack, root["ts"]), timeout=30)
    assert bot.stop() == 0
    stored = bot.cli.ok("messages").split("assistant: ", 1)[1].rstrip("\n")
    assert shown == stored and len(stored) == 4000
    assert not any(m.get("streaming") for m in fake_slack.messages(CLASS))
