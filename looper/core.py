"""Core operations: what every front end (the CLI, the chat bot) does to the store."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from looper import metrics
from looper.deprecations import ModelUse, shutdown_warning
from looper.models import (
    AccessRule,
    BaseAssistant,
    ChatCompletionPhysicsTutor,
    ChatCompletionThread,
    Conversation,
    Message,
    NewMessage,
    utcnow,
)
from looper.settings import Settings
from looper.store import NotFound, Store, StoreError
from looper.tracker import ThreadTracker


class InvalidInput(StoreError):
    """Input a user must correct; the message says how."""


class Tutor:
    """Add and list assistants and threads, ask questions, read conversations."""

    def __init__(self, store: Store, default_model: str, max_question_chars: int = 0) -> None:
        self.store = store
        self.default_model = default_model
        self.max_question_chars = max_question_chars  # 0: no limit
        self.threads = ThreadTracker(store)

    @classmethod
    def from_settings(cls, store: Store, settings: Settings) -> Tutor:
        return cls(store, settings.tutor_model, settings.tutor_max_question_chars)

    def check_question(self, content: str) -> None:
        """Raises InvalidInput for a question that is empty or too long to send."""
        if not content.strip():
            raise InvalidInput("the question is empty")
        if self.max_question_chars and len(content) > self.max_question_chars:
            raise InvalidInput(
                f"the question is {len(content):,} characters long; the limit is "
                f"{self.max_question_chars:,}: shorten it, or split it into several"
            )

    async def add_assistant(
        self, name: str | None = None, instructions: str | None = None, model: str | None = None
    ) -> BaseAssistant:
        """Add an assistant; with no name and no instructions, the built-in Physics Tutor."""
        if name is None and instructions is None:
            assistant: BaseAssistant = ChatCompletionPhysicsTutor(model=model)
        else:
            if not (instructions or "").strip():
                raise InvalidInput("an assistant needs instructions (its system prompt)")
            assistant = BaseAssistant(
                name=(name or "Assistant").strip(), instructions=instructions or "", model=model
            )
        if model is not None and not model.strip():
            raise InvalidInput("the model name is empty")
        return await self.store.add_assistant(assistant)

    async def list_assistants(self) -> list[BaseAssistant]:
        return await self.store.list_assistants()

    async def find_assistant(self, ref: str) -> BaseAssistant:
        """An assistant by id or by name (case-insensitive)."""
        assistants = await self.store.list_assistants()
        for assistant in assistants:
            if (
                ref.strip() in (assistant.id, assistant.name)
                or assistant.name.lower() == ref.strip().lower()
            ):
                return assistant
        names = ", ".join(a.name for a in assistants) or "none yet"
        raise NotFound(f"no assistant {ref!r} (assistants: {names})")

    async def move_assistant(
        self, ref: str, model: str, from_model: str | None = None
    ) -> tuple[BaseAssistant, int]:
        """Answer with `model` from now on: the assistant's new threads, and its threads
        (only those on `from_model`, when given) from their next question. Returns the
        assistant and how many threads moved."""
        if not model.strip():
            raise InvalidInput("the model name is empty")
        assistant = await self.find_assistant(ref)
        moved = await self.store.move_assistant(assistant.id, model.strip(), from_model)
        return assistant, moved

    async def model_warnings(self) -> list[str]:
        """One line for each model in use that OpenAI has announced it will shut down."""
        uses: defaultdict[str, ModelUse] = defaultdict(ModelUse)
        uses[self.default_model].default = True
        for assistant in await self.store.list_assistants():
            if assistant.model:
                uses[assistant.model].assistants.append(assistant.name)
        for model, count in (await self.store.thread_models()).items():
            uses[model].threads = count
        today = utcnow().date()
        return [w for m, use in uses.items() if (w := shutdown_warning(m, use, today))]

    async def use(self, place: str, ref: str) -> BaseAssistant:
        """Bind a place (e.g. a channel) to an assistant."""
        assistant = await self.find_assistant(ref)
        await self.store.bind(place, assistant.id)
        return assistant

    async def assistant_for(self, place: str) -> BaseAssistant:
        """The assistant bound to a place, else the default one."""
        return await self.store.assistant_for(place) or await self.add_assistant()

    async def bindings(self) -> dict[str, BaseAssistant]:
        """Every bound place and its assistant."""
        assistants = {a.id: a for a in await self.store.list_assistants()}
        bound = await self.store.bindings()
        return {place: assistants[a] for place, a in bound.items() if a in assistants}

    async def conversations_of(self, asker: str, limit: int = 5) -> list[Conversation]:
        """The threads in which `asker` (a front end's key) asked, most recently active
        first, each with its first question."""
        return await self.store.threads_asked_by(asker, limit)

    async def set_rule(self, subject: str, rule: AccessRule) -> None:
        """Allow or deny a front end's subject (a user, a place); its earlier rule goes."""
        if not subject.strip():
            raise InvalidInput("allow or deny whom?")
        await self.store.set_rule(subject, rule)

    async def rules_of(self, *subjects: str) -> list[AccessRule | None]:
        """Each subject's rule (None: it has none), read from the store now."""
        return list(await asyncio.gather(*(self.store.rule_of(s) for s in subjects)))

    async def rules(self) -> dict[str, AccessRule]:
        """Every subject's rule."""
        return await self.store.rules()

    async def add_thread(
        self,
        assistant_id: str,
        model: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ChatCompletionThread:
        assistant = await self.store.get_assistant(assistant_id)
        return await self.start_thread(assistant, metadata or {}, model=model)

    async def start_thread(
        self,
        assistant: BaseAssistant,
        metadata: dict[str, str],
        first: NewMessage | None = None,
        thread_id: str | None = None,
        model: str | None = None,
        external_key: str | None = None,
        awaiting_place: bool = False,
    ) -> ChatCompletionThread:
        """A thread in a place (`metadata`, filed under `external_key`), with its first
        question stored with it; `awaiting_place` when the sink is to make the place (the
        looper does, exactly once)."""
        if model is not None and not model.strip():
            raise InvalidInput("the model name is empty")
        if first is not None:
            self.check_question(first.content)
        thread = ChatCompletionThread(
            assistant_id=assistant.id,
            chat_completion_model=model or assistant.model or self.default_model,
            metadata=metadata,
            external_key=external_key,
            awaiting_place=awaiting_place,
        )
        if thread_id:
            thread.id = thread_id
        stored = await self.store.add_thread(thread, first)
        if first is not None:
            metrics.QUESTIONS.inc()
        return stored

    async def ask(
        self,
        content: str,
        thread_id: str | None = None,
        metadata: dict[str, str] | None = None,
        external_id: str | None = None,
        asker: str | None = None,
    ) -> Message:
        """Append a user message (to the latest thread when no id is given); `asker` is the
        front end's key for who asked."""
        self.check_question(content)
        thread = await self.thread(thread_id)
        message, new = await self.store.add_user_message(
            thread.id, content, metadata, external_id, asker
        )
        if new:
            metrics.QUESTIONS.inc()
        return message

    async def messages(self, thread_id: str | None = None) -> list[Message]:
        thread = await self.thread(thread_id)
        return await self.store.list_messages(thread.id)

    async def retry(self, thread_id: str) -> bool:
        """Ask again what failed last time; False when nothing is waiting for an answer."""
        return await self.store.retry(thread_id)

    async def thread(self, thread_id: str | None = None) -> ChatCompletionThread:
        """A thread by id; without one, the most recently added thread."""
        if thread_id is None:
            return await self.threads.latest()
        return await self.threads.get(thread_id)
