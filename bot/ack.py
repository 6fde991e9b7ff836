"""Acknowledge every envelope before any listener runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot.commands import problem


class AckFirst(AsyncMiddleware):
    """Acks before the listener runs, so Slack hears back at once and no listener can touch
    the store or Slack first. A /tutor command with nothing to run (help, usage, an input
    error) is answered in the ack itself. Bolt also stops waiting for the listener's ack."""

    async def async_process(
        self,
        *,
        req: AsyncBoltRequest,
        resp: BoltResponse,
        next: Callable[[], Awaitable[BoltResponse]],
    ) -> BoltResponse | None:
        ack = req.context.ack
        if ack is not None and ack.response is None:
            said = problem(req.body) if req.body.get("command") else None
            await (ack(text=said) if said else ack())
        return await next()
