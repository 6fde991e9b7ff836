"""Budgets: the tokens one person or one place may use a day, and what all answers may cost
a month. Checked against the store's ledger before each answer, so every replica agrees,
and a burst of questions overshoots by at most the answers already being written.

Days and months are UTC. Limits come from the settings and can be changed at run time; the
changes are kept in the store (`limits`), where a person's own daily limit is kept too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from looper.models import utcnow
from looper.store import Store

USER_DAILY = "user_daily_tokens"
CHANNEL_DAILY = "channel_daily_tokens"
MONTHLY = "monthly_budget_usd"
NOTE_AT = 0.8  # the share of a budget from which answers carry a note
Clock = Callable[[], datetime]


def own_limit(asker: str) -> str:
    """The name of one asker's own daily token limit."""
    return f"{USER_DAILY}:{asker}"


def day_start(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def month_start(moment: datetime) -> datetime:
    return day_start(moment).replace(day=1)


def next_month(moment: datetime) -> datetime:
    start = month_start(moment)
    return (start + timedelta(days=32)).replace(day=1)


def shown_tokens(tokens: float) -> str:
    return f"{tokens:,.0f} tokens"


def shown_dollars(dollars: float) -> str:
    if 0 < dollars < 0.01:  # a short answer costs a few millionths of a dollar
        return "$" + f"{dollars:.6f}".rstrip("0")
    return f"${dollars:,.2f}"


@dataclass(frozen=True)
class Defaults:
    """The limits the settings give (0: none)."""

    user_daily_tokens: int = 0
    channel_daily_tokens: int = 0
    monthly_budget_usd: float = 0.0

    def of(self, name: str) -> float:
        return float(getattr(self, name))


@dataclass(frozen=True)
class Budget:
    """One budget as it stands for a question: `kind` is `user`, `channel` or `monthly`."""

    kind: str
    used: float
    limit: float
    resets: datetime

    @property
    def whose(self) -> str:
        return WHOSE[self.kind]

    @property
    def spent(self) -> bool:
        return self.used >= self.limit

    def taken_by(self, tokens: int, cost: float | None) -> float:
        """What an answer of `tokens` costing `cost` takes from this budget."""
        return (cost or 0.0) if self.kind == "monthly" else float(tokens)

    def shown(self, amount: float) -> str:
        return shown_dollars(amount) if self.kind == "monthly" else shown_tokens(amount)

    def when_it_resets(self, now: datetime) -> str:
        if self.kind == "monthly":
            return f"on {self.resets:%d %B} at 00:00 UTC"
        hours, minutes = divmod(int((self.resets - now).total_seconds()) // 60, 60)
        return f"at 00:00 UTC (in {hours} h {minutes} min)"

    def refusal(self, now: datetime) -> str:
        return (
            f"{self.whose} is used up: {self.shown(self.used)} of {self.shown(self.limit)}. "
            f"It resets {self.when_it_resets(now)}. Your question is saved: once an admin "
            "raises the limit, retry it."
        )

    def note(self, extra: float, now: datetime) -> str | None:
        used = self.used + extra
        if used < NOTE_AT * self.limit:
            return None
        if used >= self.limit:
            return (
                f"{self.whose} is now used up ({self.shown(used)} of {self.shown(self.limit)}): "
                f"new questions wait until it resets {self.when_it_resets(now)}."
            )
        return (
            f"{self.whose}: {used / self.limit:.0%} used ({self.shown(used)} of "
            f"{self.shown(self.limit)}); it resets {self.when_it_resets(now)}."
        )


@dataclass(frozen=True)
class Standing:
    """The budgets that apply to one question, as they stood before its answer."""

    budgets: list[Budget]
    at: datetime

    @property
    def spent(self) -> Budget | None:
        """The first budget used up, if any."""
        return next((b for b in self.budgets if b.spent), None)

    def note(self, tokens: int, cost: float | None) -> str:
        """A short note for an answer that brings a budget to `NOTE_AT` or past it."""
        notes = [note for b in self.budgets if (note := b.note(b.taken_by(tokens, cost), self.at))]
        return "".join(f"\n\n_({note})_" for note in notes)


class Budgets:
    """Reads and sets limits, and tells how each budget stands for an asker in a place."""

    def __init__(self, store: Store, defaults: Defaults, clock: Clock = utcnow) -> None:
        self.store = store
        self.defaults = defaults
        self.clock = clock

    async def limits(self, asker: str | None = None) -> dict[str, float]:
        """The limits in force (0: none): the settings' unless changed at run time, and
        with an asker, `user_daily_tokens` is that asker's own when they have one."""
        names = [USER_DAILY, CHANNEL_DAILY, MONTHLY] + ([own_limit(asker)] if asker else [])
        stored = await self.store.limits(names)
        limits = {name: stored.get(name, self.defaults.of(name)) for name in names[:3]}
        if asker and own_limit(asker) in stored:
            limits[USER_DAILY] = stored[own_limit(asker)]
        return limits

    async def own_limits(self) -> dict[str, float]:
        """Every asker's own daily token limit, by asker."""
        prefix = own_limit("")
        stored = await self.store.limits()
        return {n.removeprefix(prefix): v for n, v in stored.items() if n.startswith(prefix)}

    async def set(self, name: str, value: float | None, asker: str | None = None) -> None:
        """Change a limit (0: none); with `asker`, that asker's own daily token limit; with
        None, back to its default."""
        await self.store.set_limit(own_limit(asker) if asker else name, value)

    async def standing(self, asker: str | None, place: str | None) -> Standing:
        """How each budget with a limit stands for a question of `asker` in `place`."""
        now = self.clock()
        limits = await self.limits(asker)
        day = day_start(now)
        tomorrow = day + timedelta(days=1)
        checks: list[Awaitable[Budget]] = []
        if asker and limits[USER_DAILY]:
            used = self.store.tokens_of("user", asker, day)
            checks.append(_budget("user", limits[USER_DAILY], tomorrow, used))
        if place and limits[CHANNEL_DAILY]:
            used = self.store.tokens_of("channel", place, day)
            checks.append(_budget("channel", limits[CHANNEL_DAILY], tomorrow, used))
        if limits[MONTHLY]:
            spent = self.store.cost_since(month_start(now))
            checks.append(_budget("monthly", limits[MONTHLY], next_month(now), spent))
        return Standing(list(await asyncio.gather(*checks)), now)


WHOSE = {
    "user": "Your daily token budget",
    "channel": "This channel's daily token budget",
    "monthly": "This workspace's monthly budget",
}


async def _budget(
    kind: str, limit: float, resets: datetime, used: Awaitable[int | float]
) -> Budget:
    return Budget(kind, float(await used), limit, resets)
