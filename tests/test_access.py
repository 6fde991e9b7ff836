"""Access: `TUTOR_ACCESS` and `/tutor allow`/`deny`, obeyed by `/tutor ask`, mentions, DMs
and thread replies of a real `tutor run` against the fake Slack and the fake OpenAI."""

from __future__ import annotations

from typing import Any

from fakes.openai_server import FakeOpenAI
from fakes.slack_server import BOT_USER, FakeSlack
from tests.harness import Bot
from tests.slack_user import (
    ADMIN,
    CLASS,
    STUDENT,
    answers,
    ask,
    ephemeral,
    user_turns,
    wait_answers,
)

OTHER_STUDENT = "U0STUDENT2"
DM = "D0DIRECT01"
OTHER = "C0OTHER001"


def refused_ask(fake_slack: FakeSlack, user: str, question: str, channel: str = CLASS) -> str:
    """/tutor ask that is refused: the reason, in the ack; nothing is posted for it."""
    said = ephemeral(fake_slack, user, f"ask {question}", channel)
    assert not [m for m in fake_slack.messages(channel) if question in m["text"]]
    return said


def refusals(fake_slack: FakeSlack) -> list[dict[str, Any]]:
    """The ephemeral lines the bot posted, oldest first."""
    return [c.args for c in fake_slack.calls_of("chat.postEphemeral")]


def bot_posts(fake_slack: FakeSlack, channel: str) -> list[dict[str, Any]]:
    return [m for m in fake_slack.messages(channel) if m.get("bot_id")]


