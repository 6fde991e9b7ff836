"""The Slack bot's settings, on top of the engine's."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from bot.pacing import HistoryLimit
from looper.settings import Settings


class BotSettings(Settings):
    """What `tutor run` needs besides the engine's settings."""

    slack_bot_token: str = ""
    slack_app_token: str = ""
    slack_api_url: str = "https://slack.com/api/"
    tutor_admins: str = ""
    tutor_access: Literal["open", "closed"] = Field(
        "open", description="open: all but the denied; closed: only the allowed"
    )
    tutor_catchup_hours: float = Field(24.0, ge=0)
    tutor_replicas: int = Field(1, ge=1, description="processes sharing Slack's rate limits")
    tutor_posts_per_second: float = Field(
        1.0, gt=0, description="Slack's chat.postMessage limit per channel (tests raise it)"
    )
    tutor_http_port: int = Field(0, ge=0, le=65535, description="/healthz and /metrics; 0: off")
    tutor_history_per_minute: int = Field(
        50, ge=1, description="conversations.history/.replies calls a minute (Tier 3: 50)"
    )
    tutor_home_quiet_seconds: float = Field(
        5.0, gt=0, description="App Home and Messages tab: one update a person this often"
    )
    tutor_max_file_mb: float = Field(
        10.0, gt=0, description="the largest file read from a question (megabytes)"
    )

    @field_validator("slack_api_url")
    @classmethod
    def _slash_terminated(cls, url: str) -> str:
        return url if url.endswith("/") else url + "/"

    @property
    def history_limit(self) -> HistoryLimit:
        return HistoryLimit(self.tutor_history_per_minute)

    @property
    def max_file_bytes(self) -> int:
        return int(self.tutor_max_file_mb * 1_000_000)

    @property
    def admins(self) -> set[str]:
        return {a.strip() for a in self.tutor_admins.split(",") if a.strip()}
