"""Socket Mode: which envelopes are acknowledged first, and which once their work is stored."""

from __future__ import annotations

import time

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.adapter.socket_mode.async_internals import run_async_bolt_app, send_async_response
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest


class TutorSocketHandler(AsyncSocketModeHandler):
    """Routes each envelope to one of two Bolt apps sharing one connection.

    Slash commands and button clicks go to `app`, which acknowledges before any work (Slack
    shows the user an error after 3 s, and does not send them again). Events go to
    `events_app` (`process_before_response`), which acknowledges once the question is
    stored: if this process dies first, Slack delivers the event again, possibly to another
    replica, and the stored Slack ts makes the second delivery count once.
    """

    def __init__(self, app: AsyncApp, events_app: AsyncApp, app_token: str) -> None:
        super().__init__(app, app_token)
        self.events_app = events_app

    async def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        start = time.time()
        app = self.events_app if req.type == "events_api" else self.app
        response = await run_async_bolt_app(app, req)
        await send_async_response(client, req, response, start)
