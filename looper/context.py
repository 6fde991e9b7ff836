"""The prompt for one answer: the system message, then the thread, trimmed to fit.

A question's text files go into its text as fenced blocks; its images follow as image parts
(chat completions content parts), each after a line naming it.
"""

from __future__ import annotations

import re
from typing import Any

from looper.models import Attachment, BaseAssistant, Message
from looper.tokens import PER_MESSAGE, PER_REPLY, ChatMessage, TokenCounter

Chat = list[ChatMessage]
Content = str | list[dict[str, Any]]
BACKTICKS = re.compile(r"`{3,}")


COACH = (
    "Teaching style: coach. Guide the student to the answer with questions and hints, one "
    "step at a time. Do not give the final answer, a full worked solution or anything from "
    "an answer key before the student has shown their own attempt; once they have tried, "
    "check their work, point to what is wrong and let them fix it."
)


def system_prompt(assistant: BaseAssistant, reference: str = "") -> str:
    """The assistant's instructions, its teaching style's, then the reference material."""
    style = COACH if assistant.style == "coach" else ""
    return "\n\n".join(part for part in (assistant.instructions, style, reference) if part)


def unanswered(messages: list[Message], hwm: int) -> str:
    """The text of the questions an answer is due for (what materials are searched with)."""
    return "\n".join(m.content for m in messages if m.role == "user" and m.id > hwm)


class ContextTooLarge(Exception):
    """Even the system prompt and the newest message alone do not fit."""


def conversation_order(messages: list[Message]) -> list[Message]:
    """Each answer right after the question it answers; unanswered questions last.

    An answer gets its id when it is committed, so a question asked while the previous answer
    was being written has a smaller id than that answer. The model should still read
    question, answer, question.
    """

    def position(message: Message) -> tuple[float, int]:
        answers = message.metadata.get("answers")
        if message.role == "assistant" and answers and answers.isdigit():
            return int(answers) + 0.5, message.id
        return float(message.id), message.id

    return sorted(messages, key=position)


def to_chat(instructions: str, messages: list[Message]) -> Chat:
    chat: Chat = [{"role": "system", "content": instructions}] if instructions else []
    chat.extend({"role": m.role, "content": content(m)} for m in conversation_order(messages))
    return chat


def content(message: Message) -> Content:
    """A message as the model reads it: its text with its text files, then its images."""
    texts = [message.content, *(fenced(a) for a in message.attachments if a.kind == "text")]
    text = "\n\n".join(t for t in texts if t)
    pictures = [a for a in message.attachments if a.kind == "image"]
    if not pictures:
        return text
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    for picture in pictures:
        parts.append({"type": "text", "text": f"Attached image: {picture.name}"})
        url = f"data:{picture.mime};base64,{picture.content}"
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


def fenced(attachment: Attachment) -> str:
    """A text file as a fenced block under its name, fenced longer than any fence inside."""
    longest = max((len(run) for run in BACKTICKS.findall(attachment.content)), default=2)
    fence = "`" * (longest + 1)
    source = "." in attachment.name and attachment.mime != "application/pdf"
    language = attachment.name.rpartition(".")[2] if source else ""
    body = attachment.content.rstrip("\n")
    return f"File {attachment.name}:\n{fence}{language}\n{body}\n{fence}"


def has_images(chat: Chat) -> bool:
    return any(
        part["type"] == "image_url"
        for message in chat
        if not isinstance(message["content"], str)
        for part in message["content"]
    )


def without_images(chat: Chat) -> Chat:
    """The chat as text alone, for a model that takes no images: each image leaves its line."""
    return [
        m if isinstance(m["content"], str) else {**m, "content": text_only(m["content"])}
        for m in chat
    ]


def text_only(parts: list[dict[str, Any]]) -> str:
    """The text parts; the line naming each image (the part before it) says it is not shown."""
    texts = []
    for part, after in zip(parts, [*parts[1:], None], strict=True):
        if part["type"] == "text":
            labels_image = after is not None and after["type"] == "image_url"
            texts.append(part["text"] + (" (not shown)" if labels_image else ""))
    return "\n\n".join(texts)


def fit(chat: Chat, budget: int, counter: TokenCounter) -> Chat:
    """Drop the oldest turns (never the system message) until the prompt fits `budget` tokens."""
    if PER_REPLY + sum(TokenCounter.upper_bound(m) for m in chat) <= budget:
        return chat  # the common case: no need to tokenize at all
    system = chat[:1] if chat and chat[0]["role"] == "system" else []
    turns = chat[len(system) :]
    used = PER_REPLY + sum(counter.message(m) for m in system)
    kept: Chat = []
    for message in reversed(turns):
        cost = counter.message(message)
        if used + cost > budget:
            break
        used += cost
        kept.append(message)
    if not kept:
        raise ContextTooLarge(
            "the question is too long for the model's context window "
            f"({budget + PER_MESSAGE} tokens available for the prompt)"
        )
    return system + kept[::-1]


def drop_older_half(chat: Chat) -> Chat | None:
    """Half the turns, newest kept; None when only the newest turn is left."""
    system = chat[:1] if chat and chat[0]["role"] == "system" else []
    turns = chat[len(system) :]
    if len(turns) <= 1:
        return None
    return system + turns[len(turns) // 2 :]
