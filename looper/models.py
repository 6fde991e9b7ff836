"""The engine's data: assistants (personas), threads (conversations) and messages."""

from __future__ import annotations

import inspect
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

AccessRule = Literal["allow", "deny"]  # whether a front end's subject (a user, a place) may ask
UsageKey = Literal["user", "channel", "assistant", "model"]  # what usage is summed by
# How an assistant teaches: `direct` answers plainly; `coach` guides with questions and hints.
Style = Literal["direct", "coach"]
STYLES: tuple[Style, ...] = ("direct", "coach")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


class BaseAssistant(BaseModel):
    """A persona. A subclass's docstring is its default instructions (the system prompt).

    `icon` is how front ends show it (an emoji like `:telescope:` or an image URL; None: the
    front end's default), `prompts` are up to four questions to suggest to a newcomer and
    `style` how it teaches."""

    id: str = Field(default_factory=lambda: new_id("asst"))
    name: str = "Assistant"
    instructions: str = ""
    model: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    icon: str | None = None
    prompts: list[str] = Field(default_factory=list)
    style: Style = "direct"

    def model_post_init(self, __context: object) -> None:
        if not self.instructions and type(self) is not BaseAssistant:
            self.instructions = inspect.cleandoc(type(self).__doc__ or "")


class ChatCompletionPhysicsTutor(BaseAssistant):
    """You are an acclaimed Physics Tutor for a top rated high school in the Bay Area of California, USA."""  # noqa: E501

    name: str = "Physics Tutor"
    icon: str | None = ":atom_symbol:"
    prompts: list[str] = Field(
        default_factory=lambda: [
            "Why is the sky blue?",
            "Explain Newton's third law with an example.",
            "How does a rocket move in empty space?",
            "What is the difference between mass and weight?",
        ]
    )


class Material(BaseModel):
    """A file a teacher gave an assistant (notes, an answer key, a rubric). Its text reaches
    the model only, never the students: front ends show its name and size alone. `size` is
    the file's bytes, `tokens` its text's."""

    id: str = Field(default_factory=lambda: new_id("mat"))
    assistant_id: str
    name: str
    size: int
    tokens: int
    created_at: datetime = Field(default_factory=utcnow)


class StoredMaterial(Material):
    """A material as exported: with its text and its passages (text, tokens), in order."""

    content: str
    passages: list[tuple[str, int]] = Field(default_factory=list)


class Passage(BaseModel):
    """A stretch of a material's text (`seq` counts from 0), as the search found it."""

    material_id: str
    name: str
    seq: int
    content: str
    tokens: int


class BaseThread(BaseModel):
    """A conversation. `metadata` belongs to the front end that started it (where the thread
    lives); `external_key` is that front end's unique key for the place, so one place maps
    to one thread. The engine reads neither."""

    id: str = Field(default_factory=lambda: new_id("thread"))
    created_at: datetime = Field(default_factory=utcnow)
    metadata: dict[str, str] = Field(default_factory=dict)
    external_key: str | None = None


class ChatCompletionThread(BaseThread):
    """A conversation answered by chat completions.

    `hwm` is the id of the last user message answered (0 when none). The other counters are
    kept by the store: `last_user_id` is the newest user message, `settled` the last user
    message the looper is done with (answered, or failed with `last_error`), and
    `reply_upto`/`reply_ref` record an answer that a sink has reserved but not yet committed.
    A thread `awaiting_place` was stored before its front end gave it a place: the looper asks
    the sink to place it first. `failure_ref` is where the latest failure is shown, so that
    the sink can tidy it up once the question is answered.
    """

    assistant_id: str
    chat_completion_model: str
    hwm: int = 0
    last_user_id: int = 0
    settled: int = 0
    message_count: int = 0
    last_activity: datetime | None = None
    last_error: str | None = None
    reply_upto: int | None = None
    reply_ref: str | None = None
    awaiting_place: bool = False
    failure_ref: str | None = None
    asker: str | None = None  # who asked the newest question (the front end's key)
    place: str | None = None  # where it was asked (the front end's key), once a question says

    @property
    def pending(self) -> bool:
        """A question is waiting for the looper."""
        return self.last_user_id > self.settled

    @property
    def failed(self) -> bool:
        """The looper gave up on a question (see `last_error`); `retry` asks again."""
        return self.settled > self.hwm


AttachmentKind = Literal["image", "text"]


