"""Catch-up: questions asked in Slack threads while the bot was down."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.events import is_person_speaking, without_mentions
from bot.places import asker
from bot.web import SlackApi, slack_error
from looper.core import Tutor
from looper.models import ChatCompletionThread, utcnow

log = logging.getLogger(__name__)


async def catch_up(tutor: Tutor, api: SlackApi, window: timedelta) -> int:
    """Store the replies posted after each recently active thread's newest stored message.

    Reads each thread past what the store has (`conversations.replies` with `oldest`), paced
    within its tier; stored Slack ts make a message seen twice count once. Returns how many
    questions were added.
    """
    added = 0
    for thread in await tutor.threads.active_since(utcnow() - window):
        if "slack_channel" in thread.metadata:
            try:
                added += await _catch_up_thread(tutor, api, thread)
            except SlackApiError as exc:
                log.warning("catch-up of %s failed: %s", thread.id, slack_error(exc))
    return added


async def _catch_up_thread(tutor: Tutor, api: SlackApi, thread: ChatCompletionThread) -> int:
    channel = thread.metadata["slack_channel"]
    root = thread.metadata["slack_thread_ts"]
    known = [m.metadata.get("slack_ts", "") for m in await tutor.messages(thread.id)]
    newest = max([root, *[ts for ts in known if ts]], key=float)
    added = 0
    cursor = None
    while True:
        page = await api.call(
            "conversations.replies",
            channel=channel,
            ts=root,
            oldest=newest,
            limit=200,
            cursor=cursor,
        )
        messages: list[dict[str, Any]] = page.get("messages", [])
        for message in messages:
            if message["ts"] == root or float(message["ts"]) <= float(newest):
                continue
            if is_person_speaking(message):
                await tutor.ask(
                    without_mentions(message["text"]),
                    thread.id,
                    metadata=asker(message["user"], message["ts"]),
                    external_id=message["ts"],
                )
                added += 1
        cursor = (page.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            return added
