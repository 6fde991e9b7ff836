"""The store's ledger: what each answer took (and which questions a budget refused), summed
for reports and budgets, and the limits admins set at run time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from looper.models import UsageKey, UsageLine, UsageRecord
from looper.store.batch import Batcher, in_batches, marks
from looper.store.dialect import Connection, Dialect, Row

KEY_COLUMNS: dict[UsageKey, str] = {
    "user": "asker",
    "channel": "place",
    "assistant": "assistant_id",
    "model": "model",
}
USAGE_COLUMNS = (
    "thread_id, message_id, outcome, at, assistant_id, model, asker, place, "
    "prompt_tokens, completion_tokens, cached_tokens, counted, cost_usd, refused"
)
# A record is written once: an attempt that runs again after a crash adds nothing.
ADD_USAGE = (
    f"INSERT INTO usage ({USAGE_COLUMNS}) VALUES ({', '.join('?' * 14)}) ON CONFLICT DO NOTHING"
)
ANSWERED = "outcome = 'answered'"
TOKENS = "prompt_tokens + completion_tokens"


def usage_values(r: UsageRecord) -> tuple[Any, ...]:
    outcome = "refused" if r.refused else "answered"
    return (
        *(r.thread_id, r.message_id, outcome, r.at, r.assistant_id, r.model, r.asker, r.place),
        *(r.prompt_tokens, r.completion_tokens, r.cached_tokens, int(r.counted), r.cost_usd),
        r.refused,
    )


async def add_usage(db: Connection, record: UsageRecord | None) -> None:
    if record is not None:
        await db.execute(ADD_USAGE, *usage_values(record))


def _line(row: Row) -> UsageLine:
    # PostgreSQL sums integers as numerics; every database sums no rows as NULL.
    counts = {k: int(v or 0) for k, v in row.items() if k not in ("key", "cost_usd")}
    return UsageLine(key=row["key"], cost_usd=float(row["cost_usd"] or 0), **counts)


class Ledger:
    """The store's usage and limits (mixed into `Store`)."""

    dialect: Dialect
    if TYPE_CHECKING:

        async def _fetch(self, sql: str, *args: Any) -> list[Row]: ...

    def __init__(self) -> None:
        super().__init__()
        # Every answer reads the limits: the answers starting together read them once.
        self._limit_reads: Batcher[tuple[str, ...], dict[str, float]] = Batcher(self._limits_of)

    async def usage_report(
        self,
        since: datetime,
        by: UsageKey,
        until: datetime | None = None,
        only: str | None = None,
    ) -> list[UsageLine]:
        """Usage from `since` (until `until`), summed per `by` (for the key `only`, when
        given), most tokens first."""
        key = KEY_COLUMNS[by]
        span = "at >= ?" + (" AND at < ?" if until else "") + (f" AND {key} = ?" if only else "")
        rows = await self._fetch(
            f"SELECT {key} AS key, "
            f"sum(CASE WHEN {ANSWERED} THEN 1 ELSE 0 END) AS questions, "
            f"sum(CASE WHEN {ANSWERED} THEN 0 ELSE 1 END) AS refused, "
            "sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens, "
            "sum(cached_tokens) AS cached_tokens, sum(cost_usd) AS cost_usd, "
            f"sum(CASE WHEN {ANSWERED} AND cost_usd IS NULL THEN 1 ELSE 0 END) AS unpriced "
            f"FROM usage WHERE {span} GROUP BY {key} "
            f"ORDER BY sum({TOKENS}) DESC, count(*) DESC, {key}",
            *(value for value in (since, until, only) if value is not None),
        )
        return [_line(r) for r in rows]

    async def tokens_of(self, by: Literal["user", "channel"], key: str, since: datetime) -> int:
        """Tokens answered for one asker or place since `since`."""
        total = await self._fetch(
            f"SELECT sum({TOKENS}) AS total FROM usage "
            f"WHERE {KEY_COLUMNS[by]} = ? AND at >= ? AND {ANSWERED}",
            key,
            since,
        )
        return int(total[0]["total"] or 0)

    async def cost_since(self, since: datetime) -> float:
        """Dollars spent on priced answers since `since`."""
        total = await self._fetch(
            f"SELECT sum(cost_usd) AS total FROM usage WHERE at >= ? AND {ANSWERED}", since
        )
        return float(total[0]["total"] or 0)

    async def set_limit(self, name: str, value: float | None) -> None:
        """Set a named limit, or with None forget it (its default applies again)."""
        async with self.dialect.connection() as db:
            if value is None:
                await db.execute("DELETE FROM limits WHERE name = ?", name)
                return
            await db.execute(
                "INSERT INTO limits (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                name,
                value,
            )

    async def limits(self, names: Sequence[str] | None = None) -> dict[str, float]:
        """The limits set (only `names`, when given)."""
        if names is not None:
            return await self._limit_reads.add(tuple(names))
        rows = await self._fetch("SELECT name, value FROM limits ORDER BY name")
        return {r["name"]: float(r["value"]) for r in rows}

    async def _limits_of(self, wanted: list[tuple[str, ...]]) -> list[dict[str, float] | Exception]:
        every = sorted({name for names in wanted for name in names})
        found: dict[str, float] = {}
        for chunk in in_batches(every):
            rows = await self._fetch(
                f"SELECT name, value FROM limits WHERE name IN ({marks(chunk)})", *chunk
            )
            found.update({r["name"]: float(r["value"]) for r in rows})
        return [{name: found[name] for name in names if name in found} for names in wanted]
