"""Catch-up: questions asked in Slack threads while the bot was down."""

from __future__ import annotations

import logging
from datetime import timedelta

from slack_sdk.errors import SlackApiError

from bot.events import is_person_speaking, without_mentions
from bot.places import SlackThread, asker, slack_ts
from bot.web import SlackApi, slack_error
from looper.core import Tutor
from looper.models import utcnow

log = logging.getLogger(__name__)


async def catch_up(tutor: Tutor, api: SlackApi, window: timedelta) -> int:
    """Store the replies posted after each recently active thread's newest stored message.

    Reads each thread past what the store has (`conversations.replies` with `oldest`), paced
    within its tier; stored Slack ts make a message seen twice count once. Returns how many
    questions were added.
    """
    added = 0
    for thread in await tutor.threads.active_since(utcnow() - window):
        place = SlackThread.of(thread)
        if place is not None:
            try:
                added += await _catch_up_thread(tutor, api, thread.id, place)
            except SlackApiError as exc:
                log.warning("catch-up of %s failed: %s", thread.id, slack_error(exc))
    return added


async def _catch_up_thread(tutor: Tutor, api: SlackApi, thread_id: str, place: SlackThread) -> int:
    known = [slack_ts(m) for m in await tutor.messages(thread_id)]
    newest = max([place.thread_ts, *filter(None, known)], key=float)
    added = 0
    async for message in api.replies(place.channel, place.thread_ts, oldest=newest):
        if message["ts"] == place.thread_ts or float(message["ts"]) <= float(newest):
            continue
        if is_person_speaking(message):
            await tutor.ask(
                without_mentions(message["text"]),
                thread_id,
                metadata=asker(message["user"], message["ts"]),
                external_id=message["ts"],
            )
            added += 1
    return added
