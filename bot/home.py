"""The app's Home tab: how to ask, the assistants, the person's own conversations and, for
admins, which channel talks to which assistant. Published with `views.publish` when a person
opens it, at most once every few seconds per person (`PerKeyThrottle`)."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import timedelta
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.admins import Admins
from bot.feedback import feedback_report
from bot.formatting import mrkdwn_safe, shortened
from bot.links import thread_link
from bot.places import SlackThread, asker_key, channel_of_place, is_dm
from bot.throttle import PerKeyThrottle
from bot.usage import TOP, shown_key, summary, total
from bot.web import SlackApi, slack_error
from looper.core import Tutor
from looper.models import AssistantFeedback, BaseAssistant, Conversation, UsageLine, utcnow
from looper.store import StoreError

log = logging.getLogger(__name__)
RECENT = 5  # the person's conversations shown
ADMIN_DAYS = 7  # the span of the admins' usage and feedback
LATEST_DOWN = 3  # 👎 shown per assistant
MOST_ASSISTANTS = 20  # a Home tab holds at most 100 blocks
PURPOSE_CHARS = 200
QUESTION_CHARS = 80
SECTION_CHARS = 2900  # Slack refuses a section's text over 3000 characters
EMOJI = re.compile(r":[a-z0-9_+'-]+:")
NOT_ENABLED = (
    " (turn the Home tab on: the app's page → App Home → Show Tabs → Home Tab, or"
    " `home_tab_enabled: true` in its manifest)"
)
SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def purpose(assistant: BaseAssistant) -> str:
    """What an assistant is for: the first sentence of its instructions."""
    first = SENTENCE_END.split(assistant.instructions.strip(), maxsplit=1)[0]
    return shortened(first, PURPOSE_CHARS)


def section(text: str, accessory: dict[str, Any] | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "section",
        "text": {"type": "mrkdwn", "text": shortened_lines(text, SECTION_CHARS)},
    }
    if accessory:
        block["accessory"] = accessory
    return block


def shortened_lines(text: str, limit: int) -> str:
    """Whole lines of `text` up to `limit` characters."""
    if len(text) <= limit:
        return text
    kept = text[:limit].rsplit("\n", 1)[0]
    return kept + "\n…"


def header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": text}}


def how_to_ask(bot_user: str) -> list[dict[str, Any]]:
    return [
        header("Ask a tutor"),
        section(
            "• `/tutor ask <question>` in a channel: the answer arrives in the thread of your "
            "question\n"
            f"• <@{bot_user}> and your question at the top of a channel, or a message to me in "
            "*Messages*: each starts a conversation in its thread\n"
            "• a reply in a conversation's thread follows up, with the whole conversation as "
            "context\n"
            "`/tutor help` lists every command."
        ),
    ]


def assistant_blocks(assistants: list[BaseAssistant]) -> list[dict[str, Any]]:
    if not assistants:
        return []
    blocks = [header("Assistants")]
    for assistant in assistants[:MOST_ASSISTANTS]:
        emoji = f"{assistant.icon} " if assistant.icon and EMOJI.fullmatch(assistant.icon) else ""
        text = f"{emoji}*{mrkdwn_safe(assistant.name)}*\n{mrkdwn_safe(purpose(assistant))}"
        blocks.append(section(text, icon_image(assistant)))
    return blocks


def icon_image(assistant: BaseAssistant) -> dict[str, Any] | None:
    """An image URL icon as the section's picture."""
    icon = assistant.icon or ""
    if not icon.startswith("https://"):
        return None
    return {"type": "image", "image_url": icon, "alt_text": shortened(assistant.name, 100)}


def conversation_line(conversation: Conversation, names: dict[str, str], link: str | None) -> str:
    thread = conversation.thread
    topic = mrkdwn_safe(shortened(conversation.first_question, QUESTION_CHARS) or "(no question)")
    shown = f"<{link}|{topic}>" if link else topic
    place = SlackThread.of(thread)
    where = (
        "" if place is None else " in a DM" if is_dm(place.channel) else f" in <#{place.channel}>"
    )
    name = mrkdwn_safe(names.get(thread.assistant_id, "an assistant"))
    when = thread.last_activity.strftime("%Y-%m-%d %H:%M UTC") if thread.last_activity else ""
    return f"• {shown} — *{name}*{where}, {thread.message_count} messages, last {when}"


