"""Issue 11 as a person sees it in Slack (`tutor run` against the fake Slack): answers show
their assistant's name and icon however they are delivered, `/tutor assistant edit` changes
them, and 👍 / 👎 under each answer are stored and read back by admins."""

from __future__ import annotations

import time
from typing import Any

import pytest

from fakes.openai_server import FakeOpenAI
from fakes.slack_server import FakeSlack
from tests.harness import Bot
from tests.slack_user import ADMIN, CLASS, STUDENT, ask, ephemeral, wait_answers

OTHER_STUDENT = "U0STUDENT2"
PHYSICS_LOOK = {"username": "Physics Tutor", "icons": {"emoji": ":atom_symbol:"}}
DELIVERIES = ["streamed", "posted", "updated"]


def deliver_as(fake_slack: FakeSlack, delivery: str) -> None:
    """Make the next answer stream, or be posted under the status, or replace a placeholder."""
    if delivery != "streamed":
        fake_slack.fail_next("chat.startStream", status=200, error="channel_type_not_supported")
    if delivery == "updated":
        fake_slack.refuse_status = True


def look(message: dict[str, Any]) -> dict[str, Any]:
    return {k: message[k] for k in ("username", "icons") if k in message}


def feedback_buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        element
        for block in message.get("blocks") or []
        if block["type"] == "context_actions"
        for element in block["elements"]
        if element["type"] == "feedback_buttons"
    ]


@pytest.mark.parametrize("delivery", DELIVERIES)
def test_every_post_shows_the_persona_and_the_last_part_takes_feedback(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI, delivery: str
) -> None:
    fake_openai.answer_chars = 15_000  # two messages: the buttons go under the second only
    bot.start()
    deliver_as(fake_slack, delivery)
    root = ask(fake_slack, "Tell me everything.")
    parts = wait_answers(fake_slack, CLASS, root, 2)
    [root_message] = [m for m in fake_slack.messages(CLASS) if m["ts"] == root]
    assert look(root_message) == PHYSICS_LOOK
    assert [look(p) for p in parts] == [PHYSICS_LOOK, PHYSICS_LOOK]
    assert feedback_buttons(parts[0]) == []
    [buttons] = feedback_buttons(parts[1])
    assert {"👍", "👎"} == {
        buttons["positive_button"]["text"]["text"],
        buttons["negative_button"]["text"]["text"],
    }
    posts = [*fake_slack.calls_of("chat.postMessage"), *fake_slack.calls_of("chat.startStream")]
    assert posts and all(c.args.get("username") == "Physics Tutor" for c in posts)
    assert all(c.args.get("icon_emoji") == ":atom_symbol:" for c in posts)
    kinds = {c.method for c in fake_slack.calls if c.method.startswith("chat.") and not c.error}
    expected = {
        "streamed": "chat.startStream",
        "posted": "chat.postMessage",
        "updated": "chat.update",
    }[delivery]
    assert expected in kinds
    assert fake_slack.pings() == []


def test_a_single_message_answer_takes_the_buttons_at_stop_stream(
    bot: Bot, fake_slack: FakeSlack
) -> None:
    bot.start()
    root = ask(fake_slack, "How did the universe begin?")
    [answer] = wait_answers(fake_slack, CLASS, root, 1)
    assert answer["text"] == "An answer to: How did the universe begin?"
    [stop] = fake_slack.calls_of("chat.stopStream")
    assert stop.args["blocks"][0]["type"] == "context_actions"
    assert feedback_buttons(answer)


def test_without_the_customize_scope_answers_still_arrive(bot: Bot, fake_slack: FakeSlack) -> None:
    assert fake_slack.scopes is not None
    fake_slack.scopes.discard("chat:write.customize")  # an install from the old manifest
    bot.start()
    root = ask(fake_slack, "How did the universe begin?")
    [answer] = wait_answers(fake_slack, CLASS, root, 1)
    assert look(answer) == {}  # Slack shows the app's own name and icon


def test_an_edited_persona_shows_on_the_next_answer(bot: Bot, fake_slack: FakeSlack) -> None:
    bot.start(TUTOR_ASSISTANT_SECONDS="0")
    root = ask(fake_slack, "How did the universe begin?")
    wait_answers(fake_slack, CLASS, root, 1)
    refused = ephemeral(fake_slack, STUDENT, "assistant edit Physics Tutor name Mine")
    assert "only tutor admins" in refused
    said = ephemeral(fake_slack, ADMIN, 'assistant edit "physics tutor" name Sky Guide')
    assert said.startswith("Edited *Sky Guide*") and "name Sky Guide" in said
    icon = "https://example.org/sky.png"
    assert f"icon {icon}" in ephemeral(fake_slack, ADMIN, f"assistant edit Sky Guide icon {icon}")
    prompts = ephemeral(fake_slack, ADMIN, 'assistant edit "Sky Guide" prompts “Why?” "How far?"')
    assert "prompts “Why?”; “How far?”" in prompts
    fake_slack.user_says(STUDENT, CLASS, "and then?", thread_ts=root)
    second = wait_answers(fake_slack, CLASS, root, 2)[1]
    assert look(second) == {"username": "Sky Guide", "icons": {"image_48": icon}}
    new_root = ask(fake_slack, "What is a star?", persona="Sky Guide")
    assert wait_answers(fake_slack, CLASS, new_root, 1)
    listing = bot.cli.ok("assistant", "ls")
    assert "Sky Guide" in listing


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("assistant edit", "Usage: `/tutor assistant edit <assistant>"),
        ("assistant edit Physics", "Usage: `/tutor assistant edit <assistant>"),
        ('assistant edit "Physics Tutor" colour red', "Usage: `/tutor assistant edit"),
        ('assistant edit "Physics Tutor" icon telescope', "is not an icon: use an emoji"),
        ('assistant edit "Physics Tutor" icon ftp://x.org/a.png', "is not an icon"),
        ('assistant edit "Physics Tutor" prompts "a" "b" "c" "d" "e"', "5 prompts: an assistant"),
        ('assistant edit "Physics Tutor" prompts "a" ""', "a prompt is empty"),
        ('assistant edit "Physics Tutor" prompts "' + "x" * 151 + '"', "at most 150"),
        ('assistant edit "Physics Tutor" prompts "unclosed', "I could not read that"),
        ("assistant edit Nobody name X", "no assistant 'Nobody'"),
        ('assistant edit "Physics Tutor" name ' + "n" * 81, "at most 80"),
    ],
)
def test_assistant_edit_refuses_bad_input_in_one_line(
    bot: Bot, fake_slack: FakeSlack, typed: str, said: str
) -> None:
    bot.start()
    ask(fake_slack, "How did the universe begin?")  # the Physics Tutor exists from here
    answer = ephemeral(fake_slack, ADMIN, typed)
    assert said in answer and "\n" not in answer.strip(), answer


