"""Budgets and usage in Slack: a real `tutor run` against the fake Slack and fake OpenAI."""

from __future__ import annotations

from fakes.openai_server import FakeOpenAI
from fakes.slack_server import FakeSlack
from tests.harness import Bot
from tests.slack_user import ADMIN, CLASS, STUDENT, ask, ephemeral, error_reply, wait_answers


def test_a_spent_budget_refuses_in_the_thread_until_an_admin_raises_it(
    bot: Bot, fake_slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    bot.start(TUTOR_ADMINS=ADMIN, TUTOR_USER_DAILY_TOKENS="1")
    first = ask(fake_slack, "what is a photon?")
    wait_answers(fake_slack, CLASS, first, 1)
    second = ask(fake_slack, "what is a phonon?")
    refusal = error_reply(fake_slack, CLASS, second)
    said = refusal["blocks"][0]["text"]["text"]
    assert said.startswith(":warning: Your daily token budget is used up: ")
    assert "tokens of 1 tokens. It resets at 00:00 UTC (in " in said
    assert len(fake_openai.requests) == 1  # the refused question never reached the model

    said = ephemeral(fake_slack, ADMIN, f"limit user 1m <@{STUDENT}|student>")
    assert said.startswith("*Budgets* (days and months are UTC; 0 = none)\n")
    assert "• Daily tokens per person: 1 tokens\n" in said
    assert f"• People with their own daily limit: <@{STUDENT}> 1,000,000 tokens" in said
    retry = refusal["blocks"][1]["elements"][0]
    seen = len(fake_slack.responses)
    fake_slack.click(STUDENT, CLASS, refusal["ts"], retry["action_id"], retry["value"])
    fake_slack.wait_until(lambda: len(fake_slack.responses) > seen)
    assert fake_slack.responses[seen]["text"] == "Asking again…"
    wait_answers(fake_slack, CLASS, second, 1)

    mine = fake_slack.wait_until(  # once the answer is committed, a moment after it shows
        lambda: (said := ephemeral(fake_slack, STUDENT, "usage")) and "2 answers" in said and said
    )
    assert mine.startswith("*Your usage* (days and months are UTC)\n• Today: 2 answers, ")
    assert ", 1 refused by a budget\n" in mine
    assert "• Your daily token budget: " in mine and " of 1,000,000 tokens used, " in mine
    everyone = ephemeral(fake_slack, ADMIN, "usage all")
    assert everyone.startswith("*Today*: 2 answers, ")
    assert f"  People: <@{STUDENT}> 2 answers, " in everyone
    assert f"  Channels: <#{CLASS}> 2 answers, " in everyone
    assert "  Models: gpt-5.4-mini 2 answers, " in everyone
    assert "*Last 30 days*" in everyone
    refused = ephemeral(fake_slack, STUDENT, "usage all")
    assert refused == "Sorry, only tutor admins can do that. Ask a workspace admin."
    wrong = ephemeral(fake_slack, ADMIN, "limit weekly 5")
    assert wrong.startswith("Usage: `/tutor limit user N [@person]`")
    assert ephemeral(fake_slack, ADMIN, "limit user lots").startswith("`lots` is not a number.")
