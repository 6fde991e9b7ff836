"""The first sign of work: Slack's "is thinking…" status under a thread."""

from __future__ import annotations

from slack_sdk.errors import SlackApiError

from bot.formatting import THINKING
from bot.web import SlackApi


async def show_thinking(api: SlackApi, channel: str, thread_ts: str) -> bool:
    """Set the status (Tier 5: no budget to spend); False where Slack refuses it."""
    try:
        await api.call(
            "assistant.threads.setStatus", channel_id=channel, thread_ts=thread_ts, status=THINKING
        )
    except SlackApiError:
        return False
    return True
