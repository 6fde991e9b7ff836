"""Bolt's authorization for the one workspace the bot is installed in."""

from __future__ import annotations

from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.context.async_context import AsyncBoltContext

from bot.web import SlackApi


class OneWorkspace(AsyncAuthorize):
    """Authorizes every request with the bot token, from the bot's `auth.test` asked once
    (`SlackApi.identity`). Bolt's own single-workspace authorization asks `auth.test` for
    each request that arrives before its first answer: a fresh bot whose first 30 events
    came at once made 30 calls, and a refused call fails its request."""

    def __init__(self, api: SlackApi) -> None:
        self.api = api
        self._result: AuthorizeResult | None = None

    async def __call__(
        self,
        *,
        context: AsyncBoltContext,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None,
        actor_enterprise_id: str | None = None,
        actor_team_id: str | None = None,
        actor_user_id: str | None = None,
    ) -> AuthorizeResult:
        if self._result is None:
            self._result = AuthorizeResult.from_auth_test_response(
                bot_token=self.api.client.token,
                auth_test_response=await self.api.identity(),
            )
        return self._result
