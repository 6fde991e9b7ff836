"""Bolt's authorization through `OneWorkspace`: what an event and a command meet when Slack
will not say who the bot is."""

from __future__ import annotations

import json
from typing import Any

from slack_bolt.adapter.socket_mode.async_internals import run_async_bolt_app
from slack_sdk.socket_mode.request import SocketModeRequest

from bot.app import bolt_app
from bot.web import SlackApi, make_client
from fakes.slack_server import BOT_TOKEN, BOT_USER, FakeSlack, event_payload
from tests.slack_user import CLASS, STUDENT

ATTEMPTS = 4  # bot.web's: a call refused this often raises


def request(kind: str, payload: dict[str, Any]) -> SocketModeRequest:
    """An envelope as the Socket Mode client hands it to the app."""
    made = SocketModeRequest.from_dict({"type": kind, "envelope_id": "e1", "payload": payload})
    assert made is not None
    return made


def mention(ts: str) -> SocketModeRequest:
    event = {
        "type": "app_mention",
        "user": STUDENT,
        "text": f"<@{BOT_USER}> hi",
        "ts": ts,
        "channel": CLASS,
        "event_ts": ts,
    }
    return request("events_api", event_payload(event))


async def test_an_event_is_left_unacknowledged_while_slack_is_busy(fake_slack: FakeSlack) -> None:
    """Bolt's own answer would acknowledge it, asking to reinstall the app: the event lost."""
    api = SlackApi(make_client(BOT_TOKEN, fake_slack.base_url))
    app = bolt_app("tutor-events", api)  # as `tutor run` builds its apps
    heard: list[dict[str, Any]] = []

    async def on_mention(event: dict[str, Any]) -> None:
        heard.append(event)

    app.event("app_mention")(on_mention)
    for _ in range(ATTEMPTS):
        fake_slack.fail_next("auth.test", 429, retry_after=1)
    refused = await run_async_bolt_app(app, mention("1.0"))
    assert refused.status == 500 and heard == []  # not acknowledged: Slack sends it again
    again = await run_async_bolt_app(app, mention("1.0"))
    assert again.status == 200 and [e["ts"] for e in heard] == ["1.0"]


async def test_a_command_is_told_that_slack_is_busy(fake_slack: FakeSlack) -> None:
    """Slack never sends a command again: unacknowledged, the person would only read that it
    failed; acknowledged with Bolt's answer, that the app needs reinstalling."""
    api = SlackApi(make_client(BOT_TOKEN, fake_slack.base_url))
    app = bolt_app("tutor", api)
    heard: list[str] = []

    async def on_command(ack: Any, body: dict[str, Any]) -> None:
        heard.append(body["text"])
        await ack()

    app.command("/tutor")(on_command)
    for _ in range(ATTEMPTS):
        fake_slack.fail_next("auth.test", 429, retry_after=1)
    command = request("slash_commands", fake_slack.command_payload(STUDENT, CLASS, "ask hi"))
    refused = await run_async_bolt_app(app, command)
    told = json.loads(refused.body)["text"]
    assert refused.status == 200 and heard == []
    assert told.startswith("Slack did not answer tutor just now (ratelimited)"), told
    again = await run_async_bolt_app(app, command)
    assert again.status == 200 and heard == ["ask hi"]
