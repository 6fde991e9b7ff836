"""A slash command's route table, and its text parsed against it once.

The ack middleware answers what needs no work (usage, a missing argument) from the parsed
command, and the router runs the same parsed command's handler: adding a subcommand is one
`Route` in the table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

HEADER = "*tutor* — answers in threads. Reply in the thread to follow up."
HELP = "• `/tutor help` — this text"


@dataclass(frozen=True)
class Route:
    """One subcommand: its words, its handler, who may run it and what it needs."""

    words: str  # "assistant add"
    handler: Callable[..., Awaitable[None]]
    summary: str
    arguments: str = ""  # as the usage shows them: <required> [optional]
    admin_only: bool = False
    needs_text: bool = False  # refuse it (with `when_missing`, or the usage) without text
    when_missing: str = ""
    stores_first: bool = False  # acknowledged once its work is stored (Slack never resends)

    @property
    def usage(self) -> str:
        return f"`/tutor {' '.join(filter(None, (self.words, self.arguments)))}`"

    @property
    def missing(self) -> str:
        return self.when_missing or f"Usage: {self.usage}"


@dataclass(frozen=True)
class Invocation:
    """A command's text, parsed: the route and the text after its words, or `reply`, what to
    say instead of running anything (usage, an unknown subcommand, a missing argument)."""

    route: Route | None
    text: str = ""
    reply: str | None = None


def usage(routes: Sequence[Route]) -> str:
    def line(route: Route) -> str:
        return f"• {route.usage} — {route.summary}"

    anyone = [line(r) for r in routes if not r.admin_only]
    admins = [line(r) for r in routes if r.admin_only]
    return "\n".join([HEADER, *anyone, HELP, "Admins:", *admins])


def parse(text: str, routes: Sequence[Route]) -> Invocation:
    said = text.split()
    first = said[0].lower() if said else "help"
    if first == "help":
        return Invocation(None, reply=usage(routes))
    for route in routes:
        words = route.words.split()
        if [w.lower() for w in said[: len(words)]] == words:
            rest = text.split(None, len(words))[len(words) :]
            given = rest[0].strip() if rest else ""
            missing = route.needs_text and not given
            return Invocation(route, given, route.missing if missing else None)
    family = [r.usage for r in routes if r.words.split()[0] == first]
    if family:
        return Invocation(None, reply="Usage: " + ", ".join(family))
    return Invocation(None, reply=f"I don't know `/tutor {first}`.\n{usage(routes)}")