def counted(fake_slack: FakeSlack, seen: int) -> str:
    """The ephemeral reply to the click made after `seen` responses."""
    fake_slack.wait_until(lambda: len(fake_slack.responses) > seen)
    response = fake_slack.responses[seen]
    assert response["response_type"] == "ephemeral"
    return str(response["text"])


def feedback_listing(fake_slack: FakeSlack, wanted: str) -> str:
    """`/tutor feedback` once it shows `wanted` (a click is stored just after its ack)."""
    deadline = time.monotonic() + 10
    while wanted not in (listing := ephemeral(fake_slack, ADMIN, "feedback")):
        assert time.monotonic() < deadline, listing
    return listing


def test_votes_are_stored_replaced_commented_and_reported(bot: Bot, fake_slack: FakeSlack) -> None:
    bot.start()
    root = ask(fake_slack, "How did the universe begin?")
    [answer] = wait_answers(fake_slack, CLASS, root, 1)
    assert "No feedback in the last 7d." in ephemeral(fake_slack, ADMIN, "feedback")
    assert "'7y' is not a duration" in ephemeral(fake_slack, ADMIN, "feedback 7y")

    seen = len(fake_slack.responses)
    up = fake_slack.click_feedback(STUDENT, CLASS, answer["ts"], positive=True)
    fake_slack.wait_ack(up)
    assert ":thumbsup:" in counted(fake_slack, seen)
    assert fake_slack.envelopes[up].ack_latency is not None
    assert ":thumbsup: 1  :thumbsdown: 0" in feedback_listing(fake_slack, ":thumbsup: 1")

    seen = len(fake_slack.responses)
    down = fake_slack.click_feedback(STUDENT, CLASS, answer["ts"], positive=False)
    assert fake_slack.wait_ack(down) == {}
    assert ":thumbsdown:" in counted(fake_slack, seen)
    [view] = fake_slack.wait_until(lambda: fake_slack.views)
    [opened] = fake_slack.calls_of("views.open")  # after the ack: the click never waits
    acked = fake_slack.envelopes[down].acked_at
    assert acked is not None and acked < opened.at
    assert opened.args["trigger_id"] == fake_slack.envelopes[down].payload["trigger_id"]
    assert view["title"]["text"] == "What was wrong?"
    listing = feedback_listing(fake_slack, ":thumbsup: 0  :thumbsdown: 1")  # replaced
    assert "*Physics Tutor*" in listing and "/archives/C0CLASS001/p" in listing

    other = fake_slack.click_feedback(OTHER_STUDENT, CLASS, answer["ts"], positive=True)
    fake_slack.wait_ack(other)
    feedback_listing(fake_slack, ":thumbsup: 1  :thumbsdown: 1")  # one vote a person

    typed = "It skipped <!channel> inflation & the CMB"
    values = {"comment": {"comment": {"type": "plain_text_input", "value": typed}}}
    assert fake_slack.wait_ack(fake_slack.submit_view(STUDENT, view["id"], values)) == {}
    listing = feedback_listing(fake_slack, "inflation")
    assert "“It skipped &lt;!channel&gt; inflation &amp; the CMB”" in listing
    assert fake_slack.pings() == []

    report = bot.cli.ok("feedback", "--since", "1d")
    assert "Physics Tutor\t👍 1\t👎 1" in report
    assert typed in report and "/archives/C0CLASS001/p" in report
    assert bot.cli.ok("feedback", "--assistant", "physics tutor").startswith("Physics Tutor")
    assert "only tutor admins" in ephemeral(fake_slack, STUDENT, "feedback")


def test_a_click_from_another_channel_counts_nothing(bot: Bot, fake_slack: FakeSlack) -> None:
    bot.start()
    root = ask(fake_slack, "How did the universe begin?")
    [answer] = wait_answers(fake_slack, CLASS, root, 1)
    copied = fake_slack.copy_message(answer, "C0ELSEWHER")  # the same buttons, elsewhere
    seen = len(fake_slack.responses)
    fake_slack.wait_ack(fake_slack.click_feedback(STUDENT, "C0ELSEWHER", copied, positive=True))
    assert "nothing was counted" in counted(fake_slack, seen)
    assert "No feedback" in ephemeral(fake_slack, ADMIN, "feedback")
