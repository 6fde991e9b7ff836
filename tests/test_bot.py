"""`tutor run` as a real process: real Bolt and slack_sdk against the fake Slack (Web API and
Socket Mode), the real openai client against the fake OpenAI."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import time
import urllib.request
from typing import Any

import pytest

from bot.formatting import ANSWERED
from fakes.openai_server import FakeOpenAI, Fault
from fakes.slack_server import BOT_ID, BOT_USER, TEAM, FakeSlack
from tests.harness import Bot, Lines
from tests.slack_user import (
    ADMIN,
    CLASS,
    PHYSICS,
    STUDENT,
    answers,
    ask,
    ephemeral,
    user_turns,
    wait_answers,
)


def test_seed_flow_in_slack(bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    bot.start()
    root = ask(fake_slack, "How did the universe begin?")
    first = wait_answers(fake_slack, CLASS, root, 1)
    fake_slack.user_says(STUDENT, CLASS, "what models?", thread_ts=root)
    wait_answers(fake_slack, CLASS, root, 2)
    fake_slack.user_says(STUDENT, CLASS, "what experiments?", thread_ts=root)
    final = wait_answers(fake_slack, CLASS, root, 3)
    assert first[0]["ts"] == final[0]["ts"]

    [root_message] = [m for m in fake_slack.messages(CLASS) if m["ts"] == root]
    assert (
        root_message["text"] == f"<@{STUDENT}> asked *Physics Tutor*: How did the universe begin?"
    )
    thread_id = root_message["metadata"]["event_payload"]["thread_id"]
    assert root_message["metadata"]["event_type"] == "tutor_thread"
    assert set(root_message["metadata"]["event_payload"]) == {"thread_id", "assistant_id"}

    questions = ["How did the universe begin?", "what models?", "what experiments?"]
    assert [m["text"] for m in final] == [f"An answer to: {q}" for q in questions]
    assert [m["metadata"]["event_payload"] for m in final] == [
        {"thread_id": thread_id, "answers": str(n)} for n in (1, 3, 5)
    ]
    history: list[dict[str, str]] = [{"role": "system", "content": PHYSICS}]
    for question, request in zip(questions, fake_openai.requests, strict=True):
        history.append({"role": "user", "content": question})
        assert request.body["messages"] == history
        history.append({"role": "assistant", "content": f"An answer to: {question}"})
    assert bot.stop() == 0


def test_commands_are_acked_before_any_slack_call(bot: Bot, fake_slack: FakeSlack) -> None:
    """`threads` and `assistants` are acked before any Web API call or reply; `ask` is acked
    once its question is stored, without waiting for Slack: its root post, whose answer is
    lost on the wire here, is the looper's work."""
    bot.start()
    bot.wait_line("catch-up done")  # its reads of the channels are not the commands' doing
    fake_slack.lose_answer("chat.postMessage", lambda args: args.get("channel") == "C0ACK00000")
    commands = [(STUDENT, "ask why is the sky blue?"), (ADMIN, "threads"), (STUDENT, "assistants")]
    envelopes = {
        f"C0ACK{n:05d}": fake_slack.slash(user, f"C0ACK{n:05d}", text)
        for n, (user, text) in enumerate(commands)
    }
    for envelope_id in envelopes.values():
        fake_slack.wait_ack(envelope_id)
    fake_slack.wait_until(lambda: len(fake_slack.responses) >= 2)  # the two ephemeral replies
    fake_slack.wait_until(lambda: fake_slack.messages("C0ACK00000"))  # the question, posted
    [root_post] = fake_slack.calls_of("chat.postMessage")
    assert root_post.lost and fake_slack.envelopes[envelopes["C0ACK00000"]].acked_at
    for channel, envelope_id in list(envelopes.items())[1:]:
        envelope = fake_slack.envelopes[envelope_id]
        response_url = envelope.payload["response_url"]
        effects = [c.at for c in fake_slack.calls if channel in json.dumps(c.args)]
        effects += [
            r["at"] for r in fake_slack.responses if response_url.endswith(r["response_url"])
        ]
        assert effects, f"no Slack call or reply for {channel}"
        assert envelope.acked_at is not None and all(envelope.acked_at < at for at in effects)


