"""Core operations: what every front end (the CLI, the chat bot) does to the store."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from looper import metrics
from looper.budgets import (
    CHANNEL_DAILY,
    MONTHLY,
    USER_DAILY,
    Budgets,
    Defaults,
    Standing,
    day_start,
    month_start,
)
from looper.deprecations import ModelUse, shutdown_warning
from looper.models import (
    AccessRule,
    BaseAssistant,
    ChatCompletionPhysicsTutor,
    ChatCompletionThread,
    Message,
    NewMessage,
    UsageKey,
    UsageLine,
    utcnow,
)
from looper.settings import Settings
from looper.store import NotFound, Store, StoreError
from looper.tracker import ThreadTracker


class InvalidInput(StoreError):
    """Input a user must correct; the message says how."""


LIMITS = {"user": USER_DAILY, "channel": CHANNEL_DAILY, "monthly": MONTHLY}


@dataclass(frozen=True)
class OwnUsage:
    """What one asker used today and this month, and how their budgets stand."""

    today: UsageLine
    month: UsageLine
    standing: Standing


class Tutor:
    """Add and list assistants and threads, ask questions, read conversations."""

    def __init__(
        self,
        store: Store,
        default_model: str,
        max_question_chars: int = 0,
        budgets: Budgets | None = None,
    ) -> None:
        self.store = store
        self.default_model = default_model
        self.max_question_chars = max_question_chars  # 0: no limit
        self.threads = ThreadTracker(store)
        self.budgets = budgets or Budgets(store, Defaults())

    @classmethod
    def from_settings(cls, store: Store, settings: Settings) -> Tutor:
        budgets = Budgets(store, settings.budget_defaults())
        return cls(store, settings.tutor_model, settings.tutor_max_question_chars, budgets)

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
        place: str | None = None,
    ) -> Message:
        """Append a user message (to the latest thread when no id is given); `asker` and
        `place` are the front end's keys for who asked and where."""
        self.check_question(content)
        thread = await self.thread(thread_id)
        message, new = await self.store.add_user_message(
            thread.id, content, metadata, external_id, asker, place
        )
        if new:
            metrics.QUESTIONS.inc()
        return message

    async def usage(
        self, since: datetime, by: UsageKey, until: datetime | None = None
    ) -> list[UsageLine]:
        """Usage from `since` summed per asker, place, assistant (by name) or model."""
        lines = await self.store.usage_report(since, by, until)
        if by != "assistant":
            return lines
        names = {a.id: a.name for a in await self.store.list_assistants()}
        return [
            line.model_copy(update={"key": names.get(line.key or "", line.key)}) for line in lines
        ]

    async def usage_of(self, asker: str) -> OwnUsage:
        """One asker's usage today and this month, and their budgets as they stand."""
        now = self.budgets.clock()
        today, month, standing = await asyncio.gather(
            self.store.usage_report(day_start(now), "user", only=asker),
            self.store.usage_report(month_start(now), "user", only=asker),
            self.budgets.standing(asker, None),
        )
        empty = UsageLine(key=asker)
        return OwnUsage((today or [empty])[0], (month or [empty])[0], standing)

    async def set_limit(self, kind: str, value: float | None, asker: str | None = None) -> None:
        """Change a budget's limit at run time (0: none; None: back to the setting)."""
        if kind not in LIMITS:
            raise InvalidInput(f"no budget {kind!r} (budgets: {', '.join(LIMITS)})")
        if asker is not None and kind != "user":
            raise InvalidInput("only the daily token budget can be set for one person")
        if value is not None and value < 0:
            raise InvalidInput("a limit cannot be negative (0 means no limit)")
        await self.budgets.set(LIMITS[kind], value, asker)

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
