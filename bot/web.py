"""The bot's Web API calls: paced, with Slack's 429s waited out and transient errors retried."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from prometheus_client import Counter
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncConnectionErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.pacing import FULL_PAGE, Pacer

log = logging.getLogger(__name__)
ATTEMPTS = 4
RATE_LIMITED = Counter(
    "tutor_slack_rate_limited",
    "Slack Web API calls answered 429 (then waited out, or skipped when optional)",
    ["method"],
)


def make_client(
    token: str | None, base_url: str, session: aiohttp.ClientSession | None = None
) -> AsyncWebClient:
    """A WebClient on `SLACK_API_URL` (slack_sdk has no environment variable for it).

    Pass a long-lived `session`: without one slack_sdk opens a new session and connection
    for every call. Without a `token`, each call names its own.
    """
    client = AsyncWebClient(token=token, base_url=base_url, timeout=30, session=session)
    client.retry_handlers = [AsyncConnectionErrorRetryHandler(max_retry_count=2)]
    return client


class SlackApi:
    """Calls Web API methods by name through the pacer.

    `call` waits for budget; `call_if_budget` skips the call (returns None) when spending it
    now would exceed the method's tier. A 429 empties that method's budget for Retry-After and
    the call is tried again; 5xx answers are retried with backoff; errors Slack reports with
    `ok: false` raise SlackApiError at once.
    """

    def __init__(self, client: AsyncWebClient, pacer: Pacer | None = None) -> None:
        self.client = client
        self.pacer = pacer or Pacer()
        self._identity: asyncio.Future[AsyncSlackResponse] | None = None

    async def identity(self) -> AsyncSlackResponse:
        """Who the bot is (`auth.test`): asked once, however many wait for it at first, and
        asked again only after a failure."""
        asked = self._identity
        if asked is None or (asked.done() and (asked.cancelled() or asked.exception())):
            asked = self._identity = asyncio.ensure_future(self.call("auth.test"))
        return await asyncio.shield(asked)  # a waiter cancelled leaves it to the others

    async def bot_user(self) -> str:
        """The bot's own user id."""
        return str((await self.identity())["user_id"])

    async def call(self, method: str, prepaid: bool = False, **args: Any) -> AsyncSlackResponse:
        """Call `method`, waiting for its budget (unless `prepaid` by `call_if_budget`'s `also`)."""
        channel = str(args.get("channel") or args.get("channel_id") or "")
        for attempt in range(1, ATTEMPTS + 1):
            if not prepaid or attempt > 1:
                await self.pacer.wait(method, channel)
            try:
                return await self._send(method, args)
            except SlackApiError as exc:
                if attempt == ATTEMPTS or not is_transient(exc):
                    raise
                status = exc.response.status_code
                if status == 429:  # the pacer now waits Retry-After before the next try
                    log.warning(
                        "Slack rate-limited %s (Retry-After %s)", method, self._delay(exc, 1)
                    )
                    self.pacer.rate_limited(method, channel, self._delay(exc, attempt))
                else:
                    await asyncio.sleep(self._delay(exc, attempt))
        raise AssertionError("unreachable")

    async def call_if_budget(
        self, method: str, also: tuple[str, ...] = (), **args: Any
    ) -> AsyncSlackResponse | None:
        """Call `method` only if it (and the later calls in `also`) fit the budget now."""
        channel = str(args.get("channel") or args.get("channel_id") or "")
        if not self.pacer.try_take(method, *also, channel=channel):
            return None
        try:
            return await self._send(method, args)
        except SlackApiError as exc:
            if exc.response.status_code == 429:
                self.pacer.rate_limited(method, channel, self._delay(exc, 1))
                return None
            raise

    def replies(self, channel: str, thread_ts: str, **args: Any) -> AsyncIterator[dict[str, Any]]:
        """The messages of a thread (`conversations.replies`), page by page, each paced."""
        limit = self.pacer.history.page_size
        return self._items(
            "conversations.replies", "messages", channel=channel, ts=thread_ts, limit=limit, **args
        )

    def history(self, channel: str, **args: Any) -> AsyncIterator[dict[str, Any]]:
        """A conversation's top-level messages, newest first (`conversations.history`), page by
        page, each paced."""
        limit = self.pacer.history.page_size
        return self._items(
            "conversations.history", "messages", channel=channel, limit=limit, **args
        )

    def conversations(self, types: str) -> AsyncIterator[dict[str, Any]]:
        """The conversations of `types` the bot is a member of (`users.conversations`)."""
        return self._items(
            "users.conversations", "channels", types=types, exclude_archived=True, limit=FULL_PAGE
        )

    async def _items(self, method: str, key: str, **args: Any) -> AsyncIterator[dict[str, Any]]:
        """The `key` items of a paged method's answers, following its cursor."""
        cursor = None
        while True:
            page = await self.call(method, cursor=cursor, **args)
            items: list[dict[str, Any]] = page.get(key, [])
            for item in items:
                yield item
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return

    async def respond(self, response_url: str, text: str) -> None:
        """Tell the person who typed a slash command, only them (its `response_url`)."""
        hook = AsyncWebhookClient(response_url, session=self.client.session, timeout=10)
        try:
            await hook.send(text=text, response_type="ephemeral", replace_original=False)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("could not reply to a command (%s): %s", response_url, exc)

    async def _send(self, method: str, args: dict[str, Any]) -> AsyncSlackResponse:
        function = getattr(self.client, method.replace(".", "_"))
        try:
            response: AsyncSlackResponse = await function(**args)
        except SlackApiError as exc:
            if exc.response.status_code == 429:
                RATE_LIMITED.labels(method).inc()
            raise
        return response

    @staticmethod
    def _delay(exc: SlackApiError, attempt: int) -> float:
        retry_after = exc.response.headers.get("Retry-After") or exc.response.headers.get(
            "retry-after"
        )
        try:
            return float(retry_after) if retry_after else 0.5 * 2.0 ** (attempt - 1)
        except ValueError:
            return 0.5 * 2.0 ** (attempt - 1)


def is_transient(exc: SlackApiError) -> bool:
    """Slack was busy (429) or failing (5xx): the same call may work later."""
    status: int = exc.response.status_code
    return status == 429 or status >= 500


def slack_error(exc: SlackApiError) -> str:
    return str(exc.response.get("error") or exc.response.status_code)
