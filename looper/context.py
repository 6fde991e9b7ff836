"""The prompt for one answer: the system message, then the thread, trimmed to fit."""

from __future__ import annotations

from looper.models import BaseAssistant, Message
from looper.tokens import PER_MESSAGE, PER_REPLY, TokenCounter

Chat = list[dict[str, str]]


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
    chat = [{"role": "system", "content": instructions}] if instructions else []
    chat.extend({"role": m.role, "content": m.content} for m in conversation_order(messages))
    return chat


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
