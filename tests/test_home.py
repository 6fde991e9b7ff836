"""App Home and the Messages tab, with `tutor run` against the fake Slack: the Home tab a
person sees (their own conversations; admin sections only for admins), how often it is
published, and suggested prompts and titles in the DM on both of Slack's AI views."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest

from fakes.openai_server import FakeOpenAI
from fakes.slack_server import FakeSlack
from looper.models import BaseAssistant, ChatCompletionPhysicsTutor, utcnow
from looper.store import open_store
from tests.harness import Bot
from tests.slack_user import ADMIN, CLASS, STUDENT, ask, wait_answers

POETRY = "C0POETRY01"
POET = BaseAssistant(
    name="Poet",
    instructions="You answer in short poems. Keep it light & kind.",
    icon=":scroll:",
    prompts=["Write a haiku about rain", "A limerick about a cat who <!here> studies"],
)


def add_assistants(bot: Bot, *bindings: str) -> None:
    """The Physics Tutor (the default: the oldest) and the Poet, bound to `bindings`."""

    async def add() -> None:
        store = await open_store(bot.cli.env["TUTOR_DATABASE_URL"])
        try:
            await store.add_assistant(ChatCompletionPhysicsTutor())
            await store.add_assistant(POET.model_copy(update={"created_at": utcnow()}))
            for place in bindings:
                await store.bind(place, POET.id)
        finally:
            await store.close()

    asyncio.run(add())


def home_of(slack: FakeSlack, user: str) -> str:
    """Open the Home tab as `user` and return the text of what is published for them."""
    published = len([c for c in slack.calls_of("views.publish") if c.args["user_id"] == user])
    slack.wait_ack(slack.open_home(user))
    slack.wait_until(
        lambda: (
            len([c for c in slack.calls_of("views.publish") if c.args["user_id"] == user])
            > published
            and user in slack.home_views
        )
    )
    return json.dumps(slack.home_views[user]["blocks"], ensure_ascii=False)


def test_home_shows_the_persons_own_conversations_and_admins_the_channels(
    bot: Bot, fake_slack: FakeSlack
) -> None:
    add_assistants(bot, f"slack:{POETRY}")
    bot.start()
    root = ask(fake_slack, "How did the universe begin?")
    wait_answers(fake_slack, CLASS, root, 1)
    dm = fake_slack.dm_of(STUDENT)
    question = fake_slack.user_says(STUDENT, dm, "is a<b & <!here> true?")
    wait_answers(fake_slack, dm, question, 1)
    others = ask(fake_slack, "Whose question is this?", user=ADMIN)
    wait_answers(fake_slack, CLASS, others, 1)

    home = home_of(fake_slack, STUDENT)
    assert "/tutor ask" in home and "Messages" in home
    assert ":scroll: *Poet*" in home and "You answer in short poems." in home
    assert "Keep it light" not in home  # what it is for: the first sentence
    assert ":atom_symbol: *Physics Tutor*" in home
    assert "How did the universe begin?" in home and "is a&lt;b &amp; &lt;!here&gt; true?" in home
    assert "<!here>" not in home
    assert f"/archives/{CLASS}/p{root.replace('.', '')}" in home  # links to both threads
    assert f"/archives/{dm}/p{question.replace('.', '')}" in home
    assert "Whose question" not in home  # someone else's conversation
    assert "Channels and their assistants" not in home
    assert "Usage, last 7 days" not in home and "Feedback, last 7 days" not in home

    admin_home = home_of(fake_slack, ADMIN)
    assert "Whose question is this?" in admin_home and "universe" not in admin_home
    assert "Channels and their assistants" in admin_home
    assert "Usage, last 7 days (admins)" in admin_home
    assert f"• <@{STUDENT}>: 2 answers, " in admin_home
    assert "Feedback, last 7 days (admins)" in admin_home
    assert "No feedback in the last 7 days." in admin_home
    assert (
        f"<#{POETRY}> → *Poet*" in admin_home and "Everywhere else: *Physics Tutor*" in admin_home
    )
    assert fake_slack.pings() == []
    assert bot.stop() == 0


def test_home_opened_again_and_again_is_published_once_every_few_seconds(
    bot: Bot, fake_slack: FakeSlack
) -> None:
    """Opened once, then five times more at once: a publish at once, then the five share
    one publish, which starts after the last of them and not within a quiet second of the
    one before (on a slow machine they may straddle a quiet second: then two)."""
    bot.start(TUTOR_HOME_QUIET_SECONDS="1")
    fake_slack.wait_ack(fake_slack.open_home(STUDENT))
    fake_slack.wait_until(lambda: fake_slack.calls_of("views.publish"))
    opens = [fake_slack.open_home(STUDENT) for _ in range(5)]
    for envelope in opens:
        fake_slack.wait_ack(envelope)
    last_open = max(fake_slack.envelopes[e].sent_at for e in opens)
    fake_slack.wait_until(lambda: fake_slack.calls_of("views.publish")[-1].at > last_open)
    calls = fake_slack.calls_of("views.publish")
    assert 2 <= len(calls) <= 3 and all(c.error is None for c in calls)
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(calls)]
    assert min(gaps) >= 0.9, gaps  # the fake's clock: the wire may shift a call a little
    assert bot.stop() == 0


def test_a_home_tab_turned_off_in_the_app_is_one_line_in_the_log(
    bot: Bot, fake_slack: FakeSlack
) -> None:
    fake_slack.home_tab_enabled = False
    bot.start()
    fake_slack.wait_ack(fake_slack.open_home(STUDENT))
    line = bot.wait_line("could not publish the Home tab")
    assert f"of {STUDENT}: not_enabled (turn the Home tab on:" in line
    assert bot.stop() == 0
    assert bot.log is not None and "Traceback" not in "\n".join(bot.log.rest())


def prompts_of(slack: FakeSlack, channel: str) -> list[dict[str, Any]]:
    return [s for s in slack.suggested if s["channel_id"] == channel]


@pytest.mark.parametrize("view", ["assistant_view", "agent_view"])
def test_a_dm_conversation_gets_suggested_prompts_and_its_question_as_title(
    view: str, bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    """The assistant view starts a chat with `assistant_thread_started` (prompts on its
    thread); the agent view with `app_home_opened` tab messages (prompts on the DM: with a
    thread_ts Slack would ignore them). The first question titles the conversation and is
    answered in its thread, by the DM's assistant."""
    dm = fake_slack.dm_of(STUDENT)
    add_assistants(bot, f"slack:{dm}")
    fake_slack.agent_view = view == "agent_view"
    bot.start()
    if view == "assistant_view":
        root = fake_slack.start_assistant_thread(STUDENT, context_channel=CLASS)
    else:
        fake_slack.wait_ack(fake_slack.open_home(STUDENT, tab="messages"))
    [suggested] = fake_slack.wait_until(lambda: prompts_of(fake_slack, dm))
    assert [p["message"] for p in suggested["prompts"]] == POET.prompts
    titles = [p["title"] for p in suggested["prompts"]]
    assert titles[0] == "Write a haiku about rain" and "<!here>" not in titles[1]

    question = "Write a haiku about rain, with   thunder\nand a rainbow at the end of it all"
    question += " please, thanks"
    if view == "assistant_view":
        fake_slack.user_says(STUDENT, dm, question, thread_ts=root)
        fake_slack.wait_ack(fake_slack.change_context(STUDENT, root, "C0ELSEWHERE"))
    else:
        root = fake_slack.user_says(STUDENT, dm, question)
    [answer] = wait_answers(fake_slack, dm, root, 1)
    assert answer["thread_ts"] == root
    title = fake_slack.wait_until(lambda: fake_slack.titles.get((dm, root)))
    assert title == "Write a haiku about rain, with thunder and a rainbow at the end of it all…"
    [request] = fake_openai.requests
    assert request.body["messages"][0]["content"] == POET.instructions
    assert len(prompts_of(fake_slack, dm)) == 1  # a context change changes no prompts
    assert bot.stop() == 0
