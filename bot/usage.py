"""What `/tutor usage` and `/tutor limit` say: usage and budgets in Slack's words."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

from bot.formatting import mrkdwn_safe
from bot.places import is_dm
from looper.budgets import CHANNEL_DAILY, MONTHLY, USER_DAILY, Budget, shown_dollars
from looper.core import OwnUsage
from looper.models import UsageKey, UsageLine

TOP = 5  # lines per kind in `/tutor usage all`
GROUPS: dict[UsageKey, str] = {
    "user": "People",
    "channel": "Channels",
    "assistant": "Assistants",
    "model": "Models",
}
SLACK_KEY = re.compile(r"slack:([A-Z0-9]+)")
AMOUNT = re.compile(r"\$?(\d[\d,]*(?:\.\d+)?)([km]?)", re.IGNORECASE)
SCALE = {"": 1, "k": 1_000, "m": 1_000_000}


def shown_key(by: UsageKey, key: str | None) -> str:
    """An asker or a place as Slack shows them; names as plain text."""
    found = SLACK_KEY.fullmatch(key or "")
    if by == "user" and found:
        return f"<@{found.group(1)}>"
    if by == "channel" and found:
        return "a DM" if is_dm(found.group(1)) else f"<#{found.group(1)}>"
    return mrkdwn_safe(key) if key else "elsewhere (no channel)"


def cost(line: UsageLine) -> str:
    if not line.priced:
        return "no price"
    priced = shown_dollars(line.cost_usd)
    return f"{priced} (+{line.unpriced} with no price)" if line.unpriced else priced


def summary(line: UsageLine) -> str:
    answers = "answer" if line.questions == 1 else "answers"
    said = f"{line.questions:,} {answers}, {line.tokens:,} tokens, {cost(line)}"
    return said + (f", {line.refused:,} refused by a budget" if line.refused else "")


SUMMED = (
    *("questions", "refused", "prompt_tokens", "cached_tokens", "completion_tokens"),
    *("cost_usd", "unpriced"),
)


def total(lines: list[UsageLine]) -> UsageLine:
    return UsageLine(key=None, **{name: sum(getattr(x, name) for x in lines) for name in SUMMED})


def own_usage(mine: OwnUsage) -> str:
    lines = [
        "*Your usage* (days and months are UTC)",
        f"• Today: {summary(mine.today)}",
        f"• This month: {summary(mine.month)}",
    ]
    budgets = [budget_line(b, mine.standing.at) for b in mine.standing.budgets]
    return "\n".join(lines + (budgets or ["• No budget limits your questions."]))


def budget_line(budget: Budget, now: datetime) -> str:
    left = max(budget.limit - budget.used, 0)
    return (
        f"• {budget.whose}: {budget.shown(budget.used)} of {budget.shown(budget.limit)} used, "
        f"{budget.shown(left)} left; it resets {budget.when_it_resets(now)}."
    )


def overview(spans: Mapping[str, Mapping[UsageKey, list[UsageLine]]]) -> str:
    """`/tutor usage all`: per span, the totals and the top people, channels, assistants
    and models."""
    parts = []
    for title, by_key in spans.items():
        lines = [f"*{title}*: {summary(total(by_key['model']))}"]
        for by, name in GROUPS.items():
            top = by_key[by][:TOP]
            if top:
                listed = " · ".join(f"{shown_key(by, x.key)} {summary(x)}" for x in top)
                lines.append(f"  {name}: {listed}")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def limits_text(limits: Mapping[str, float], own: Mapping[str, float]) -> str:
    def tokens(value: float) -> str:
        return f"{value:,.0f} tokens" if value else "none"

    people = ", ".join(f"{shown_key('user', k)} {tokens(v)}" for k, v in own.items())
    return "\n".join(
        [
            "*Budgets* (days and months are UTC; 0 = none)",
            f"• Daily tokens per person: {tokens(limits[USER_DAILY])}",
            f"• Daily tokens per channel: {tokens(limits[CHANNEL_DAILY])}",
            "• Monthly budget: " + (shown_dollars(limits[MONTHLY]) if limits[MONTHLY] else "none"),
            f"• People with their own daily limit: {people or 'none'}",
        ]
    )


def amount(text: str) -> float | None:
    """`50000`, `50,000`, `50k`, `1.5m`, `$20` as a number; `default` as None (the
    setting's value again). Raises ValueError."""
    if text.lower() in ("default", "reset"):
        return None
    found = AMOUNT.fullmatch(text)
    if not found:
        raise ValueError(text)
    number, scale = found.groups()
    return float(number.replace(",", "")) * SCALE[scale.lower()]
