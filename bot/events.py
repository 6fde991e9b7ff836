"""Slack events that become questions: thread replies, mentions, DMs, and Retry clicks.

Bolt already drops the bot's own events. Here: other bots' messages, edits, deletions and
other subtypes are ignored; a Slack ts is stored with each question, so an event delivered
twice (or as both `message` and `app_mention`) is asked once. A message's files (a
`file_share`) come with its question (see `bot/files.py`); a message of files alone is a
question too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.access import Access
from bot.admins import Admins
from bot.background import Background
from bot.files import Collected, EventFiles, FileReader
from bot.formatting import ANSWERED, answered_blocks, mrkdwn_safe, thread_of_root
from bot.messages_tab import ConversationTitles
from bot.places import USER, SlackThread, asker, asker_key, channel_place, is_dm
from bot.status import show_thinking
from bot.web import SlackApi, slack_error
from looper.core import InvalidInput, Tutor
from looper.models import ChatCompletionThread, NewMessage
from looper.store import Conflict, NotFound, StoreError

log = logging.getLogger(__name__)
JUST_POSTED_SECONDS = 30.0
DEFAULT_MAX_FILE_BYTES = 10_000_000
QUESTION_SUBTYPES = {None, "thread_broadcast", "file_share"}
MENTION = re.compile(r"<@[A-Z0-9]+>")


def is_person_speaking(event: dict[str, Any]) -> bool:
    return (
        event.get("subtype") in QUESTION_SUBTYPES
        and not event.get("bot_id")
        and bool(event.get("user"))
        and (bool(without_mentions(event.get("text", ""))) or bool(event.get("files")))
    )


def mentions_bot(event: dict[str, Any], context: dict[str, Any]) -> bool:
    """Whether the message mentions the bot (any mention, when the bot's id is unknown)."""
    bot_user = context.get("bot_user_id")
    text = event.get("text", "")
    return f"<@{bot_user}>" in text if bot_user else bool(MENTION.search(text))


def without_mentions(text: str) -> str:
    return MENTION.sub("", text).strip()


class EventHandlers:
    """Turns Slack messages into questions for the looper, as far as `access` allows."""

    def __init__(
        self, tutor: Tutor, api: SlackApi, access: Access, files: FileReader | None = None
    ) -> None:
        self.tutor = tutor
        self.api = api
        self.access = access
        self.files = files or FileReader(api, DEFAULT_MAX_FILE_BYTES)
        self.admins: Admins | None = access.admins  # who may retry any thread
        self.later = Background()
        self.titles = ConversationTitles(api)

    async def on_message(self, event: dict[str, Any], context: dict[str, Any]) -> None:
        """A reply in a tutor thread is a question; in a DM every message is one."""
        if not is_person_speaking(event):
            return
        thread_ts = event.get("thread_ts")
        in_dm = event.get("channel_type") == "im"
        # A mention outside a DM comes as an app_mention too: that one tells of a refusal.
        tells = in_dm or not mentions_bot(event, context)
        files = EventFiles(self.files, event)
        if thread_ts and thread_ts != event["ts"]:
            if await self._ask_in_thread(event, thread_ts, tells, files):
                return
        if in_dm:
            await self._start(event, context, thread_ts or event["ts"], files)

    async def on_mention(self, event: dict[str, Any], context: dict[str, Any]) -> None:
        """A mention starts a conversation rooted at itself (or joins the thread it is in)."""
        if not is_person_speaking(event):
            return
        thread_ts = event.get("thread_ts")
        files = EventFiles(self.files, event)
        if thread_ts and await self._ask_in_thread(event, thread_ts, True, files):
            return
        await self._start(event, context, thread_ts or event["ts"], files)

    async def _ask_in_thread(
        self, event: dict[str, Any], thread_ts: str, tells: bool, files: EventFiles
    ) -> bool:
        """Ask in the tutor thread at `thread_ts`; False when there is none."""
        thread = await self.tutor.threads.by_key(SlackThread(event["channel"], thread_ts).key)
        thread = thread or await self._being_placed(event["channel"], thread_ts)
        if thread is None:
            return False
        if not await self._may_ask(event, thread_ts, tells):
            return True
        attached = await self._read_files(event, thread_ts, files, tells)
        if attached is None:
            return True
        self._show_thinking(event["channel"], thread_ts)
        await self.tutor.ask(
            without_mentions(event.get("text", "")),
            thread.id,
            metadata=asker(event["user"], event["ts"], thinking_shown=True),
            external_id=event["ts"],
            asker=asker_key(event["user"]),
            place=channel_place(event["channel"]),
            attachments=attached.attachments,
        )
        return True

    async def _read_files(
        self, event: dict[str, Any], root: str, files: EventFiles, tells: bool
    ) -> Collected | None:
        """The event's files, read; when some are left out and `tells`, one line in the
        thread that only the asker sees. None when nothing is left to ask (no text, and no
        file could be read)."""
        collected = await files.get()
        if collected.note and tells:
            await self._tell(event, root, mrkdwn_safe(collected.note))
        if not without_mentions(event.get("text", "")) and not collected.attachments:
            return None
        return collected

    async def _being_placed(self, channel: str, root: str) -> ChatCompletionThread | None:
        """The thread of a root the looper has just posted but not yet recorded (a reply can
        come that fast), found by the root's metadata. Only for roots seconds old and only
        within the budget now, so that replies in other threads never wait or cost much."""
        if time.time() - float(root) > JUST_POSTED_SECONDS:
            return None
        found = await self.api.call_if_budget(
            "conversations.history",
            channel=channel,
            oldest=root,
            latest=root,
            inclusive=True,
            limit=1,
            include_all_metadata=True,
        )
        messages: list[dict[str, Any]] = found.get("messages", []) if found else []
        me = await self.api.bot_user()
        thread_id = next(filter(None, (thread_of_root(m, me) for m in messages)), None)
        if thread_id is None:
            return None
        with contextlib.suppress(NotFound):
            return await self.tutor.thread(thread_id)
        return None

    async def _start(
        self, event: dict[str, Any], context: dict[str, Any], root: str, files: EventFiles
    ) -> None:
        place = SlackThread(
            event["channel"], root, event.get("team") or context.get("team_id") or ""
        )
        allowed, found = await asyncio.gather(
            self._may_ask(event, root, tells=True),
            self.tutor.assistant_found_for(channel_place(place.channel)),
        )
        if not allowed:
            return
        assistant = found or await self.tutor.add_assistant()
        attached = await self._read_files(event, root, files, tells=True)
        if attached is None:
            return
        self._show_thinking(place.channel, root)
        question = NewMessage(
            content=without_mentions(event.get("text", "")),
            metadata=asker(event["user"], event["ts"], thinking_shown=True),
            external_id=event["ts"],
            asker=asker_key(event["user"]),
            place=channel_place(place.channel),
            attachments=attached.attachments,
        )
        try:
            await self.tutor.start_thread(
                assistant, place.metadata, question, external_key=place.key
            )
        except Conflict:  # the same event again, or message and app_mention for one post
            await self._ask_in_thread(event, root, False, files)
            return
        if is_dm(place.channel):
            named = ", ".join(a.name for a in question.attachments)
            self.titles.started(place.channel, root, question.content or named)

    def _show_thinking(self, channel: str, thread_ts: str) -> None:
        """ "is thinking…" under the thread while the question is stored. The status calls
        of a burst delay the acknowledgements (200 mentions: ack p99 about 150 ms instead
        of 90), but the person sees it about 35 ms sooner, and Slack waits 3 s for an ack.
        The question says it shows; where Slack refuses it, which it rarely does, the
        answer's stream or post is the first sign of work instead."""
        self.later.start(show_thinking(self.api, channel, thread_ts))

    async def _may_ask(self, event: dict[str, Any], root: str, tells: bool) -> bool:
        """Whether the asker may ask here; if not and `tells`, one line in the thread that
        only they see (never a public reply)."""
        refused = await self.access.refusal(event["user"], event["channel"])
        refused = refused or self._too_long(event)
        if refused is None:
            return True
        if tells:
            await self._tell(event, root, refused)
        return False

    async def _tell(self, event: dict[str, Any], root: str, text: str) -> None:
        """One line in the thread that only the asker sees."""
        try:
            await self.api.call(
                "chat.postEphemeral",
                channel=event["channel"],
                user=event["user"],
                thread_ts=root,
                text=text,
            )
        except SlackApiError as exc:
            log.info("could not tell %s: %s", event["user"], slack_error(exc))

    def _too_long(self, event: dict[str, Any]) -> str | None:
        try:
            self.tutor.check_question(
                without_mentions(event.get("text", "")), bool(event.get("files"))
            )
        except InvalidInput as refused:
            return f"Not asked: {refused}."
        return None

    async def on_retry(self, body: dict[str, Any], respond: Any) -> None:
        """A click, acknowledged already: handled after Slack hears back."""
        self.later.start(self._retry(body, respond))

    async def _retry(self, body: dict[str, Any], respond: Any) -> None:
        """The Retry button under an error reply asks the thread's question again; on a
        question answered meanwhile, it says so and the button goes."""
        thread_id = (body.get("actions") or [{}])[0].get("value", "")
        try:
            if not await self._may_retry(body, thread_id):
                text = "Only people who can see that conversation may retry it."
                await respond(text=text, response_type="ephemeral", replace_original=False)
                return
            retried = await self.tutor.retry(thread_id)
        except StoreError as exc:
            await respond(text=str(exc), response_type="ephemeral", replace_original=False)
            return
        message = body.get("message") or {}
        channel = (body.get("channel") or {}).get("id", "")
        if retried:
            await show_thinking(self.api, channel, message.get("thread_ts", message.get("ts", "")))
        else:
            await self._tidy(channel, message.get("ts", ""))
        text = "Asking again…" if retried else "That question has been answered already."
        await respond(text=text, response_type="ephemeral", replace_original=False)

    async def _may_retry(self, body: dict[str, Any], thread_id: str) -> bool:
        """Whether the clicker may see the thread: a click from the thread's own channel
        (Slack shows the button only to those who see that channel), its asker, or an admin.
        The button's value names the thread, so a click elsewhere must not stand for it."""
        thread = await self.tutor.thread(thread_id)
        place = SlackThread.of(thread)
        if place and place.channel == (body.get("channel") or {}).get("id"):
            return True
        clicker = (body.get("user") or {}).get("id", "")
        if clicker and clicker == thread.metadata.get(USER):
            return True
        return self.admins is not None and await self.admins.allows(clicker)

    async def _tidy(self, channel: str, ts: str) -> None:
        try:
            await self.api.call(
                "chat.update", channel=channel, ts=ts, text=ANSWERED, blocks=answered_blocks()
            )
        except SlackApiError as exc:
            log.info("could not tidy the error reply %s: %s", ts, slack_error(exc))