class Attachment(BaseModel):
    """A file that came with a question, as the model reads it: an image (`content` is its
    bytes in base64, `mime` one of the image types models take) or text (a text file's
    contents, or the text of a PDF). `name` is the file's name as its asker gave it."""

    kind: AttachmentKind
    name: str
    mime: str
    content: str


class Message(BaseModel):
    """One turn of a thread. `id` grows by one per message within its thread; a question
    may carry `attachments`."""

    id: int
    thread_id: str
    role: Literal["user", "assistant"]
    content: str
    created_at: datetime = Field(default_factory=utcnow)
    metadata: dict[str, str] = Field(default_factory=dict)
    attachments: list[Attachment] = Field(default_factory=list)


class NewMessage(BaseModel):
    """A user message to append; `external_id` (the front end's id for it) makes appending
    idempotent; `asker` (the front end's key for who asked) lets the looper take turns, and
    with `place` (the front end's key for where, e.g. a channel) keeps usage and budgets;
    `attachments` are the files that came with it."""

    content: str
    metadata: dict[str, str] = Field(default_factory=dict)
    external_id: str | None = None
    asker: str | None = None
    place: str | None = None
    attachments: list[Attachment] = Field(default_factory=list)


class StoredMessage(Message):
    """A message as stored, with the external id that deduplicates it and who asked it
    (export/import)."""

    external_id: str | None = None
    asker: str | None = None


class Conversation(BaseModel):
    """A thread as listed for the person who asked in it: with its first question."""

    thread: ChatCompletionThread
    first_question: str


@dataclass(frozen=True)
class Usage:
    """The tokens one answer took. `cached_tokens` are the prompt tokens the server served
    from its cache (part of `prompt_tokens`); `counted` is True when the server reported
    nothing and the numbers come from the offline tokenizer."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    counted: bool = False


class UsageRecord(BaseModel):
    """What one answer to a thread (up to user message `message_id`) took, and whom and
    where it was for; or, with `refused` naming a budget, a question not sent to the model.
    `cost_usd` is None when the model has no price; `counted` when the tokens were counted
    here because the server reported none."""

    thread_id: str
    message_id: int
    at: datetime
    assistant_id: str
    model: str
    asker: str | None = None
    place: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    counted: bool = False
    cost_usd: float | None = None
    refused: str | None = None


class UsageLine(BaseModel):
    """Usage summed over one key (an asker, a place, an assistant or a model) and a span.
    `cost_usd` sums the priced answers; `unpriced` counts answers with no price."""

    key: str | None
    questions: int = 0
    refused: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    unpriced: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def priced(self) -> bool:
        """Whether `cost_usd` means something: some answer had a price, or none was given."""
        return self.unpriced < self.questions or not self.questions


class Snapshot(BaseModel):
    """Everything a store holds, to move it to another store (leases are not moved)."""

    assistants: list[BaseAssistant] = Field(default_factory=list)
    bindings: dict[str, str] = Field(default_factory=dict)
    threads: list[ChatCompletionThread] = Field(default_factory=list)
    messages: list[StoredMessage] = Field(default_factory=list)
    access: dict[str, AccessRule] = Field(default_factory=dict)
    limits: dict[str, float] = Field(default_factory=dict)
    usage: list[UsageRecord] = Field(default_factory=list)
    feedback: list[Feedback] = Field(default_factory=list)
    materials: list[StoredMaterial] = Field(default_factory=list)


class PendingSummary(BaseModel):
    """How many threads wait for an answer, and when the oldest question among them was
    asked (None when none waits)."""

    threads: int
    oldest_question: datetime | None = None


class Claim(BaseModel):
    """A pending thread leased to one looper until `lease_until` (seconds since the epoch),
    with its messages as they were when it was claimed."""

    thread: ChatCompletionThread
    messages: list[Message]
    owner: str
    lease_until: float


Vote = Literal["up", "down"]


class Feedback(BaseModel):
    """One person's vote on one answer (the answer to user message `answers` of a thread),
    with an optional comment. `message_ref` is the front end's id for the message that shows
    the answer and `link` a link to it, when the front end has one."""

    thread_id: str
    answers: int
    person: str
    assistant_id: str
    vote: Vote
    comment: str | None = None
    message_ref: str | None = None
    link: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class AssistantFeedback(BaseModel):
    """What people said of one assistant's answers: the votes, and the latest 👎 first."""

    assistant: BaseAssistant
    up: int = 0
    down: int = 0
    latest_down: list[Feedback] = Field(default_factory=list)


Snapshot.model_rebuild()
