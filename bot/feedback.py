"""👍 / 👎 under answers: clicks, the "what was wrong?" modal, and what admins read back.

A click is acknowledged at once (`AckFirst`); the vote is stored after Slack hears back,
replacing the person's earlier vote on the same answer, and they are told (ephemerally)
that it counted. A 👎 also opens a one-line modal, first (its trigger lasts three seconds);
what they type there is stored with their 👎.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.background import Background
from bot.formatting import feedback_of, mrkdwn_safe, permalink_fallback
from bot.places import SlackThread, asker_key
from bot.web import SlackApi, slack_error
from looper.core import COMMENT_CHARS, Tutor
from looper.models import AssistantFeedback
from looper.store import StoreError

log = logging.getLogger(__name__)
COMMENT_VIEW = "tutor_feedback_comment"
COMMENT_BLOCK = COMMENT_ACTION = "comment"
COUNTED = {
    "up": "Thanks! Your :thumbsup: on that answer is counted.",
    "down": "Thanks! Your :thumbsdown: on that answer is counted.",
}
NOT_HERE = "That answer is not from this conversation; nothing was counted."


def comment_view(thread_id: str, answers: int) -> dict[str, Any]:
    """The modal a 👎 opens; its private metadata names the answer."""
    return {
        "type": "modal",
        "callback_id": COMMENT_VIEW,
        "private_metadata": json.dumps({"thread_id": thread_id, "answers": answers}),
        "title": {"type": "plain_text", "text": "What was wrong?"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Skip"},
        "blocks": [
            {
                "type": "input",
                "block_id": COMMENT_BLOCK,
                "optional": True,
                "label": {"type": "plain_text", "text": "What was wrong with the answer?"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": COMMENT_ACTION,
                    "max_length": COMMENT_CHARS,
                },
            }
        ],
    }


class FeedbackHandlers:
    """Stores the votes and comments people give answers."""

    def __init__(self, tutor: Tutor, api: SlackApi) -> None:
        self.tutor = tutor
        self.api = api
        self.later = Background()

    async def on_click(self, body: dict[str, Any], respond: Any) -> None:
        """A click, acknowledged already: handled after Slack hears back."""
        self.later.start(self._vote(body, respond))

    async def on_comment(self, body: dict[str, Any]) -> None:
        """A submitted modal, acknowledged (and closed) already."""
        self.later.start(self._comment(body))

    async def _vote(self, body: dict[str, Any], respond: Any) -> None:
        action = (body.get("actions") or [{}])[0]
        parsed = feedback_of(str(action.get("value") or ""))
        person = (body.get("user") or {}).get("id", "")
        channel = (body.get("channel") or {}).get("id", "")
        ts = (body.get("container") or {}).get("message_ts") or (body.get("message") or {}).get(
            "ts", ""
        )
        if parsed is None or not person:
            return
        vote, thread_id, answers = parsed
        try:
            if not await self._in_channel(thread_id, channel):
                await tell(respond, NOT_HERE)
                return
            if vote == "down":
                await self._ask_what_was_wrong(body, thread_id, answers)
            link = await self._permalink(channel, ts)
            ref = f"{channel}/{ts}" if channel and ts else None
            await self.tutor.vote(thread_id, answers, asker_key(person), vote, ref, link)
        except StoreError as exc:
            await tell(respond, str(exc))
            return
        await tell(respond, COUNTED[vote])

    async def _in_channel(self, thread_id: str, channel: str) -> bool:
        """The button names its thread: a click counts only from that thread's channel."""
        place = SlackThread.of(await self.tutor.thread(thread_id))
        return place is not None and place.channel == channel

    async def _ask_what_was_wrong(self, body: dict[str, Any], thread_id: str, answers: int) -> None:
        try:
            await self.api.call(
                "views.open",
                trigger_id=body.get("trigger_id", ""),
                view=comment_view(thread_id, answers),
            )
        except SlackApiError as exc:  # the vote counts without its comment
            log.info("could not open the feedback modal: %s", slack_error(exc))

    async def _permalink(self, channel: str, ts: str) -> str | None:
        if not (channel and ts):
            return None
        try:
            found = await self.api.call("chat.getPermalink", channel=channel, message_ts=ts)
        except SlackApiError as exc:
            log.info("no permalink for %s/%s: %s", channel, ts, slack_error(exc))
            return None
        return str(found["permalink"])

    async def _comment(self, body: dict[str, Any]) -> None:
        view = body.get("view") or {}
        person = (body.get("user") or {}).get("id", "")
        try:
            about = json.loads(view.get("private_metadata") or "{}")
            thread_id, answers = str(about["thread_id"]), int(about["answers"])
        except (ValueError, KeyError, TypeError):
            log.warning("a feedback modal without its answer: %r", view.get("private_metadata"))
            return
        values = (view.get("state") or {}).get("values") or {}
        comment = ((values.get(COMMENT_BLOCK) or {}).get(COMMENT_ACTION) or {}).get("value") or ""
        try:
            await self.tutor.comment(thread_id, answers, asker_key(person), comment)
        except StoreError as exc:
            log.warning("could not store a feedback comment: %s", exc)


async def tell(respond: Any, text: str) -> None:
    await respond(text=text, response_type="ephemeral", replace_original=False)


def feedback_report(report: list[AssistantFeedback], window: str) -> str:
    """What `/tutor feedback` shows: per assistant, the votes and the latest 👎 (`window`
    as typed: `7d`, `24h`)."""
    if not report:
        return f"No feedback in the last {window}."
    lines = [f"*Feedback, last {window}*"]
    for entry in report:
        lines.append(
            f"• *{mrkdwn_safe(entry.assistant.name)}*: :thumbsup: {entry.up}  "
            f":thumbsdown: {entry.down}"
        )
        for down in entry.latest_down:
            link = down.link or fallback_link(down.message_ref)
            shown = f"<{link}|answer>" if link else f"`{down.thread_id}`"
            said = f": “{mrkdwn_safe(down.comment)}”" if down.comment else ""
            when = down.updated_at.strftime("%Y-%m-%d %H:%M UTC")
            lines.append(f"    ◦ {shown} ({when}){said}")
    return "\n".join(lines)


def fallback_link(message_ref: str | None) -> str | None:
    channel, _, ts = (message_ref or "").partition("/")
    return permalink_fallback(channel, ts) if channel and ts else None
