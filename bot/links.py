"""Links to conversations in Slack."""

from __future__ import annotations

from slack_sdk.errors import SlackApiError

from bot.formatting import permalink_fallback
from bot.places import SlackThread
from bot.web import SlackApi
from looper.models import ChatCompletionThread


async def thread_link(api: SlackApi, thread: ChatCompletionThread) -> str | None:
    """A link to the thread's root message (`chat.getPermalink`, else Slack's documented
    form); None for a thread that lives outside Slack."""
    place = SlackThread.of(thread)
    if place is None:
        return None
    try:
        found = await api.call(
            "chat.getPermalink", channel=place.channel, message_ts=place.thread_ts
        )
        return str(found["permalink"])
    except SlackApiError:
        return permalink_fallback(place.channel, place.thread_ts)
