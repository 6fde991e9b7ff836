"""Bolt's authorization for the one workspace the bot is installed in."""

from __future__ import annotations

from logging import Logger
from typing import Any

from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError

from bot.web import SlackApi, is_transient, slack_error


class IdentityUnknown(Exception):
    """Slack did not say who the bot is: busy or failing, even after retries."""


class OneWorkspace(AsyncAuthorize):
    """Authorizes every request with the bot token, from the bot's `auth.test` asked once
    (`SlackApi.identity`). Bolt's own single-workspace authorization asks `auth.test` for
    each request that arrives before its first answer: a fresh bot whose first 30 events
    came at once made 30 calls.

    When Slack is busy or failing, Bolt's own answer would acknowledge the request with a
    line asking to reinstall the app, and an event so acknowledged is never sent again. This
    fails the request instead (Bolt answers 500), so it is not acknowledged and Slack sends
    it again; a slash command, which Slack never sends again, is told so (`on_error`). A
    token Slack refuses still gets Bolt's line."""

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
            try:
                identity = await self.api.identity()
            except SlackApiError as exc:
                if is_transient(exc):
                    raise IdentityUnknown(slack_error(exc)) from exc
                raise
            self._result = AuthorizeResult.from_auth_test_response(
                bot_token=self.api.client.token, auth_test_response=identity
            )
        return self._result


SLACK_BUSY = (
    "Slack did not answer tutor just now ({why}), so nothing was asked: try again in a minute."
)


async def on_error(error: Exception, body: dict[str, Any], logger: Logger) -> BoltResponse | None:
    """Bolt's error handler. A slash command that met `IdentityUnknown` is acknowledged with
    a line saying so: Slack never sends a command again, and without an ack it shows the
    person only that the command failed. Anything else stays unacknowledged (events come
    again; a click or a form shows Slack's own error) and is logged as Bolt would."""
    if not isinstance(error, IdentityUnknown):
        logger.exception("Failed to handle a request (error: %s)", error)
        return None
    logger.warning("Slack did not say who the bot is (%s)", error)
    if body.get("command"):
        return BoltResponse(status=200, body={"text": SLACK_BUSY.format(why=error)})
    return None
