"""Socket Mode: which envelopes are acknowledged first, and which once their work is stored."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from typing import Any

from aiohttp import WSMessage
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.adapter.socket_mode.async_internals import run_async_bolt_app, send_async_response
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest

from looper.urgency import Urgency


class TutorSocketHandler(AsyncSocketModeHandler):
    """Routes each envelope to one of two Bolt apps sharing one connection.

    Slash commands and button clicks go to `app`, which acknowledges before any work (Slack
    shows the user an error after 3 s, and does not send them again). Events go to
    `events_app` (`process_before_response`), which acknowledges once the question is
    stored: if this process dies first, Slack delivers the event again, possibly to another
    replica, and the stored Slack ts makes the second delivery count once.
    """

    def __init__(
        self, app: AsyncApp, events_app: AsyncApp, app_token: str, urgency: Urgency
    ) -> None:
        super().__init__(app, app_token)
        self.events_app = events_app
        self.urgency = urgency  # the looper's: its streams step aside until the ack is sent
        self.frames = FramesRead(urgency)
        self.client.on_message_listeners.append(self.frames.read)

    async def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        start = time.time()
        if never_asks(req):
            await send_async_response(client, req, BoltResponse(status=200, body=""), start)
            return
        with self.urgency:
            self.frames.handled()  # urgent still, now as this envelope's own work
            app = self.events_app if req.type == "events_api" else self.app
            response = await run_async_bolt_app(app, req)
            await send_async_response(client, req, response, start)


class FramesRead:
    """A frame that may ask is urgent from when it is read until it is handled: slack_sdk
    passes each through a queue and a task of its own first, and each of those steps waits a
    turn of the event loop, long while answers stream. One that `handle` never sees (its
    connection closed first) stops counting after the urgency's `max_wait`."""

    def __init__(self, urgency: Urgency) -> None:
        self.urgency = urgency
        self.expiries: deque[asyncio.TimerHandle] = deque()  # one a frame, oldest first

    async def read(self, message: WSMessage) -> None:
        if not may_ask(message.data):
            return
        self.urgency.begin()
        expiry = asyncio.get_running_loop().call_later(self.urgency.max_wait, self._expired)
        self.expiries.append(expiry)

    def handled(self) -> None:
        if self.expiries:
            self.expiries.popleft().cancel()
            self.urgency.end()

    def _expired(self) -> None:
        self.expiries.popleft()  # the oldest: every frame waits the same time
        self.urgency.end()


def may_ask(frame: str) -> bool:
    """Whether a frame may hold a question or a command (not chatter, nor a hello)."""
    try:
        message = json.loads(frame)
    except ValueError:
        return False
    req = SocketModeRequest.from_dict(message) if isinstance(message, dict) else None
    return req is not None and not never_asks(req)


def never_asks(req: SocketModeRequest) -> bool:
    """Chatter or a bot's message: acknowledged without running the app, which would
    ignore it after dispatching it (about 50 µs an envelope)."""
    return is_chatter(req) or from_a_bot(req)


def is_chatter(req: SocketModeRequest) -> bool:
    """A top-level message in a channel: never a question (one that mentions the bot comes
    again as `app_mention`; replies in threads and DMs are questions). In a busy channel
    these are most envelopes, so they are acknowledged without running the app."""
    event = message_event(req)
    if event is None or event.get("channel_type") not in ("channel", "group"):
        return False
    thread_ts = event.get("thread_ts")
    return not thread_ts or thread_ts == event.get("ts")


def from_a_bot(req: SocketModeRequest) -> bool:
    """A bot's message: never a question. This bot's own roots and answers come back as
    such events, one or two an answer, while the next questions wait."""
    event = message_event(req)
    return event is not None and bool(event.get("bot_id"))


def message_event(req: SocketModeRequest) -> dict[str, Any] | None:
    if req.type != "events_api":
        return None
    event: dict[str, Any] = (req.payload or {}).get("event") or {}
    return event if event.get("type") == "message" else None
