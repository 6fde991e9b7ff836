"""What the bot writes into Slack: message metadata, long answers split, Block Kit."""

from __future__ import annotations

import re
from typing import Any

from looper.models import Vote

MARKDOWN_LIMIT = 12_000  # chat.* `markdown_text`
PART_LIMIT = 11_000  # room for a closing code fence
RETRY_ACTION = "tutor_retry"
FEEDBACK_ACTION = "tutor_feedback"
THINKING = "is thinking…"
ANSWERED = ":white_check_mark: Answered after all: see below."
NOT_IN_CHANNEL = "I can't post here yet: invite me with `/invite @tutor` and try again."


USER_MENTION = re.compile(r"(<@[UW][A-Z0-9]+(?:\|[^<>]*)?>)")
BARE_AMPERSAND = re.compile(r"&(?!(?:amp|lt|gt);)")
PINGING = re.compile(r"<(?=[!@#])")
WORD_JOINER = "\u2060"


def mrkdwn_safe(text: str, keep_user_mentions: bool = False) -> str:
    """Text from a person or a model, fit for a `text` field or a mrkdwn block: `&`, `<`
    and `>` escaped, so no `<!channel>`, `<!here>`, `<!everyone>` or `<!subteam^…>` pings.
    Entities already escaped (Slack sends people's text so) stay as they are; with
    `keep_user_mentions`, so do `<@U…>` mentions (in the echo of a person's own question)."""
    pieces = USER_MENTION.split(text) if keep_user_mentions else [text]
    return "".join(
        piece
        if index % 2
        else BARE_AMPERSAND.sub("&amp;", piece).replace("<", "&lt;").replace(">", "&gt;")
        for index, piece in enumerate(pieces)
    )


def markdown_safe(text: str) -> str:
    """A model's answer, fit for `markdown_text`: a word joiner after each `<` of `<!`,
    `<@` and `<#`, so that no mention forms and nothing pings.

    Not entity escaping: `markdown_text` is standard markdown meant for a model's raw
    output, where `&lt;` would show as such in code. The invisible joiner renders the same
    anywhere, and inserted after the `<` it keeps every prefix of a streamed answer
    a prefix of the whole."""
    return PINGING.sub("<" + WORD_JOINER, text)


