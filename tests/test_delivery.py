"""Each way an answer reaches Slack, interrupted and resumed: `tutor run` as a real process
against the fake Slack and the fake OpenAI. (A native stream killed mid-way is in
test_bot.py.)"""

from __future__ import annotations

from typing import Any

from fakes.openai_server import FakeOpenAI, Fault
from fakes.slack_server import BOT_ID, FakeSlack
from tests.harness import Bot
from tests.slack_user import CLASS, answers, ask, wait_answers

QUESTION = "How did the universe begin?"


def part_of(args: dict[str, Any]) -> int | None:
    """Which part of an answer a chat.* call writes (None: not an answer)."""
    metadata = args.get("metadata") or {}
    if metadata.get("event_type") != "tutor_answer":
        return None
    return int(metadata["event_payload"].get("part", 1))


def bot_replies(slack: FakeSlack, root: str) -> list[dict[str, Any]]:
    return [m for m in slack.replies(CLASS, root) if m.get("bot_id") == BOT_ID]


def refuse_streaming(slack: FakeSlack) -> None:
    slack.fail_next("chat.startStream", status=200, error="channel_type_not_supported")


def test_posted_answer_is_found_and_replaced_after_a_crash(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    """Post mode: killed after posting the three parts of an answer (the third one's answer
    lost on the wire, so nothing was committed), the restarted bot finds the parts by their
    metadata and writes the new answer into them; a part it no longer needs is deleted."""
    fake_openai.answer_chars = 30_000
    bot.start()
    refuse_streaming(fake_slack)
    fake_slack.lose_answer("chat.postMessage", lambda args: part_of(args) == 3)
    root = ask(fake_slack, QUESTION)
    fake_slack.wait_until(lambda: any(c.lost for c in fake_slack.calls_of("chat.postMessage")))
    bot.kill()
    posted = [m["ts"] for m in answers(fake_slack, CLASS, root)]
    assert len(posted) == 3 and fake_slack.statuses  # shown as "is thinking…", then posted

    fake_openai.answer_chars = 15_000  # the second attempt needs two parts
    bot.start()

    def replaced() -> list[dict[str, Any]] | None:
        found = answers(fake_slack, CLASS, root)
        done = [m["ts"] for m in found] == posted[:2] and all(m.get("edited") for m in found)
        return found if done else None

    parts = fake_slack.wait_until(replaced)
    assert bot.stop() == 0  # answers in flight are committed (or handed back) before exit
    assert [m["ts"] for m in bot_replies(fake_slack, root)] == posted[:2]
    assert [c.args["ts"] for c in fake_slack.calls_of("chat.delete")] == posted[2:]
    stored = bot.cli.ok("messages").split("assistant: ", 1)[1].rstrip("\n")
    assert len(stored) == 15_000 and "".join(p["text"] for p in parts) == stored


def test_placeholder_is_completed_after_a_crash(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    """Update mode (no stream, no status): killed while the answer is being written into its
    placeholder, the restarted bot writes the answer into that same placeholder."""
    fake_slack.refuse_status = True
    fake_openai.chunks = 8
    fake_openai.hold(before_chunk=4)
    bot.start()
    refuse_streaming(fake_slack)
    root = ask(fake_slack, QUESTION)
    fake_openai.wait_streaming(0)
    [placeholder] = bot_replies(fake_slack, root)
    bot.kill()
    fake_openai.release()
    bot.start()
    [answer] = wait_answers(fake_slack, CLASS, root, 1)
    assert answer["ts"] == placeholder["ts"] and answer.get("edited")
    assert answer["text"] == f"An answer to: {QUESTION}"
    assert [m["ts"] for m in bot_replies(fake_slack, root)] == [placeholder["ts"]]
    assert len(fake_openai.requests) == 2


def test_stream_whose_completion_restarts_is_replaced_whole(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    """Text was streamed, then OpenAI dropped the connection: the retried answer would not
    continue the streamed text, so the stream is stopped and its message replaced."""
    fake_openai.chunks = 40
    fake_openai.chunk_delay = 0.05  # 30 chunks take longer than the bot's 1 s between appends
    fake_openai.answer_chars = 2000
    fake_openai.add_faults(Fault(drop_after_chunks=30))
    fake_openai.hold(before_chunk=30)
    bot.start()
    root = ask(fake_slack, QUESTION)
    fake_slack.wait_until(lambda: fake_slack.calls_of("chat.appendStream"))  # text shows
    [stream] = bot_replies(fake_slack, root)
    assert stream["streaming"] and stream["text"]
    fake_openai.chunk_delay = 0
    fake_openai.release()  # the connection drops now; the retry writes the answer again
    [answer] = wait_answers(fake_slack, CLASS, root, 1)
    assert answer["ts"] == stream["ts"] and answer.get("edited")
    assert len(answer["text"]) == 2000 and answer["text"].startswith(f"An answer to: {QUESTION}")
    assert [m["ts"] for m in bot_replies(fake_slack, root)] == [stream["ts"]]
    assert len(fake_openai.requests) == 2