def test_threads_for_admins_with_a_working_link(bot: Bot, fake_slack: FakeSlack) -> None:
    bot.start()
    root = ask(fake_slack, "How did the universe begin?")
    wait_answers(fake_slack, CLASS, root, 1)
    deadline = time.monotonic() + 10  # the answer shows in Slack just before it is committed
    while "2 messages" not in (listing := ephemeral(fake_slack, ADMIN, "threads")):
        assert time.monotonic() < deadline, listing
    assert "Physics Tutor" in listing and f"<#{CLASS}>" in listing and "2 messages" in listing
    link = re.search(r"<(http[^|>]+)\|open>", listing)
    assert link, listing
    with urllib.request.urlopen(link.group(1)) as page:  # the fake serves its permalinks
        assert json.load(page)["ts"] == root
    refused = ephemeral(fake_slack, STUDENT, "threads")
    assert "only tutor admins" in refused


def test_admin_commands_and_usage(bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    bot.start()
    assert "/tutor ask" in ephemeral(fake_slack, STUDENT, "help")
    assert "/tutor ask" in ephemeral(fake_slack, STUDENT, "")
    assert "I don't know `/tutor dance`" in ephemeral(fake_slack, STUDENT, "dance")
    assert "Ask what?" in ephemeral(fake_slack, STUDENT, "ask   ")
    assert "only tutor admins" in ephemeral(fake_slack, STUDENT, "assistant add Poet Rhyme.")
    added = ephemeral(fake_slack, ADMIN, 'assistant add "Poet Laureate" Answer in rhyme.')
    assert "Added *Poet Laureate*" in added
    assert "Usage" in ephemeral(fake_slack, ADMIN, "assistant add Poet")
    assert "no assistant 'Nobody'" in ephemeral(fake_slack, ADMIN, "use Nobody")
    assert "now talks to *Poet Laureate*" in ephemeral(fake_slack, ADMIN, "use poet laureate")
    listing = ephemeral(fake_slack, STUDENT, "assistants")
    assert "*Poet Laureate*" in listing and "← this channel" in listing

    root = ask(fake_slack, "what is light?", persona="Poet Laureate")
    wait_answers(fake_slack, CLASS, root, 1)
    assert fake_openai.requests[-1].body["messages"][0] == {
        "role": "system",
        "content": "Answer in rhyme.",
    }
    said = ephemeral(fake_slack, ADMIN, "thread add Poet Laureate")  # in the ack: stored
    assert said.startswith("Started `thread_") and "*Poet Laureate*" in said
    [started] = fake_slack.wait_until(
        lambda: [m for m in fake_slack.messages(CLASS) if "New conversation" in m["text"]]
    )
    assert started["metadata"]["event_type"] == "tutor_thread"
    fake_slack.user_says(STUDENT, CLASS, "a question under it", thread_ts=started["ts"])
    assert wait_answers(fake_slack, CLASS, started["ts"], 1)[0]["text"].endswith("under it")


def test_an_answer_cut_off_says_so_and_continue_carries_on(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    fake_openai.add_faults(Fault(cut_off_after_chunks=2))
    bot.start()
    root = ask(fake_slack, "How did the universe begin?")
    [answer] = wait_answers(fake_slack, CLASS, root, 1)
    cut, note = answer["text"].split("\n\n")
    assert note == "_(cut off: ask “continue” for the rest)_"
    fake_slack.user_says(STUDENT, CLASS, "continue", thread_ts=root)
    assert wait_answers(fake_slack, CLASS, root, 2)[1]["text"] == "An answer to: continue"
    assert fake_openai.requests[1].body["messages"][2:] == [
        {"role": "assistant", "content": cut},
        {"role": "user", "content": "continue"},
    ]


def test_own_messages_other_bots_edits_and_deletions_ask_nothing(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    bot.start()
    root = ask(fake_slack, "first question")
    wait_answers(fake_slack, CLASS, root, 1)  # its own posts come back as events: no loop
    fake_slack.user_says("U0OTHERBOT", CLASS, "beep from a bot", thread_ts=root, bot_id="B0OTHER")
    typo = fake_slack.user_says(STUDENT, CLASS, "second question", thread_ts=root)
    wait_answers(fake_slack, CLASS, root, 2)
    fake_slack.edit(STUDENT, CLASS, typo, "second question, edited")
    fake_slack.delete(CLASS, typo)
    fake_slack.user_says(STUDENT, CLASS, "third question", thread_ts=root)
    wait_answers(fake_slack, CLASS, root, 3)
    assert [user_turns(r.body)[-1] for r in fake_openai.requests] == [
        "first question",
        "second question",
        "third question",
    ]
    assert "beep from a bot" not in json.dumps([r.body for r in fake_openai.requests])
    assert len(answers(fake_slack, CLASS, root)) == 3


def test_redelivered_event_is_asked_once(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    bot.start()
    root = ask(fake_slack, "first")
    wait_answers(fake_slack, CLASS, root, 1)
    ts = fake_slack.user_says(STUDENT, CLASS, "twice delivered", thread_ts=root)
    [message] = [m for m in fake_slack.messages(CLASS) if m["ts"] == ts]
    fake_slack.deliver_message_events(CLASS, message)  # Slack retries an event
    wait_answers(fake_slack, CLASS, root, 2)
    fake_slack.user_says(STUDENT, CLASS, "sentinel", thread_ts=root)
    wait_answers(fake_slack, CLASS, root, 3)
    assert [user_turns(r.body).count("twice delivered") for r in fake_openai.requests] == [0, 1, 1]


def test_a_fresh_bot_whose_first_events_come_at_once_asks_auth_test_once(
    bot: Bot, fake_slack: FakeSlack
) -> None:
    """Bolt's own single-workspace authorization asked once for each of them."""
    bot.start()
    at_start = len(fake_slack.calls_of("auth.test"))  # the token check
    mentions = [
        (channel, fake_slack.user_says(STUDENT, channel, f"<@{BOT_USER}> hi", deliver=False))
        for channel in (f"C0FIRST{index:03d}" for index in range(30))
    ]
    for channel, ts in mentions:
        [message] = [m for m in fake_slack.messages(channel) if m["ts"] == ts]
        fake_slack.deliver_message_events(channel, message)
    for channel, ts in mentions:
        wait_answers(fake_slack, channel, ts, 1)
    assert len(fake_slack.calls_of("auth.test")) - at_start == 1


def test_mentions_and_dms_start_conversations(bot: Bot, fake_slack: FakeSlack) -> None:
    bot.start()
    mention = fake_slack.user_says(STUDENT, CLASS, f"<@{BOT_USER}> what is a photon?")
    assert (
        wait_answers(fake_slack, CLASS, mention, 1)[0]["text"] == "An answer to: what is a photon?"
    )
    fake_slack.user_says(STUDENT, CLASS, "and its mass?", thread_ts=mention)
    assert wait_answers(fake_slack, CLASS, mention, 2)[1]["text"] == "An answer to: and its mass?"
    dm = fake_slack.user_says(STUDENT, "D0DIRECT01", "hello tutor")
    assert wait_answers(fake_slack, "D0DIRECT01", dm, 1)[0]["text"] == "An answer to: hello tutor"


@pytest.mark.parametrize("when", ["mid-stream", "after-stream"])
def test_sigkill_and_restart_leave_exactly_one_answer(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI, when: str
) -> None:
    fake_openai.chunks = 40
    fake_openai.chunk_delay = 0.05 if when == "mid-stream" else 0
    fake_openai.answer_chars = 3000
    bot.start()
    root = ask(fake_slack, "How did the universe begin?")
    if when == "mid-stream":
        fake_openai.wait_streaming(0)
        fake_slack.wait_until(lambda: fake_slack.calls_of("chat.appendStream"))
    else:
        fake_openai.wait_requests(1, completed=True)
    bot.kill()
    fake_openai.chunk_delay = 0
    bot.start()
    [answer] = wait_answers(fake_slack, CLASS, root, 1)
    assert len(answer["text"]) == 3000 and answer["text"].startswith("An answer to:")
    bot_replies = [m for m in fake_slack.replies(CLASS, root) if m.get("bot_id") == BOT_ID]
    assert [m["ts"] for m in bot_replies] == [answer["ts"]]
    assert bot.stop() == 0


def test_questions_asked_while_down_are_answered_after_restart(
    bot: Bot, fake_slack: FakeSlack
) -> None:
    bot.start()
    root = ask(fake_slack, "How did the universe begin?")
    wait_answers(fake_slack, CLASS, root, 1)
    assert bot.stop() == 0
    fake_slack.user_says(STUDENT, CLASS, "what models?", thread_ts=root, deliver=False)
    fake_slack.user_says(STUDENT, CLASS, "what experiments?", thread_ts=root, deliver=False)
    bot.start()
    final = fake_slack.wait_until(
        lambda: (
            (found := answers(fake_slack, CLASS, root))
            and found[-1]["text"] == "An answer to: what experiments?"
            and found
        )
    )
    covered = [int(m["metadata"]["event_payload"]["answers"]) for m in final]
    assert covered in ([1, 4], [1, 3, 4])  # both asked, each answered once, in order


def test_slack_429_is_waited_out(bot: Bot, fake_slack: FakeSlack) -> None:
    bot.start()
    fake_slack.fail_next("chat.postMessage", 429, retry_after=1)
    fake_slack.fail_next("chat.stopStream", 429, retry_after=1)
    root = ask(fake_slack, "How did the universe begin?")
    wait_answers(fake_slack, CLASS, root, 1)
    posts = fake_slack.calls_of("chat.postMessage")
    assert [c.status for c in posts[:2]] == [429, 200]
    assert posts[1].at - posts[0].at >= 1.0
    assert [c.status for c in fake_slack.calls_of("chat.stopStream")] == [429, 200]


def test_openai_failure_ends_in_a_retry_button_that_works(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    fake_openai.add_faults(Fault(status=500), Fault(status=500))
    bot.start(TUTOR_RETRY_ATTEMPTS="2")
    root = ask(fake_slack, "How did the universe begin?")
    error = fake_slack.wait_until(
        lambda: [m for m in fake_slack.replies(CLASS, root) if m.get("blocks")]
    )[0]
    assert "did not answer after 2 tries" in json.dumps(error["blocks"])
    button = error["blocks"][1]["elements"][0]
    assert button["action_id"] == "tutor_retry"
    fake_slack.click(STUDENT, CLASS, error["ts"], "tutor_retry", button["value"])
    [answer] = wait_answers(fake_slack, CLASS, root, 1)
    assert answer["text"] == "An answer to: How did the universe begin?"
    assert any(r.get("text") == "Asking again…" for r in fake_slack.responses)

    tidied = fake_slack.wait_until(lambda: button_gone(fake_slack, error["ts"]))
    assert tidied["text"] == ANSWERED
    fake_slack.click(STUDENT, CLASS, error["ts"], "tutor_retry", button["value"])  # an old one
    fake_slack.wait_until(
        lambda: any("answered already" in r.get("text", "") for r in fake_slack.responses)
    )
    assert len(fake_openai.requests) == 3  # two failed tries, one answer: nothing asked again


def test_a_failed_question_answered_by_a_follow_up_loses_its_button(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    fake_openai.add_faults(Fault(status=500))
    bot.start(TUTOR_RETRY_ATTEMPTS="1")
    root = ask(fake_slack, "How did the universe begin?")
    error = fake_slack.wait_until(
        lambda: [m for m in fake_slack.replies(CLASS, root) if m.get("blocks")]
    )[0]
    fake_slack.user_says(STUDENT, CLASS, "and then?", thread_ts=root)
    [answer] = wait_answers(fake_slack, CLASS, root, 1)
    assert answer["text"] == "An answer to: and then?"
    assert user_turns(fake_openai.requests[-1].body) == ["How did the universe begin?", "and then?"]
    assert fake_slack.wait_until(lambda: button_gone(fake_slack, error["ts"]))


def button_gone(fake_slack: FakeSlack, ts: str) -> dict[str, Any] | None:
    """The message at `ts` once it has no Retry button (None while it has)."""
    [message] = [m for m in fake_slack.messages(CLASS) if m["ts"] == ts]
    actions = [b for b in message.get("blocks", []) if b["type"] == "actions"]
    return None if actions else message


def test_whole_message_when_streaming_is_refused(bot: Bot, fake_slack: FakeSlack) -> None:
    bot.start()
    fake_slack.fail_next("chat.startStream", status=200, error="channel_type_not_supported")
    root = ask(fake_slack, "How did the universe begin?")
    [answer] = wait_answers(fake_slack, CLASS, root, 1)
    assert answer["text"] == "An answer to: How did the universe begin?"
    [status] = fake_slack.statuses
    assert (status["channel_id"], status["thread_ts"]) == (CLASS, root)


def test_placeholder_when_status_is_refused_too(bot: Bot, fake_slack: FakeSlack) -> None:
    fake_slack.refuse_status = True
    bot.start()
    fake_slack.fail_next("chat.startStream", status=200, error="channel_type_not_supported")
    root = ask(fake_slack, "How did the universe begin?")
    [answer] = wait_answers(fake_slack, CLASS, root, 1)
    assert answer["text"] == "An answer to: How did the universe begin?"
    assert answer.get("edited")  # the placeholder, replaced
    assert len([m for m in fake_slack.replies(CLASS, root) if m.get("bot_id")]) == 1


def test_long_answers_are_split_losing_nothing(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    fake_openai.answer_chars = 30_000
    bot.start()
    root = ask(fake_slack, "Tell me everything.")
    parts = wait_answers(fake_slack, CLASS, root, 3)
    assert len(parts) == 3 and all(len(p["text"]) <= 12_000 for p in parts)
    assert [p["metadata"]["event_payload"].get("part", 1) for p in parts] == [1, 2, 3]
    stored = bot.cli.ok("messages").split("assistant: ", 1)[1].rstrip("\n")
    assert "".join(p["text"] for p in parts) == stored


def test_sigterm_hands_back_work_and_exits_quickly(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    fake_openai.hold()
    bot.start()
    root = ask(fake_slack, "How did the universe begin?")
    fake_openai.wait_requests(1)
    start = time.monotonic()
    assert bot.stop(signal.SIGTERM) == 0
    assert time.monotonic() - start < 10
    fake_openai.release()
    bot.start()
    [answer] = wait_answers(fake_slack, CLASS, root, 1)
    assert len([m for m in fake_slack.replies(CLASS, root) if m.get("bot_id")]) == 1
    assert answer["text"] == "An answer to: How did the universe begin?"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SLACK_BOT_TOKEN": ""}, "SLACK_BOT_TOKEN is not set"),
        ({"SLACK_APP_TOKEN": ""}, "SLACK_APP_TOKEN is not set"),
        ({"SLACK_BOT_TOKEN": "xoxb-wrong"}, "SLACK_BOT_TOKEN was rejected by Slack (invalid_auth)"),
        ({"SLACK_APP_TOKEN": "xapp-wrong"}, "SLACK_APP_TOKEN was rejected by Slack (invalid_auth)"),
        ({"SLACK_APP_TOKEN": "xoxb-oops"}, "SLACK_APP_TOKEN does not start with xapp-"),
        ({"SLACK_API_URL": "http://127.0.0.1:9/api/"}, "cannot reach Slack"),
    ],
)
def test_start_up_checks_tokens(bot: Bot, env: dict[str, str], message: str) -> None:
    done = bot.cli.run("run", **env)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


def test_a_model_openai_will_shut_down_is_named_at_start(bot: Bot) -> None:
    bot.start(TUTOR_MODEL="gpt-5-mini")
    assert bot.stop() == 0
    assert bot.log is not None
    lines = []
    with contextlib.suppress(EOFError):
        while True:
            lines.append(bot.log.next())
    [warning] = [line for line in lines if "shut" in line]
    assert "WARNING" in warning and "gpt-5-mini (TUTOR_MODEL) " in warning
    assert "at OpenAI on 2026-12-11: move to gpt-5.4-mini (set TUTOR_MODEL=gpt-5.4-mini)" in warning


def test_team_and_asker_are_the_stream_recipients(bot: Bot, fake_slack: FakeSlack) -> None:
    bot.start()
    root = ask(fake_slack, "How did the universe begin?")
    wait_answers(fake_slack, CLASS, root, 1)
    [start] = fake_slack.calls_of("chat.startStream")
    assert (start.args["recipient_user_id"], start.args["recipient_team_id"]) == (STUDENT, TEAM)
    assert start.args["thread_ts"] == root


def test_paced_within_slacks_tiers(bot: Bot, fake_slack: FakeSlack) -> None:
    """25 questions at once with Slack's tiers enforced: the Tier 2 streaming budget runs out,
    the rest arrive as whole messages, and no call is refused."""
    fake_slack.enforce_tiers = True
    bot.start()
    channels = [f"C0ROOM{i:04d}" for i in range(25)]
    for channel in channels:
        fake_slack.slash(STUDENT, channel, "ask How did the universe begin?")
    fake_slack.wait_until(lambda: sum(fake_slack.finished.get(c, 0) for c in channels) == 25, 30)
    streamed = len(fake_slack.calls_of("chat.startStream"))
    assert 0 < streamed < 25
    assert len(fake_slack.statuses) == 25  # at once, under each root
    assert [c for c in fake_slack.calls if c.status == 429] == []


def test_cli_threads_on_the_bots_store_are_answered_too(bot: Bot) -> None:
    """`tutor ask` in a terminal, on the store `tutor run` uses: answered, not in Slack."""
    bot.start()
    assistant = bot.cli.ok("assistant", "add").strip().splitlines()[-1]
    bot.cli.ok("thread", "add", "--assistant-id", assistant)
    bot.cli.ok("ask", "How did the universe begin?")
    assert bot.process is not None and bot.process.stdout is not None
    line = Lines(bot.process.stdout).next()
    assert line.endswith("assistant: An answer to: How did the universe begin?")
    assert bot.cli.ok("messages").splitlines()[-1].startswith("assistant: An answer")


def test_a_question_too_long_is_refused_in_one_line(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    """Over TUTOR_MAX_QUESTION_CHARS: the asker is told, only them, and nothing is sent to
    the model, whether the question is a /tutor ask or a reply in a thread."""
    bot.start(TUTOR_MAX_QUESTION_CHARS="40")
    said = ephemeral(fake_slack, STUDENT, "ask " + "why " * 20)
    assert said.startswith("the question is 79 characters long; the limit is 40: shorten it")
    root = ask(fake_slack, "short enough?")
    wait_answers(fake_slack, CLASS, root, 1)
    fake_slack.user_says(STUDENT, CLASS, "and " * 20, thread_ts=root)
    [told] = fake_slack.wait_until(
        lambda: [r for r in fake_slack.responses if r.get("thread_ts") == root]
    )
    assert told["user"] == STUDENT and "the limit is 40" in told["text"]
    assert bot.stop() == 0
    assert [user_turns(r.body) for r in fake_openai.requests] == [["short enough?"]]
    assert len(answers(fake_slack, CLASS, root)) == 1
