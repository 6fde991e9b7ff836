"""Settings read from the environment or a `.env` file."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from looper.budgets import Defaults
from looper.prices import Prices, PricesUnreadable

DEFAULT_MODEL = "gpt-5.4-mini"  # no shutdown announced (see looper/deprecations.py)


class MissingSetting(Exception):
    """A required setting is absent; the message names it and where to get it."""


class Settings(BaseSettings):
    """The engine's knobs (front ends add their own). Names match the environment variables
    (case-insensitive)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    openai_api_key: str = ""
    openai_base_url: str = ""

    tutor_database_url: str = "sqlite:///tutor.db"
    tutor_model: str = DEFAULT_MODEL
    tutor_poll_interval: float = Field(1.0, gt=0)
    tutor_max_concurrency: int = Field(64, ge=1)
    tutor_max_per_user: int = Field(2, ge=0, description="answers in flight per asker; 0: any")
    tutor_max_question_chars: int = Field(8000, ge=0, description="0: no limit")

    tutor_user_daily_tokens: int = Field(0, ge=0, description="per asker, UTC day; 0: none")
    tutor_channel_daily_tokens: int = Field(0, ge=0, description="per place, UTC day; 0: none")
    tutor_monthly_budget_usd: float = Field(0.0, ge=0, description="all answers; 0: none")
    tutor_prices: str = Field("", description="a TOML or JSON file of prices per model")

    tutor_max_completion_tokens: int = Field(4096, ge=16)
    tutor_context_tokens: int = Field(
        0, ge=0, description="0: the model's known window, else what the server says"
    )
    tutor_materials_tokens: int = Field(
        2000, ge=0, description="course materials in each prompt, at most; 0: none"
    )
    tutor_retry_attempts: int = Field(4, ge=1)
    tutor_retry_base_delay: float = Field(0.5, ge=0)
    tutor_request_timeout: float = Field(120.0, gt=0)
    tutor_lease_seconds: float = Field(30.0, gt=0)
    tutor_assistant_seconds: float = Field(
        5.0, ge=0, description="how long a looper reuses an assistant it read (edits show after)"
    )

    @field_validator("*")
    @classmethod
    def _utf8(cls, value: Any) -> Any:
        # Bytes in the environment that are not UTF-8 arrive as lone surrogates, which
        # neither a database nor an HTTP header takes.
        if isinstance(value, str):
            try:
                value.encode()
            except UnicodeEncodeError:
                raise ValueError("not UTF-8 text") from None
        return value

    def budget_defaults(self) -> Defaults:
        return Defaults(
            self.tutor_user_daily_tokens,
            self.tutor_channel_daily_tokens,
            self.tutor_monthly_budget_usd,
        )

    def prices(self) -> Prices:
        """Raises MissingSetting when TUTOR_PRICES names a file that cannot be used."""
        try:
            return Prices.from_file(self.tutor_prices)
        except PricesUnreadable as exc:
            raise MissingSetting(str(exc)) from None

    def require_openai_key(self) -> str:
        if not self.openai_api_key:
            raise MissingSetting(
                "OPENAI_API_KEY is not set: create a key at "
                "https://platform.openai.com/api-keys and put it in the environment or .env"
            )
        return self.openai_api_key
