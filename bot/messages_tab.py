"""The bot's DM as Slack's AI surface: suggested prompts when a conversation can begin, and a
conversation's first question as its title.

Two generations of that surface: the assistant view (`features.assistant_view`) sends
`assistant_thread_started` with the new thread's ts, and prompts are set on that thread; the
agent view (`features.agent_view`) sends `app_home_opened` with `tab: messages` instead, and
prompts are set on the DM without a `thread_ts` (Slack silently ignores the call with one).
Either way the person's messages arrive as `message.im` and are answered in their threads by
`EventHandlers`, as any DM is.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.background import Background
from bot.formatting import markdown_safe, shortened
from bot.places import channel_place
from bot.throttle import PerKeyThrottle
from bot.web import SlackApi, slack_error
from looper.core import Tutor
from looper.models import BaseAssistant
from looper.store import StoreError

log = logging.getLogger(__name__)
PROMPTS_TITLE = "Try asking"
PROMPT_TITLE_CHARS = 60
TITLE_CHARS = 80
MOST_PROMPTS = 4  # Slack shows up to four


def suggested_prompts(assistant: BaseAssistant) -> list[dict[str, str]]:
    """The assistant's prompts as Slack takes them: a short title, the whole question as
    the message the person sends. The title is shown, so no mention can form in it."""
    return [
        {"title": markdown_safe(shortened(prompt, PROMPT_TITLE_CHARS)), "message": prompt}
        for prompt in assistant.prompts[:MOST_PROMPTS]
        if prompt.strip()
    ]


def conversation_title(question: str) -> str:
    """A conversation's title: its first question, on one line and short."""
    return markdown_safe(shortened(question, TITLE_CHARS))


class MessagesTab:
    """Suggests the DM's assistant's prompts when a conversation can begin."""

    def __init__(self, tutor: Tutor, api: SlackApi, quiet: float) -> None:
        self.tutor = tutor
        self.api = api
        self.later = Background()
        self.dms = PerKeyThrottle(self._suggest_in_dm, quiet)  # the tab is opened often

    async def on_thread_started(self, event: dict[str, Any]) -> None:
        """Assistant view: a new chat, with its own thread."""
        thread = event.get("assistant_thread") or {}
        if thread.get("channel_id") and thread.get("thread_ts"):
            self.later.start(self._suggest(thread["channel_id"], thread["thread_ts"]))

    async def on_context_changed(self, event: dict[str, Any]) -> None:
        """The person moved to another channel with a chat open. The DM's assistant answers
        wherever they look, so its prompts stand: nothing to change."""

    def opened(self, dm: str) -> None:
        """Agent view: the person opened the Messages tab (their DM with the bot)."""
        self.dms.request(dm)

    async def _suggest_in_dm(self, dm: str) -> None:
        await self._suggest(dm, thread_ts=None)

    async def _suggest(self, channel: str, thread_ts: str | None) -> None:
        try:
            assistant = await self.tutor.assistant_for(channel_place(channel))
            prompts = suggested_prompts(assistant)
            if not prompts:
                return
            args: dict[str, Any] = {"channel_id": channel, "prompts": prompts}
            if thread_ts:
                args["thread_ts"] = thread_ts
            await self.api.call(
                "assistant.threads.setSuggestedPrompts", title=PROMPTS_TITLE, **args
            )
        except SlackApiError as exc:
            log.info("could not suggest prompts in %s: %s", channel, slack_error(exc))
        except StoreError as exc:
            log.warning("could not read the prompts for %s: %s", channel, exc)


class ConversationTitles:
    """Titles a conversation in the DM by its first question."""

    def __init__(self, api: SlackApi) -> None:
        self.api = api
        self.later = Background()

    def started(self, channel: str, thread_ts: str, question: str) -> None:
        """A conversation began in the DM: its first question becomes its title (after the
        event is acknowledged; a title is not worth delaying that)."""
        self.later.start(self._title(channel, thread_ts, question))

    async def _title(self, channel: str, thread_ts: str, question: str) -> None:
        try:
            await self.api.call(
                "assistant.threads.setTitle",
                channel_id=channel,
                thread_ts=thread_ts,
                title=conversation_title(question),
            )
        except SlackApiError as exc:
            log.info("could not title the conversation %s: %s", thread_ts, slack_error(exc))