def test_ask_obeys_denied_channels_and_users_until_allowed_again(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    bot.start()
    denied = ephemeral(fake_slack, ADMIN, f"deny <#{CLASS}|class>")
    assert denied == f"<#{CLASS}> is denied now."
    said = refused_ask(fake_slack, STUDENT, "is light a wave?")
    assert said == "Sorry, tutor does not answer in this channel. Ask a workspace admin."
    assert bot.cli.ok("assistant", "ls") == ""  # a refused ask stores nothing, not even that
    assert ephemeral(fake_slack, ADMIN, "allow c0class001") == f"<#{CLASS}> is allowed now."
    denied = ephemeral(fake_slack, ADMIN, f"deny <@{STUDENT}|student>")
    assert denied == f"<@{STUDENT}> is denied now."
    said = refused_ask(fake_slack, STUDENT, "is light a particle?", OTHER)
    assert said == "Sorry, you may not ask tutor questions. Ask a workspace admin."
    listing = ephemeral(fake_slack, ADMIN, "access")
    assert "Access is *open*" in listing
    assert f"Allowed: <#{CLASS}>\nDenied: <@{STUDENT}>" in listing

    ephemeral(fake_slack, ADMIN, f"deny {CLASS}")
    root = ask(fake_slack, "admins always may", ADMIN)  # even in a denied channel
    ephemeral(fake_slack, ADMIN, f"allow {STUDENT}")
    ephemeral(fake_slack, ADMIN, f"allow <#{CLASS}>")
    again = ask(fake_slack, "is light a photon?")
    wait_answers(fake_slack, CLASS, root, 1)
    wait_answers(fake_slack, CLASS, again, 1)
    asked = sorted(user_turns(r.body)[-1] for r in fake_openai.requests)
    assert asked == ["admins always may", "is light a photon?"]  # the refused never reached it


def test_refused_mentions_dms_and_replies_get_one_ephemeral_line(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    bot.start(TUTOR_ADMINS=ADMIN)
    bot.wait_line("catch-up done")  # a refused mention is not also found by the catch-up
    root = ask(fake_slack, "first question")
    wait_answers(fake_slack, CLASS, root, 1)
    ephemeral(fake_slack, ADMIN, f"deny <@{STUDENT}|student>")

    fake_slack.user_says(STUDENT, CLASS, "a refused reply", thread_ts=root)
    mention = fake_slack.user_says(STUDENT, CLASS, f"<@{BOT_USER}> a refused mention")
    fake_slack.user_says(  # comes as a message and an app_mention: told once
        STUDENT, CLASS, f"<@{BOT_USER}> a refused mention in the thread", thread_ts=root
    )
    dm = fake_slack.user_says(STUDENT, DM, "a refused DM")
    fake_slack.user_says(OTHER_STUDENT, CLASS, "an allowed reply", thread_ts=root)
    wait_answers(fake_slack, CLASS, root, 2)
    fake_slack.wait_events_acked()  # no handler still at work

    told = sorted(refusals(fake_slack), key=lambda r: r["thread_ts"])
    assert [(r["channel"], r["thread_ts"]) for r in told] == sorted(
        [(CLASS, root), (CLASS, mention), (CLASS, root), (DM, dm)], key=lambda w: w[1]
    )
    assert {r["user"] for r in told} == {STUDENT}
    assert {r["text"] for r in told} == {f"Sorry, you may not ask tutor questions. Ask <@{ADMIN}>."}
    assert [user_turns(r.body)[-1] for r in fake_openai.requests] == [
        "first question",
        "an allowed reply",
    ]
    assert [m["ts"] for m in bot_posts(fake_slack, CLASS)] == [
        root,
        *(m["ts"] for m in answers(fake_slack, CLASS, root)),
    ]
    assert bot_posts(fake_slack, DM) == []
    assert not fake_slack.replies(CLASS, mention)


def test_closed_answers_only_allowed_people_in_allowed_channels(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    bot.start(TUTOR_ACCESS="closed")
    bot.wait_line("catch-up done")
    closed_user = "Sorry, tutor answers only the people it is allowed to. Ask a workspace admin."
    assert refused_ask(fake_slack, STUDENT, "may I?") == closed_user
    ephemeral(fake_slack, ADMIN, f"allow <@{STUDENT}|student>")
    assert refused_ask(fake_slack, STUDENT, "may I now?") == (
        "Sorry, tutor answers only in the channels it is allowed in. Ask a workspace admin."
    )
    dm = fake_slack.user_says(STUDENT, DM, "in my DM?")
    assert wait_answers(fake_slack, DM, dm, 1)[0]["text"] == "An answer to: in my DM?"
    other_dm = "D0DIRECT02"
    refused_dm = fake_slack.user_says(OTHER_STUDENT, other_dm, "and in mine?")
    [told] = fake_slack.wait_until(lambda: refusals(fake_slack))
    assert (told["channel"], told["thread_ts"], told["user"]) == (
        other_dm,
        refused_dm,
        OTHER_STUDENT,
    )
    assert told["text"] == closed_user

    ephemeral(fake_slack, ADMIN, f"allow {CLASS}")
    root = ask(fake_slack, "in class?")
    assert refused_ask(fake_slack, OTHER_STUDENT, "me too?") == closed_user
    admins_root = ask(fake_slack, "admins always may", ADMIN, OTHER)
    wait_answers(fake_slack, CLASS, root, 1)
    wait_answers(fake_slack, OTHER, admins_root, 1)
    assert "Access is *closed*" in ephemeral(fake_slack, ADMIN, "access")
    fake_slack.wait_events_acked()  # no handler still at work
    assert len(refusals(fake_slack)) == 1 and bot_posts(fake_slack, other_dm) == []
    asked = sorted(user_turns(r.body)[-1] for r in fake_openai.requests)
    assert asked == ["admins always may", "in class?", "in my DM?"]


def test_access_commands_are_for_admins_and_need_a_channel_or_a_person(
    bot: Bot, fake_slack: FakeSlack
) -> None:
    bot.start()
    for command in (f"allow {STUDENT}", f"deny <#{CLASS}|class>", "access"):
        assert "only tutor admins" in ephemeral(fake_slack, STUDENT, command)
    assert "Usage: `/tutor allow" in ephemeral(fake_slack, ADMIN, "allow")
    assert ephemeral(fake_slack, ADMIN, "deny #class").startswith("Whom? `/tutor deny #channel`")
    assert ephemeral(fake_slack, ADMIN, "allow @someone").startswith("Whom?")
    assert "Allowed: none\nDenied: none" in ephemeral(fake_slack, ADMIN, "access")


def test_the_catch_up_obeys_access_too(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    bot.start()
    root = ask(fake_slack, "first question")
    wait_answers(fake_slack, CLASS, root, 1)
    ephemeral(fake_slack, ADMIN, f"deny {OTHER_STUDENT}")
    assert bot.stop() == 0
    dropped = len(fake_slack.undelivered)
    fake_slack.user_says(OTHER_STUDENT, CLASS, "a refused reply", thread_ts=root)
    mention = fake_slack.user_says(OTHER_STUDENT, CLASS, f"<@{BOT_USER}> a refused mention")
    dm = fake_slack.user_says(OTHER_STUDENT, "D0DIRECT02", "a refused DM")
    fake_slack.user_says(STUDENT, CLASS, "an allowed reply", thread_ts=root)
    fake_slack.wait_until(lambda: len(fake_slack.undelivered) >= dropped + 5)  # 2 for the mention

    bot.start()
    assert "conversations started: 0, replies asked: 1" in bot.wait_line("catch-up done")
    told = refusals(fake_slack)
    assert sorted((r["channel"], r["thread_ts"]) for r in told) == sorted(
        [(CLASS, mention), ("D0DIRECT02", dm)]
    )
    assert wait_answers(fake_slack, CLASS, root, 2)[1]["text"] == "An answer to: an allowed reply"
    assert [user_turns(r.body)[-1] for r in fake_openai.requests] == [
        "first question",
        "an allowed reply",
    ]