def conversation_blocks(lines: list[str]) -> list[dict[str, Any]]:
    text = "\n".join(lines) or "None yet: ask away."
    return [header("Your recent conversations"), section(text)]


def bindings_blocks(bound: dict[str, BaseAssistant], default: str | None) -> list[dict[str, Any]]:
    lines = [
        f"• {'a DM' if is_dm(channel) else f'<#{channel}>'} → *{mrkdwn_safe(assistant.name)}*"
        for place, assistant in bound.items()
        if (channel := channel_of_place(place))
    ]
    others = f"Everywhere else: *{mrkdwn_safe(default)}*." if default else ""
    text = "\n".join([*lines, others]).strip() or "No channel has an assistant yet."
    return [header("Channels and their assistants (admins)"), section(text)]


def usage_blocks(by_user: list[UsageLine], by_model: list[UsageLine]) -> list[dict[str, Any]]:
    people = [f"• {shown_key('user', x.key)}: {summary(x)}" for x in by_user[:TOP]]
    text = "\n".join([f"All: {summary(total(by_model))}", *people])
    return [header(f"Usage, last {ADMIN_DAYS} days (admins)"), section(text)]


def feedback_blocks(report: list[AssistantFeedback]) -> list[dict[str, Any]]:
    text = feedback_report(report, f"{ADMIN_DAYS} days").removeprefix(
        f"*Feedback, last {ADMIN_DAYS} days*\n"
    )
    return [header(f"Feedback, last {ADMIN_DAYS} days (admins)"), section(text)]


class HomeTab:
    """Publishes a person's Home tab when they open it."""

    def __init__(self, tutor: Tutor, api: SlackApi, admins: Admins, quiet: float) -> None:
        self.tutor = tutor
        self.api = api
        self.admins = admins
        self.throttle = PerKeyThrottle(self.publish, quiet)

    def opened(self, user: str) -> None:
        """The person opened the Home tab: publish it soon (acknowledging waits for none)."""
        self.throttle.request(user)

    async def publish(self, user: str) -> None:
        try:
            view = {"type": "home", "blocks": await self.blocks(user)}
            await self.api.call("views.publish", user_id=user, view=view)
        except SlackApiError as exc:
            error = slack_error(exc)
            hint = NOT_ENABLED if error == "not_enabled" else ""
            log.warning("could not publish the Home tab of %s: %s%s", user, error, hint)
        except StoreError as exc:
            log.warning("could not read the Home tab of %s: %s", user, exc)

    async def blocks(self, user: str) -> list[dict[str, Any]]:
        assistants = await self.tutor.list_assistants()
        conversations = await self.tutor.conversations_of(asker_key(user), RECENT)
        links = await asyncio.gather(*(thread_link(self.api, c.thread) for c in conversations))
        names = {a.id: a.name for a in assistants}
        lines = [
            conversation_line(c, names, link) for c, link in zip(conversations, links, strict=True)
        ]
        blocks = [
            *how_to_ask(await self.api.bot_user()),
            *assistant_blocks(assistants),
            *conversation_blocks(lines),
        ]
        if await self.admins.allows(user):
            blocks += await self.admin_blocks(assistants)
        return blocks

    async def admin_blocks(self, assistants: list[BaseAssistant]) -> list[dict[str, Any]]:
        """Where each assistant answers, what answers cost lately, and recent 👎."""
        since = utcnow() - timedelta(days=ADMIN_DAYS)
        bound, by_user, by_model, report = await asyncio.gather(
            self.tutor.bindings(),
            self.tutor.usage(since, "user"),
            self.tutor.usage(since, "model"),
            self.tutor.feedback(since, latest=LATEST_DOWN),
        )
        default = assistants[0].name if assistants else None  # the oldest answers unbound
        return [
            *bindings_blocks(bound, default),
            *usage_blocks(by_user, by_model),
            *feedback_blocks(report),
        ]
