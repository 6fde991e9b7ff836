"""`tutor usage`: spans as people type them, and usage lines as a table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta

from looper.budgets import day_start
from looper.models import UsageLine

DAYS = re.compile(r"(\d{1,4})d")
COLUMNS = (
    "key",
    "questions",
    "refused",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "tokens",
    "cost_usd",
    "unpriced",
)


def since(text: str, now: datetime) -> datetime:
    """`today`, `7d` (the last 7 days) or a UTC date `YYYY-MM-DD`. Raises ValueError."""
    said = text.strip().lower()
    if said == "today":
        return day_start(now)
    if days := DAYS.fullmatch(said):
        return now - timedelta(days=int(days.group(1)))
    try:
        return datetime.strptime(said, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"{text!r} is not today, Nd (7d, 30d) or a date (YYYY-MM-DD)") from None


def row(line: UsageLine) -> dict[str, object]:
    values = line.model_dump()
    values["tokens"] = line.tokens
    values["cost_usd"] = round(line.cost_usd, 6) if line.priced else None
    return {column: values[column] for column in COLUMNS}


def as_json(lines: list[UsageLine]) -> str:
    return json.dumps([row(line) for line in lines], indent=2)


def as_csv(lines: list[UsageLine]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(row(line) for line in lines)
    return out.getvalue().rstrip("\n")


def as_table(lines: list[UsageLine], by: str) -> str:
    head = (by, "answers", "refused", "prompt", "cached", "completion", "tokens", "cost")
    body = [head] + [
        (
            line.key or "-",
            *(f"{n:,}" for n in (line.questions, line.refused, line.prompt_tokens)),
            *(f"{n:,}" for n in (line.cached_tokens, line.completion_tokens, line.tokens)),
            shown_cost(line),
        )
        for line in lines
    ]
    widths = [max(len(r[i]) for r in body) for i in range(len(head))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in body
    )


def shown_cost(line: UsageLine) -> str:
    if not line.priced:
        return "no price"
    cost = f"${line.cost_usd:,.4f}"
    return f"{cost} +{line.unpriced} unpriced" if line.unpriced else cost
