"""Models OpenAI has announced it will shut down: tutor names them at start, with the date
and a current replacement, before every thread on them starts to fail.

From OpenAI's deprecations page (https://platform.openai.com/docs/deprecations), as of
2026-11-29. Each entry also covers its dated snapshots (`gpt-4o-2024-08-06`); an exact entry
for a snapshot wins. Replacements are current models answering the same Chat Completions
requests, with no announced shutdown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Shutdown:
    model: str
    on: date
    replacement: str


SHUTDOWNS = [
    Shutdown("gpt-4o-2024-05-13", date(2026, 10, 23), "gpt-5.4"),
    Shutdown("gpt-5", date(2026, 12, 11), "gpt-5.4"),
    Shutdown("gpt-5-mini", date(2026, 12, 11), "gpt-5.4-mini"),
    Shutdown("gpt-5-nano", date(2026, 12, 11), "gpt-5.4-mini"),
    Shutdown("o3", date(2026, 12, 11), "gpt-5.4"),
    Shutdown("gpt-4o", date(2027, 1, 14), "gpt-5.4"),
    Shutdown("gpt-4o-mini", date(2027, 1, 14), "gpt-5.4-mini"),
    Shutdown("gpt-4.1", date(2027, 1, 14), "gpt-5.4"),
    Shutdown("gpt-4.1-mini", date(2027, 1, 14), "gpt-5.4-mini"),
]
BY_MODEL = {shutdown.model: shutdown for shutdown in SHUTDOWNS}


def shutdown_of(model: str) -> Shutdown | None:
    """The announced shutdown of `model` or of the model it is a snapshot of, if any."""
    return BY_MODEL.get(model) or BY_MODEL.get(SNAPSHOT.sub("", model))


@dataclass
class ModelUse:
    """What uses a model: the default for new threads (TUTOR_MODEL), assistants, threads."""

    default: bool = False
    assistants: list[str] = field(default_factory=list)
    threads: int = 0

    def __str__(self) -> str:
        users = ["TUTOR_MODEL"] if self.default else []
        users += [f"assistant {name!r}" for name in self.assistants]
        if self.threads:
            users.append(f"{self.threads} thread{'s' if self.threads != 1 else ''}")
        return ", ".join(users)


def shutdown_warning(model: str, use: ModelUse, today: date) -> str | None:
    """One line naming the date, the replacement and how to move; None for a model with no
    announced shutdown."""
    shutdown = shutdown_of(model)
    if shutdown is None:
        return None
    when = "was shut down" if shutdown.on <= today else "shuts down"
    new = shutdown.replacement
    moves = [f"set TUTOR_MODEL={new}"] if use.default else []
    if use.assistants or use.threads:
        moves.append(
            f"`tutor assistant move ASSISTANT --model {new} --from {model}` moves an "
            "assistant and its threads"
        )
    how = "; ".join(moves)
    return f"{model} ({use}) {when} at OpenAI on {shutdown.on.isoformat()}: move to {new} ({how})"
