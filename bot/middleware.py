"""Bolt middleware of the app that takes commands and clicks: each class does one thing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot.routes import Invocation, Route, parse

INVOCATION = "invocation"  # the context key of a parsed slash command
Next = Callable[[], Awaitable[BoltResponse]]


class ParseCommand(AsyncMiddleware):
    """Parses a slash command's text once, against the route table, into
    `context["invocation"]`: the ack and the router both read it from there."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = routes

    async def async_process(
        self, *, req: AsyncBoltRequest, resp: BoltResponse, next: Next
    ) -> BoltResponse | None:
        if req.body.get("command"):
            req.context[INVOCATION] = parse(req.body.get("text") or "", self.routes)
        return await next()


class AckFirst(AsyncMiddleware):
    """Acks before the listener runs, so Slack hears back at once and no listener can touch
    Slack first. A command with nothing to run (help, usage, an input error) is answered in
    the ack itself. A route that `stores_first` is left to its listener, which acks once its
    work is in the store: Slack never sends a slash command again, so an acknowledged one
    must not live only in this process's memory."""

    async def async_process(
        self, *, req: AsyncBoltRequest, resp: BoltResponse, next: Next
    ) -> BoltResponse | None:
        ack = req.context.ack
        invocation: Invocation | None = req.context.get(INVOCATION)
        said = invocation.reply if invocation else None
        stores_first = bool(invocation and invocation.route and invocation.route.stores_first)
        if ack is not None and ack.response is None and (said or not stores_first):
            await (ack(text=said) if said else ack())
        return await next()
