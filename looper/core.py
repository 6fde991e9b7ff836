"""Core operations: what every front end (the CLI, the chat bot) does to the store."""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

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
from looper.materials import Unreadable, material_text, passages
from looper.models import (
    STYLES,
    AccessRule,
    AssistantFeedback,
    Attachment,
    BaseAssistant,
    ChatCompletionPhysicsTutor,
    ChatCompletionThread,
    Conversation,
    Feedback,
    Material,
    Message,
    NewMessage,
    Style,
    UsageKey,
    UsageLine,
    Vote,
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


EMOJI = re.compile(r":[a-z0-9_+'-]+(?:::skin-tone-[2-6])?:")
MAX_PROMPTS = 4
PROMPT_CHARS = 150  # a suggested prompt is one short line
NAME_CHARS = 80  # a display name, short enough for any front end to show whole
COMMENT_CHARS = 500


def checked_icon(icon: str) -> str:
    """An emoji like `:telescope:` or an http(s) image URL; InvalidInput otherwise."""
    icon = icon.strip()
    if EMOJI.fullmatch(icon):
        return icon
    parts = urlsplit(icon)
    if parts.scheme in ("http", "https") and parts.netloc and " " not in icon:
        return icon
    raise InvalidInput(
        f"{icon!r} is not an icon: use an emoji like :telescope: or an http(s) image URL"
    )


def checked_prompts(prompts: list[str]) -> list[str]:
    """Up to four short, non-empty prompts; InvalidInput otherwise."""
    cleaned = [" ".join(p.split()) for p in prompts]
    if len(cleaned) > MAX_PROMPTS:
        raise InvalidInput(f"{len(cleaned)} prompts: an assistant has at most {MAX_PROMPTS}")
    for prompt in cleaned:
        if not prompt:
            raise InvalidInput("a prompt is empty")
        if len(prompt) > PROMPT_CHARS:
            raise InvalidInput(
                f"the prompt {prompt[:30]!r}… is {len(prompt)} characters: at most {PROMPT_CHARS}"
            )
    return cleaned


DURATION = re.compile(r"(\d+)\s*([mhdw])")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def duration(text: str) -> timedelta:
    """`30m`, `24h`, `7d` or `2w` as a timedelta; InvalidInput otherwise."""
    found = DURATION.fullmatch(text.strip().lower())
    if not found or int(found.group(1)) == 0:
        raise InvalidInput(f"{text!r} is not a duration: use e.g. 24h, 7d or 2w")
    return timedelta(**{UNITS[found.group(2)]: int(found.group(1))})


def checked_style(style: str) -> Style:
    """`direct` or `coach`; InvalidInput otherwise."""
    for known in STYLES:
        if style.strip().lower() == known:
            return known
    raise InvalidInput(f"{style!r} is not a style: use {' or '.join(STYLES)}")


MATERIAL_NAME_CHARS = 200


def checked_material_name(name: str) -> str:
    name = " ".join(name.split())[:MATERIAL_NAME_CHARS]
    if not name:
        raise InvalidInput("the material has no name")
    return name


def read_and_cut(name: str, data: bytes) -> tuple[str, list[tuple[str, int]]]:
    """A material file's text and its passages (with their tokens)."""
    text = material_text(name, data)
    return text, passages(text)


def checked_name(name: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise InvalidInput("the name is empty")
    if len(name) > NAME_CHARS:
        raise InvalidInput(f"the name is {len(name)} characters: at most {NAME_CHARS}")
    return name


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

    def check_question(self, content: str, attached: bool = False) -> None:
        """Raises InvalidInput for a question that is empty (a question `attached` to files
        may have no text) or too long to send."""
        if not content.strip() and not attached:
            raise InvalidInput("the question is empty")
        if self.max_question_chars and len(content) > self.max_question_chars:
            raise InvalidInput(
                f"the question is {len(content):,} characters long; the limit is "
                f"{self.max_question_chars:,}: shorten it, or split it into several"
            )

    async def add_assistant(
        self,
        name: str | None = None,
        instructions: str | None = None,
        model: str | None = None,
        style: str | None = None,
    ) -> BaseAssistant:
        """Add an assistant; with no name and no instructions, the built-in Physics Tutor."""
        if name is None and instructions is None:
            assistant: BaseAssistant = ChatCompletionPhysicsTutor(model=model)
        else:
            if not (instructions or "").strip():
                raise InvalidInput("an assistant needs instructions (its system prompt)")
            assistant = BaseAssistant(
                name=checked_name(name or "Assistant"), instructions=instructions or "", model=model
            )
        if model is not None and not model.strip():
            raise InvalidInput("the model name is empty")
        if style is not None:
            assistant.style = checked_style(style)
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

    async def edit_assistant(
        self,
        ref: str,
        name: str | None = None,
        icon: str | None = None,
        model: str | None = None,
        instructions: str | None = None,
        prompts: list[str] | None = None,
        style: str | None = None,
    ) -> tuple[BaseAssistant, int]:
        """Change what is given of an assistant (id or name); everything is checked before
        anything is stored. A new model moves its threads too (see `move_assistant`).
        Returns the edited assistant and how many threads moved."""
        assistant = await self.find_assistant(ref)
        changes: dict[str, object] = {}
        if name is not None:
            changes["name"] = checked_name(name)
        if icon is not None:
            changes["icon"] = checked_icon(icon)
        if instructions is not None:
            if not instructions.strip():
                raise InvalidInput("an assistant needs instructions (its system prompt)")
            changes["instructions"] = instructions.strip()
        if prompts is not None:
            changes["prompts"] = checked_prompts(prompts)
        if style is not None:
            changes["style"] = checked_style(style)
        if model is not None and not model.strip():
            raise InvalidInput("the model name is empty")
        if not changes and model is None:
            raise InvalidInput(
                "nothing to change: give a name, icon, model, instructions, prompts or style"
            )
        edited = assistant.model_copy(update=changes)
        if changes:
            await self.store.update_assistant(edited)
        moved = 0
        if model is not None:
            moved = await self.store.move_assistant(assistant.id, model.strip())
            edited.model = model.strip()
        return edited, moved

    async def add_material(self, ref: str, name: str, data: bytes) -> Material:
        """Give an assistant (id or name) a material: a text, Markdown or PDF file's bytes.
        Raises InvalidInput for a file with no text to read."""
        assistant = await self.find_assistant(ref)
        name = checked_material_name(name)
        try:
            # Reading a long PDF and counting its tokens takes a while: not on the event loop.
            text, cut = await asyncio.to_thread(read_and_cut, name, data)
        except Unreadable as exc:
            raise InvalidInput(str(exc)) from None
        material = Material(
            assistant_id=assistant.id,
            name=name,
            size=len(data),
            tokens=sum(tokens for _, tokens in cut),
        )
        await self.store.add_material(material, text, cut)
        return material

    async def materials(self, ref: str) -> tuple[BaseAssistant, list[Material]]:
        """An assistant (id or name) and its materials, oldest first."""
        assistant = await self.find_assistant(ref)
        return assistant, await self.store.list_materials(assistant.id)

    async def remove_material(self, ref: str, material_id: str) -> Material:
        """Take a material from an assistant (id or name). Raises NotFound."""
        assistant = await self.find_assistant(ref)
        return await self.store.remove_material(assistant.id, material_id.strip())

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
        """The assistant bound to a place, else the default one (made when there is none)."""
        return await self.assistant_found_for(place) or await self.add_assistant()

    async def assistant_found_for(self, place: str) -> BaseAssistant | None:
        """The assistant bound to a place, else the oldest; None before there is any (a read
        that writes nothing, to make alongside a check that may refuse)."""
        return await self.store.assistant_for(place)

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
        return await self.store.rules_of(subjects)

    async def rules(self) -> dict[str, AccessRule]:
        """Every subject's rule."""
        return await self.store.rules()

    async def vote(
        self,
        thread_id: str,
        answers: int,
        person: str,
        vote: Vote,
        message_ref: str | None = None,
        link: str | None = None,
    ) -> Feedback:
        """A person's vote on the answer to user message `answers` of a thread; their
        earlier vote on it is replaced. Raises NotFound for an unknown thread."""
        thread = await self.store.get_thread(thread_id)
        feedback = Feedback(
            thread_id=thread.id,
            answers=answers,
            person=person,
            assistant_id=thread.assistant_id,
            vote=vote,
            message_ref=message_ref,
            link=link,
        )
        await self.store.record_vote(feedback)
        return feedback

    async def comment(self, thread_id: str, answers: int, person: str, comment: str) -> bool:
        """What was wrong, in a person's words, with an answer they voted 👎 on; False when
        they have no 👎 on it (they changed their mind meanwhile)."""
        comment = " ".join(comment.split())[:COMMENT_CHARS]
        if not comment:
            return False
        return await self.store.record_comment(thread_id, answers, person, comment)

    async def feedback(
        self, since: datetime, assistant_ref: str | None = None, latest: int = 5
    ) -> list[AssistantFeedback]:
        """Per assistant (only `assistant_ref`, when given) with votes since `since`: the
        counts of 👍 and 👎 and the `latest` 👎."""
        only = await self.find_assistant(assistant_ref) if assistant_ref else None
        counts = await self.store.votes_since(since)
        assistants = [only] if only else await self.store.list_assistants()
        report = []
        for assistant in assistants:
            votes = counts.get(assistant.id, {})
            if not votes and only is None:
                continue
            down = await self.store.latest_down(since, latest, assistant.id)
            report.append(
                AssistantFeedback(
                    assistant=assistant,
                    up=votes.get("up", 0),
                    down=votes.get("down", 0),
                    latest_down=down,
                )
            )
        return report

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
            self.check_question(first.content, bool(first.attachments))
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
        attachments: list[Attachment] | None = None,
    ) -> Message:
        """Append a user message (to the latest thread when no id is given), with the files
        that came with it; `asker` and `place` are the front end's keys for who asked and
        where."""
        self.check_question(content, bool(attachments))
        thread = await self.thread(thread_id)
        message, new = await self.store.add_user_message(
            thread.id, content, metadata, external_id, asker, place, attachments
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