def shortened(text: str, limit: int) -> str:
    """`text` on one line, cut to `limit` characters with an ellipsis (after a whole word
    where one ends in its second half)."""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    cut = line[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip() + "…"


def thread_metadata(thread_id: str, assistant_id: str) -> dict[str, Any]:
    """On a root message: which tutor thread this Slack thread is."""
    return {
        "event_type": "tutor_thread",
        "event_payload": {"thread_id": thread_id, "assistant_id": assistant_id},
    }


def thread_of_root(message: dict[str, Any], bot_user: str) -> str | None:
    """The tutor thread a root message names in its metadata, else None; only a message the
    bot posted itself counts (another app could post the same metadata)."""
    metadata = message.get("metadata") or {}
    if metadata.get("event_type") != "tutor_thread" or message.get("user") != bot_user:
        return None
    return str((metadata.get("event_payload") or {}).get("thread_id") or "") or None


def answer_metadata(thread_id: str, answers: int, part: int = 1) -> dict[str, Any]:
    """On every answer message: the thread and the user message it answers."""
    payload: dict[str, Any] = {"thread_id": thread_id, "answers": str(answers)}
    if part > 1:
        payload["part"] = part
    return {"event_type": "tutor_answer", "event_payload": payload}


def answers_of(message: dict[str, Any]) -> tuple[str, str, int] | None:
    """(thread id, answered message id, part) of one of our answer messages, else None."""
    metadata = message.get("metadata") or {}
    if metadata.get("event_type") != "tutor_answer":
        return None
    payload = metadata.get("event_payload") or {}
    return str(payload.get("thread_id")), str(payload.get("answers")), int(payload.get("part", 1))


def split_markdown(text: str, limit: int = PART_LIMIT) -> list[str]:
    """Split at line ends into parts of at most `limit` characters, losing nothing.

    A code block cut in two is closed at the end of one part and reopened in the next.
    """
    parts: list[str] = []
    current = ""
    fence: str | None = None  # the opening line of a code block we are inside
    for line in text.splitlines(keepends=True):
        while len(line) > limit:  # a single line longer than a part: hard cut
            room = limit - len(current)
            current, line = current + line[:room], line[room:]
            parts.append(current)
            current = ""
        closing = "\n```" if fence else ""
        if current and len(current) + len(line) + len(closing) > limit:
            parts.append(current.rstrip("\n") + closing)
            current = fence + "\n" if fence else ""
        current += line
        if line.lstrip().startswith("```"):
            fence = None if fence else line.strip()
    if current or not parts:
        parts.append(current)
    return parts


def split_after_streamed(text: str, streamed: int) -> list[str]:
    """Parts of `text` whose first part begins with the `streamed` characters already shown."""
    parts = split_markdown(text)
    if streamed <= len(parts[0]) and parts[0].startswith(text[:streamed]):
        return parts
    return [text[:streamed], *split_markdown(text[streamed:])]


def feedback_blocks(thread_id: str, answers: int) -> list[dict[str, Any]]:
    """👍 / 👎 under a finished answer (a `context_actions` block of `feedback_buttons`);
    each button's value names its vote and the answer (see `feedback_of`)."""

    def button(vote: str, emoji: str, label: str) -> dict[str, Any]:
        return {
            "text": {"type": "plain_text", "text": emoji},
            "accessibility_label": label,
            "value": f"{vote}:{thread_id}:{answers}",
        }

    return [
        {
            "type": "context_actions",
            "block_id": f"{FEEDBACK_ACTION}_{answers}",
            "elements": [
                {
                    "type": "feedback_buttons",
                    "action_id": FEEDBACK_ACTION,
                    "positive_button": button("up", "👍", "This answer helped"),
                    "negative_button": button("down", "👎", "This answer was wrong or unhelpful"),
                }
            ],
        }
    ]


def final_part(part: str, thread_id: str, answers: int) -> dict[str, Any]:
    """The content of an answer's last message: its text in a `markdown` block (a message's
    `markdown_text` cannot go with blocks) followed by the feedback buttons; `text` is what
    notifications show."""
    shown = [{"type": "markdown", "text": part}] if part else []
    return {"text": part or "…", "blocks": shown + feedback_blocks(thread_id, answers)}


def feedback_of(value: str) -> tuple[Vote, str, int] | None:
    """(vote, thread id, answered message id) of a feedback button's value, else None."""
    said, _, rest = value.partition(":")
    thread_id, _, answers = rest.rpartition(":")
    if said not in ("up", "down") or not thread_id or not answers.isdigit():
        return None
    vote: Vote = "up" if said == "up" else "down"
    return vote, thread_id, int(answers)


def error_text(error: str) -> str:
    return f"Sorry, no answer this time: {mrkdwn_safe(error)}"


def error_blocks(error: str, thread_id: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "section",
            "block_id": "tutor_error",
            "text": {"type": "mrkdwn", "text": f":warning: {mrkdwn_safe(error)}"},
        },
        {
            "type": "actions",
            "block_id": RETRY_ACTION,
            "elements": [
                {
                    "type": "button",
                    "action_id": RETRY_ACTION,
                    "text": {"type": "plain_text", "text": "Retry"},
                    "value": thread_id,
                }
            ],
        },
    ]


def answered_blocks() -> list[dict[str, Any]]:
    """What an error reply becomes once its question is answered: no Retry button."""
    return [
        {
            "type": "section",
            "block_id": "tutor_error",
            "text": {"type": "mrkdwn", "text": ANSWERED},
        }
    ]


def error_metadata(thread_id: str, answers: int) -> dict[str, Any]:
    return {
        "event_type": "tutor_error",
        "event_payload": {"thread_id": thread_id, "answers": str(answers)},
    }


def permalink_fallback(channel: str, ts: str) -> str:
    return f"https://slack.com/archives/{channel}/p{ts.replace('.', '')}"
