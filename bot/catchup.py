"""Catch-up: what was asked in Slack while no replica was running.

Slack delivers no events to an app with no connection, so at start the bot reads what it
missed within the catch-up window: replies in the threads it knows, and top-level mentions
and DMs in the conversations it is a member of. Both run in the background once connected,
paced within their budgets. A stored Slack ts (per message) and a stored thread key (per
conversation) make a message seen twice, by two replicas or live and here, count once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.access import Access
from bot.events import EventHandlers, is_person_speaking, without_mentions
from bot.files import EventFiles, FileReader
from bot.places import SlackThread, asker, asker_key, channel_place, slack_ts
from bot.web import SlackApi, slack_error
from looper.core import InvalidInput, Tutor
from looper.models import utcnow

log = logging.getLogger(__name__)
# Group DMs are left out: there, as in channels, only mentions start conversations, and
# listing them needs a scope (mpim:read) the app does not otherwise use.
CONVERSATION_TYPES = "public_channel,private_channel,im"


async def catch_up(
    tutor: Tutor,
    api: SlackApi,
    window: timedelta,
    access: Access,
    files: FileReader | None = None,
) -> None:
    """Ask what was missed in the last `window`: thread replies and new conversations
    (with their files), as far as `access` allows.

    The two read different methods (`conversations.replies`, `conversations.history`),
    each with its own budget, so they run side by side.
    """
    since = utcnow() - window
    events = EventHandlers(tutor, api, access, files)
    replies = ThreadReplies(tutor, api, access, events.files)
    added, started = await asyncio.gather(
        replies.catch_up_all(since), start_missed(events, api, replies, since)
    )
    log.warning("catch-up done: conversations started: %d, replies asked: %d", started, added)


async def start_missed(
    events: EventHandlers, api: SlackApi, replies: ThreadReplies, since: datetime
) -> int:
    """Start the conversations missed since `since`; returns how many were started."""
    try:
        me = await BotUser.of(api)
        return await MissedConversations(events, replies, me).start_all(since)
    except SlackApiError as exc:
        log.warning("catch-up of mentions and DMs failed: %s", slack_error(exc))
        return 0


class ThreadReplies:
    """Stores the replies posted in known threads after their newest stored message (a
    refused asker's are left out, silently: the refusal was not live)."""

    def __init__(self, tutor: Tutor, api: SlackApi, access: Access, files: FileReader) -> None:
        self.tutor = tutor
        self.api = api
        self.access = access
        self.files = files

    async def catch_up_all(self, since: datetime) -> int:
        """Catch up each thread active since `since`; returns how many questions were added."""
        added = 0
        for thread in await self.tutor.threads.active_since(since):
            place = SlackThread.of(thread)
            if place is not None:
                try:
                    added += await self.catch_up(thread.id, place)
                except SlackApiError as exc:
                    log.warning("catch-up of %s failed: %s", thread.id, slack_error(exc))
        return added

    async def catch_up(self, thread_id: str, place: SlackThread) -> int:
        """Read the thread past what the store has (`oldest`) and ask what people wrote."""
        known = [slack_ts(m) for m in await self.tutor.messages(thread_id)]
        newest = max([place.thread_ts, *filter(None, known)], key=float)
        added = 0
        async for message in self.api.replies(place.channel, place.thread_ts, oldest=newest):
            if message["ts"] == place.thread_ts or float(message["ts"]) <= float(newest):
                continue
            if await self._may_ask(message, place):
                attached = await EventFiles(self.files, message).get()
                try:
                    await self.tutor.ask(
                        without_mentions(message.get("text", "")),
                        thread_id,
                        metadata=asker(message["user"], message["ts"]),
                        external_id=message["ts"],
                        asker=asker_key(message["user"]),
                        place=channel_place(place.channel),
                        attachments=attached.attachments,
                    )
                except InvalidInput as refused:
                    log.info("catch-up skipped a question in %s: %s", thread_id, refused)
                    continue
                added += 1
        return added

    async def _may_ask(self, message: dict[str, Any], place: SlackThread) -> bool:
        if not is_person_speaking(message):
            return False
        return await self.access.refusal(message["user"], place.channel) is None


@dataclass(frozen=True)
class BotUser:
    """Who the bot is in the workspace (`SlackApi.identity`, which Bolt's authorization
    uses too)."""

    user_id: str
    team_id: str

    @classmethod
    async def of(cls, api: SlackApi) -> BotUser:
        answer = await api.identity()
        return cls(str(answer["user_id"]), str(answer["team_id"]))

    def is_mentioned(self, message: dict[str, Any]) -> bool:
        return f"<@{self.user_id}>" in message.get("text", "")

    def replied(self, message: dict[str, Any]) -> bool:
        """Whether Slack lists the bot among the thread's repliers (`reply_users`)."""
        return self.user_id in message.get("reply_users", [])


class MissedConversations:
    """Starts the conversations that top-level mentions and DMs asked for while the bot was
    down, through the live event handlers (same thread root, same key, same first question).

    A message is answered already when the store has a thread under its key. The bot among
    its thread's repliers counts too: that costs no call and keeps a store that lost the
    thread (a new database) from answering a second time.
    """

    def __init__(self, events: EventHandlers, replies: ThreadReplies, me: BotUser) -> None:
        self.tutor = events.tutor
        self.api = events.api
        self.events = events
        self.replies = replies
        self.me = me

    async def start_all(self, since: datetime) -> int:
        """Read each conversation the bot is a member of since `since`."""
        started = 0
        async for conversation in self.api.conversations(CONVERSATION_TYPES):
            started += await self._start_in(conversation, f"{since.timestamp():.6f}")
        return started

    async def _start_in(self, conversation: dict[str, Any], oldest: str) -> int:
        channel, is_dm = conversation["id"], bool(conversation.get("is_im"))
        started = 0
        try:
            async for message in self.api.history(channel, oldest=oldest):
                if await self._unanswered(channel, message, is_dm):
                    started += await self._start(channel, message, is_dm)
        except SlackApiError as exc:
            log.warning("catch-up of %s failed: %s", channel, slack_error(exc))
        return started

    async def _unanswered(self, channel: str, message: dict[str, Any], is_dm: bool) -> bool:
        """A person's top-level message (any in a DM, one that mentions the bot elsewhere)
        that no thread answers."""
        top_level = message.get("thread_ts", message["ts"]) == message["ts"]
        if not (top_level and is_person_speaking(message)):
            return False
        if not (is_dm or self.me.is_mentioned(message)) or self.me.replied(message):
            return False
        return await self.tutor.threads.by_key(SlackThread(channel, message["ts"]).key) is None

    async def _start(self, channel: str, message: dict[str, Any], is_dm: bool) -> bool:
        """Start it through the live handlers; False when access refused it."""
        event = {**message, "channel": channel, "channel_type": "im" if is_dm else "channel"}
        context = {"team_id": self.me.team_id}
        if is_dm:
            await self.events.on_message(event, context)
        else:
            await self.events.on_mention(event, context)
        place = SlackThread(channel, message["ts"], self.me.team_id)
        thread = await self.tutor.threads.by_key(place.key)
        if thread is not None and message.get("reply_count"):  # questions in its thread too
            await self.replies.catch_up(thread.id, place)
        return thread is not None
