"""The /tutor route table: one parse serves the ack and the router."""

from __future__ import annotations

from bot.commands import ROUTES
from bot.routes import Invocation, parse, usage


def routed(text: str) -> tuple[str | None, str, str | None]:
    parsed: Invocation = parse(text, ROUTES)
    return (parsed.route.words if parsed.route else None, parsed.text, parsed.reply)


def test_every_subcommand_is_in_the_usage() -> None:
    text = usage(ROUTES)
    assert all(route.usage in text for route in ROUTES)
    assert text.index("Admins:") > max(text.index(r.usage) for r in ROUTES if not r.admin_only)


def test_words_then_the_text_as_typed() -> None:
    assert routed('assistant ADD "Poet Laureate" Answer  in rhyme.') == (
        "assistant add",
        '"Poet Laureate" Answer  in rhyme.',
        None,
    )
    assert routed("threads") == ("threads", "", None)
    assert routed("thread add") == ("thread add", "", None)  # the assistant is optional


def test_what_the_ack_says_instead() -> None:
    assert routed("")[2] == routed("help")[2] == usage(ROUTES)
    assert routed("ask   ")[2] == "Ask what? `/tutor ask how did the universe begin?`"
    assert routed("use")[2] == "Usage: `/tutor use <assistant>`"
    assert routed("thread")[2] == "Usage: `/tutor thread add [assistant]`"
    assert str(routed("dance")[2]).startswith("I don't know `/tutor dance`.")
