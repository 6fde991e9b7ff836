"""Who may run admin commands."""

from __future__ import annotations

import time

from slack_sdk.errors import SlackApiError

from bot.web import SlackApi

CACHE_SECONDS = 60.0  # a promotion or demotion counts within a minute


class Admins:
    """TUTOR_ADMINS, plus workspace admins and owners (from users.info, re-read every minute)."""

    def __init__(self, api: SlackApi, listed: set[str]) -> None:
        self.api = api
        self.listed = listed
        self.cache: dict[str, tuple[bool, float]] = {}

    @property
    def whom_to_ask(self) -> str:
        """Whom a refused person should ask: the listed admins, else a workspace admin."""
        listed = ", ".join(f"<@{user}>" for user in sorted(self.listed))
        return f"Ask {listed or 'a workspace admin'}."

    async def allows(self, user_id: str) -> bool:
        if user_id in self.listed:
            return True
        cached = self.cache.get(user_id)
        if cached and time.monotonic() - cached[1] < CACHE_SECONDS:
            return cached[0]
        try:
            user = (await self.api.call("users.info", user=user_id))["user"]
        except SlackApiError:
            return False
        allowed = bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner"))
        self.cache[user_id] = (allowed, time.monotonic())
        return allowed
