"""What answers cost: a price per model (dollars per million tokens), built in for OpenAI's
current models and overridable with `TUTOR_PRICES` (a TOML or JSON file)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from looper.models import Usage

# Dated snapshots (gpt-4o-2024-08-06) cost what their model costs.
SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


class Price(BaseModel):
    """Dollars per million tokens: prompt (`input`), prompt served from the server's cache
    (`cached_input`; the input price when the model has none) and `output`."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)

    def cost(self, usage: Usage) -> float:
        fresh = usage.prompt_tokens - usage.cached_tokens
        cached = self.cached_input if self.cached_input is not None else self.input
        dollars = fresh * self.input + usage.cached_tokens * cached
        return (dollars + usage.completion_tokens * self.output) / 1_000_000


# OpenAI's standard (not Batch) prices, as its pricing page listed them in 2026.
BUILT_IN: dict[str, Price] = {
    name: Price(input=i, cached_input=c, output=o)
    for name, (i, c, o) in {
        "gpt-5.5": (5.00, 0.50, 30.00),
        "gpt-5.4": (2.50, 0.25, 15.00),
        "gpt-5.4-mini": (0.75, 0.075, 4.50),
        "gpt-5.4-nano": (0.20, 0.02, 1.25),
        "gpt-5.2": (1.75, 0.175, 14.00),
        "gpt-5.1": (1.25, 0.125, 10.00),
        "gpt-5": (1.25, 0.125, 10.00),
        "gpt-5-mini": (0.25, 0.025, 2.00),
        "gpt-5-nano": (0.05, 0.005, 0.40),
        "gpt-4.1": (2.00, 0.50, 8.00),
        "gpt-4.1-mini": (0.40, 0.10, 1.60),
        "gpt-4.1-nano": (0.10, 0.025, 0.40),
        "gpt-4o": (2.50, 1.25, 10.00),
        "gpt-4o-mini": (0.15, 0.075, 0.60),
    }.items()
}


class PricesUnreadable(Exception):
    """The price file cannot be used; the message says why, in one line."""


class Prices:
    """Looks up a model's price: the file's entries first, then the built-in ones."""

    def __init__(self, overrides: dict[str, Price] | None = None) -> None:
        self.table = {**BUILT_IN, **(overrides or {})}

    @classmethod
    def from_file(cls, path: str) -> Prices:
        """`path` may be empty (built-in prices only). Raises PricesUnreadable."""
        return cls(read_prices(Path(path)) if path else None)

    def of(self, model: str) -> Price | None:
        return self.table.get(model) or self.table.get(SNAPSHOT.sub("", model))

    def cost(self, model: str, usage: Usage) -> float | None:
        """Dollars, or None when the model has no price."""
        price = self.of(model)
        return price.cost(usage) if price else None


def read_prices(path: Path) -> dict[str, Price]:
    """`{"model": {"input": …, "cached_input": …, "output": …}}` in TOML or JSON."""
    where = f"TUTOR_PRICES ({path})"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PricesUnreadable(f"{where} cannot be read: {exc}") from None
    try:
        raw = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise PricesUnreadable(f"{where} is not valid {path.suffix or 'TOML'}: {exc}") from None
    if not isinstance(raw, dict):
        raise PricesUnreadable(f"{where} must map model names to prices")
    return {str(model): _price(where, str(model), price) for model, price in raw.items()}


def _price(where: str, model: str, given: object) -> Price:
    try:
        return Price.model_validate(given)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in (model, *first["loc"]))
        raise PricesUnreadable(f"{where}: {field}: {first['msg']}") from None
