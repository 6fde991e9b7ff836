"""The /tutor route table: one parse serves the ack and the router."""

from __future__ import annotations

from bot.commands import ROUTES
from bot.routes import Invocation, parse, usage


def routed(text: str) -> tuple[str | None, str, str | None]:
    parsed: Invocation = parse(text, ROUTES)
    return (parsed.route.words if parsed.route else None, parsed.text, parsed.reply)


def test_the_usage_lists_every_subcommand_for_whom_it_is() -> None:
    assert usage(ROUTES) == (
        "*tutor* — answers in threads. Reply in the thread to follow up.\n"
        "• `/tutor ask <question>` — ask; the answer arrives as a threaded reply\n"
        "• `/tutor usage` — your tokens and cost today and this month\n"
        "• `/tutor assistants` — list assistants\n"
        "• `/tutor help` — this text\n"
        "Admins:\n"
        "• `/tutor usage all` — usage by person, channel, assistant, model\n"
        "• `/tutor assistant add <name> <instructions>` — add an assistant (quote a name with "
        "spaces)\n"
        "• `/tutor assistant edit <assistant> name|icon|model|instructions|prompts|style "
        "<value>` — change an assistant (prompts: up to four, quoted; style: coach|direct)\n"
        "• `/tutor assistant materials add <assistant>` — upload notes, an answer key, a rubric "
        "(only the model reads them)\n"
        "• `/tutor assistant materials ls <assistant>` — an assistant's materials: names and "
        "sizes\n"
        "• `/tutor assistant materials rm <assistant> <material id>` — take a material away\n"
        "• `/tutor use <assistant>` — this channel's assistant (name or id)\n"
        "• `/tutor threads` — list conversations\n"
        "• `/tutor thread add [assistant]` — start an empty conversation to reply under\n"
        "• `/tutor allow #channel | @person` — let a channel or a person ask (lifts a deny)\n"
        "• `/tutor deny #channel | @person` — keep a channel or a person from asking\n"
        "• `/tutor access` — who may ask where\n"
        "• `/tutor limit [user N [@person] | channel N | monthly USD]` — show or change budgets "
        "(tokens a day, dollars a month)\n"
        "• `/tutor feedback [assistant] [7d]` — 👍/👎 per assistant and the latest 👎 (default: "
        "the last 7 days)"
    )


def test_words_then_the_text_as_typed() -> None:
    assert routed('assistant ADD "Poet Laureate" Answer  in rhyme.') == (
        "assistant add",
        '"Poet Laureate" Answer  in rhyme.',
        None,
    )
    assert routed("threads") == ("threads", "", None)
    assert routed("thread add") == ("thread add", "", None)  # the assistant is optional
    assert routed("deny <#C0CLASS001|class>") == ("deny", "<#C0CLASS001|class>", None)


def test_any_whitespace_separates_the_words() -> None:
    assert routed("ask\nwhy is the sky blue?") == ("ask", "why is the sky blue?", None)


def test_what_the_ack_says_instead() -> None:
    """Usage mistakes are answered in the ack, for every subcommand, before anyone's rights
    are looked up: telling a student how an admin command is typed gives nothing away."""
    assert routed("assistant add")[2] == "Usage: `/tutor assistant add <name> <instructions>`"
    assert routed("assistant remove Poet")[2] == routed("assistant")[2]
    assert routed("")[2] == routed("help")[2] == usage(ROUTES)
    assert routed("ask   ")[2] == "Ask what? `/tutor ask how did the universe begin?`"
    assert routed("use")[2] == "Usage: `/tutor use <assistant>`"
    assert routed("thread")[2] == "Usage: `/tutor thread add [assistant]`"
    assert str(routed("dance")[2]).startswith("I don't know `/tutor dance`.")
