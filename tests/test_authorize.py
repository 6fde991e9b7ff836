"""Bolt's authorization through `OneWorkspace`: what an event meets when Slack will not say
who the bot is."""

from __future__ import annotations

from typing import Any

from slack_bolt.adapter.socket_mode.async_internals import run_async_bolt_app
from slack_sdk.socket_mode.request import SocketModeRequest

from bot.app import bolt_app
from bot.web import SlackApi, make_client
from fakes.slack_server import APP_ID, BOT_TOKEN, BOT_USER, TEAM, FakeSlack
from tests.slack_user import CLASS, STUDENT

ATTEMPTS = 4  # bot.web's: a call refused this often raises


def mention(ts: str) -> SocketModeRequest:
    event = {
        "type": "app_mention",
        "user": STUDENT,
        "text": f"<@{BOT_USER}> hi",
        "ts": ts,
        "channel": CLASS,
        "event_ts": ts,
    }
    payload = {
        "type": "event_callback",
        "team_id": TEAM,
        "api_app_id": APP_ID,
        "event": event,
        "event_id": f"Ev{ts}",
        "event_time": 1,
    }
    request = SocketModeRequest.from_dict(
        {"type": "events_api", "envelope_id": f"e{ts}", "payload": payload}
    )
    assert request is not None
    return request


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
