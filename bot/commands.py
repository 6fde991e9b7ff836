"""The /tutor slash command: one small function per subcommand, and the route table.

`ParseCommand` and `AckFirst` run first: usage and input errors travel in the ack itself
(ephemeral, no API call); everything else is answered ephemerally through the command's
response_url. `ask` and `thread add` store the conversation before they acknowledge: the
looper then posts its root message in the channel (exactly once, from any replica).
"""

from __future__ import annotations

import asyncio
import io
import logging
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.errors import SlackApiError

from bot.access import Access
from bot.admins import Admins
from bot.background import Background
from bot.feedback import feedback_report
from bot.formatting import NOT_IN_CHANNEL, mrkdwn_safe
from bot.links import thread_link
from bot.materials import (
    ADD_USAGE,
    RM_USAGE,
    MaterialsHandlers,
    materials_add,
    materials_ls,
    materials_rm,
)
from bot.middleware import INVOCATION
from bot.places import (
    USER,
    USER_SUBJECT,
    ChannelRequest,
    SlackThread,
    asker_key,
    channel_place,
    shown_subject,
    subject_named,
)
from bot.routes import Invocation, Route
from bot.usage import GROUPS, amount, limits_text, overview, own_usage
from bot.web import SlackApi, slack_error
from looper.budgets import day_start
from looper.core import LIMITS, Tutor, duration
from looper.models import AccessRule, BaseAssistant, ChatCompletionThread, NewMessage, utcnow
from looper.store import StoreError

log = logging.getLogger(__name__)


class UserError(Exception):
    """Something the person typing the command can fix; shown to them as is."""


@dataclass
class Command:
    """One /tutor invocation. `tell` answers in the ack while it is still due (routes that
    store first), else through the response_url."""

    user: str
    team: str
    channel: str
    args: str
    respond: Callable[..., Awaitable[Any]]
    response_url: str = ""
    ack: AsyncAck | None = None
    trigger_id: str = ""  # to open a modal

    async def tell(self, text: str) -> None:
        if self.ack is not None and self.ack.response is None:
            await self.ack(text=text)
        else:
            await self.respond(text=text, response_type="ephemeral", replace_original=False)

    async def acknowledge(self) -> None:
        if self.ack is not None and self.ack.response is None:
            await self.ack()

    @property
    def request(self) -> ChannelRequest:
        """A conversation to start in this channel, for this user."""
        return ChannelRequest(self.channel, self.team, self.user, self.response_url)


class TutorCommands:
    """Routes /tutor subcommands to handlers."""

    def __init__(self, tutor: Tutor, api: SlackApi, admins: Admins, access: Access) -> None:
        self.tutor = tutor
        self.api = api
        self.admins = admins
        self.access = access
        self.later = Background()
        self.materials = MaterialsHandlers(tutor, api, admins)

    async def run(
        self, command: dict[str, Any], ack: AsyncAck, respond: Any, context: AsyncBoltContext
    ) -> None:
        """A route that stores first runs now and acknowledges once stored; every other one
        was acknowledged by `AckFirst` and runs in the background, after Slack hears back."""
        invocation: Invocation = context[INVOCATION]
        route = invocation.route
        if route is None or invocation.reply:
            return  # the ack said all there was to say
        call = self._command(command, invocation, respond, ack)
        if not route.stores_first:
            self.later.start(self._run(route, call))
            return
        try:
            await self._run(route, call)
        finally:
            await call.acknowledge()

    @staticmethod
    def _command(
        command: dict[str, Any], invocation: Invocation, respond: Any, ack: AsyncAck | None = None
    ) -> Command:
        return Command(
            user=command.get("user_id", ""),
            team=command.get("team_id", ""),
            channel=command.get("channel_id", ""),
            args=invocation.text,
            respond=respond,
            response_url=command.get("response_url", ""),
            ack=ack,
            trigger_id=command.get("trigger_id", ""),
        )

    async def _run(self, route: Route, call: Command) -> None:
        try:
            if route.admin_only and not await self.admins.allows(call.user):
                await call.tell("Sorry, only tutor admins can do that. Ask a workspace admin.")
                return
            await route.handler(self, call)
        except (UserError, StoreError) as exc:
            await call.tell(str(exc))
        except SlackApiError as exc:
            error = slack_error(exc)
            await call.tell(NOT_IN_CHANNEL if error == "not_in_channel" else f"Slack said: {error}")
        except Exception:
            log.exception("/tutor %s failed", call.args)
            await call.tell("Something went wrong on my side; nothing you typed was lost.")

    # anyone
    async def ask(self, call: Command) -> None:
        refused, found = await asyncio.gather(  # read together: one round trip, not two
            self.access.refusal(call.user, call.channel),
            self.tutor.assistant_found_for(channel_place(call.channel)),
        )
        if refused:
            raise UserError(refused)  # told in the ack: nothing was stored
        assistant = found or await self.tutor.add_assistant()
        question = NewMessage(
            content=call.args,
            metadata={USER: call.user},
            asker=asker_key(call.user),
            place=channel_place(call.channel),
        )
        await self.tutor.start_thread(
            assistant, call.request.metadata, question, awaiting_place=True
        )

    async def usage(self, call: Command) -> None:
        if call.args:
            raise UserError("Usage: `/tutor usage` (yours), or `/tutor usage all` (admins).")
        await call.tell(own_usage(await self.tutor.usage_of(asker_key(call.user))))

    async def assistants(self, call: Command) -> None:
        listed = await self.tutor.list_assistants()
        bound = await self.tutor.assistant_for(channel_place(call.channel)) if listed else None
        lines = [
            f"• *{a.name}* `{a.id}` ({a.model or self.tutor.default_model})"
            + (" ← this channel" if bound and a.id == bound.id else "")
            for a in listed
        ]
        await call.tell("\n".join(lines) or "No assistants yet: `/tutor assistant add` adds one.")

    # admins
    async def add_assistant(self, call: Command) -> None:
        name, instructions = split_name(call.args)
        added = await self.tutor.add_assistant(name, instructions)
        await call.tell(
            f"Added *{added.name}* `{added.id}`. Bind it with `/tutor use {added.name}`."
        )

    async def edit_assistant(self, call: Command) -> None:
        ref, field, value = split_edit(call.args)
        if field == "prompts":
            edited, moved = await self.tutor.edit_assistant(ref, prompts=words(value))
        else:
            edited, moved = await self.tutor.edit_assistant(
                ref,
                name=value if field == "name" else None,
                icon=value if field == "icon" else None,
                model=value if field == "model" else None,
                instructions=value if field == "instructions" else None,
                style=value if field == "style" else None,
            )
        also = f" ({moved} of its threads moved too)" if field == "model" else ""
        await call.tell(
            f"Edited *{mrkdwn_safe(edited.name)}* `{edited.id}`: {shown(edited, field)}{also}"
        )

    async def feedback(self, call: Command) -> None:
        said = words(call.args)
        window = "7d"
        if said and said[-1][:1].isdigit():
            window = said.pop()
        since = duration(window)
        report = await self.tutor.feedback(utcnow() - since, " ".join(said) or None)
        await call.tell(feedback_report(report, window.lower()))

    async def use(self, call: Command) -> None:
        assistant = await self.tutor.use(channel_place(call.channel), call.args)
        await call.tell(f"<#{call.channel}> now talks to *{assistant.name}*.")

    async def threads(self, call: Command) -> None:
        threads = await self.tutor.threads.newest(20)
        if not threads:
            await call.tell("No conversations yet.")
            return
        names = {a.id: a.name for a in await self.tutor.list_assistants()}
        links = await asyncio.gather(*(thread_link(self.api, t) for t in threads))
        lines = [describe(t, names, link) for t, link in zip(threads, links, strict=True)]
        await call.tell("\n".join(lines))

    async def add_thread(self, call: Command) -> None:
        assistant = await (
            self.tutor.find_assistant(call.args)
            if call.args
            else self.tutor.assistant_for(channel_place(call.channel))
        )
        thread = await self.tutor.start_thread(
            assistant, call.request.metadata, awaiting_place=True
        )
        await call.tell(
            f"Started `{thread.id}` with *{assistant.name}*: its message appears here in a "
            "moment, and replies under it are asked."
        )

    async def allow(self, call: Command) -> None:
        await self._set_rule(call, "allow")

    async def deny(self, call: Command) -> None:
        await self._set_rule(call, "deny")

    async def _set_rule(self, call: Command, rule: AccessRule) -> None:
        subject = subject_named(call.args)
        if subject is None:
            raise UserError(
                f"Whom? `/tutor {rule} #channel` or `/tutor {rule} @person` (or their id: C…, U…)."
            )
        await self.tutor.set_rule(subject, rule)
        await call.tell(f"{shown_subject(subject)} is {DONE[rule]} now.")

    async def show_access(self, call: Command) -> None:
        rules = await self.tutor.rules()
        mode = (
            "*closed*: only allowed people, and outside DMs only in allowed channels"
            if self.access.closed
            else "*open*: everyone, everywhere the bot is, but the denied"
        )
        await call.tell(
            f"Access is {mode}; admins always may.\n"
            f"Allowed: {listed(rules, 'allow')}\nDenied: {listed(rules, 'deny')}"
        )

    async def usage_all(self, call: Command) -> None:
        now = self.tutor.budgets.clock()
        spans = {
            "Today": day_start(now),
            "Last 7 days": now - timedelta(days=7),
            "Last 30 days": now - timedelta(days=30),
        }
        reports = await asyncio.gather(
            *(self.tutor.usage(since, by) for since in spans.values() for by in GROUPS)
        )
        found = iter(reports)
        await call.tell(overview({title: {by: next(found) for by in GROUPS} for title in spans}))

    async def limit(self, call: Command) -> None:
        if call.args:
            await self._set_limit(call, call.args.split())
        limits, own = await asyncio.gather(
            self.tutor.budgets.limits(), self.tutor.budgets.own_limits()
        )
        await call.tell(limits_text(limits, own))

    async def _set_limit(self, call: Command, words: list[str]) -> None:
        if len(words) not in (2, 3) or words[0].lower() not in LIMITS:
            raise UserError(LIMIT_USAGE)
        try:
            value = amount(words[1])
        except ValueError:
            raise UserError(f"`{mrkdwn_safe(words[1])}` is not a number. {LIMIT_USAGE}") from None
        whom = None
        if len(words) == 3:
            subject = subject_named(words[2]) or ""
            if not subject.startswith(USER_SUBJECT):
                raise UserError(f"Whose limit? Name a person: `@someone`. {LIMIT_USAGE}")
            whom = asker_key(subject.removeprefix(USER_SUBJECT))
        await self.tutor.set_limit(words[0].lower(), value, whom)


LIMIT_USAGE = (
    "Usage: `/tutor limit user N [@person]`, `/tutor limit channel N` (tokens a day), "
    "`/tutor limit monthly USD`; 0 = no limit, `default` = the setting's."
)
DONE: dict[AccessRule, str] = {"allow": "allowed", "deny": "denied"}


def listed(rules: dict[str, AccessRule], rule: AccessRule) -> str:
    return ", ".join(shown_subject(s) for s, r in rules.items() if r == rule) or "none"


EDITABLE = ("name", "icon", "model", "instructions", "prompts", "style")
EDIT_USAGE = (
    "Usage: `/tutor assistant edit <assistant> name|icon|model|instructions|prompts|style "
    "<value>` (style: coach or direct), "
    'e.g. `/tutor assistant edit "Physics Tutor" icon :telescope:` or '
    '`… prompts "Why is the sky blue?" "What is gravity?"`'
)
SMART_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'"})


def words(text: str) -> list[str]:
    """Words as a shell splits them (quotes group them; Slack's curly quotes count too)."""
    try:
        return shlex.split(text.translate(SMART_QUOTES))
    except ValueError as exc:
        raise UserError(f"I could not read that: {exc}") from exc


def split_edit(text: str) -> tuple[str, str, str]:
    """`<assistant> <field> <value>`: the assistant (the words before the first field
    name, quoted or not), the field and the rest as typed."""
    stream = io.StringIO(text.translate(SMART_QUOTES))
    lexer = shlex.shlex(stream, posix=True)
    lexer.whitespace_split = True
    before: list[str] = []
    try:
        while (word := lexer.get_token()) and word.lower() not in EDITABLE:
            before.append(word)
    except ValueError as exc:
        raise UserError(f"I could not read that: {exc}") from exc
    ref, field, value = " ".join(before), (word or "").lower(), stream.read().strip()
    if not ref or not field or not value:
        raise UserError(EDIT_USAGE)
    if field in ("name", "icon", "model", "style"):
        value = " ".join(words(value))
    elif field == "instructions" and len(value) > 1 and value[0] == value[-1] in "\"'":
        value = value[1:-1]
    return ref, field, value


def shown(assistant: BaseAssistant, field: str) -> str:
    """The edited field, as it reads now."""
    if field == "prompts":
        return "prompts " + "; ".join(f"“{mrkdwn_safe(p)}”" for p in assistant.prompts)
    if field == "instructions":
        return f"instructions ({len(assistant.instructions)} characters)"
    return f"{field} {mrkdwn_safe(str(getattr(assistant, field) or ''))}"


def split_name(text: str) -> tuple[str, str]:
    """`"Name with spaces" instructions…` or `Name instructions…`."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise UserError(f"I could not read that: {exc}") from exc
    if len(words) < 2:
        raise UserError("Usage: `/tutor assistant add <name> <instructions>`")
    name = words[0]
    rest = text.strip()
    instructions = rest[rest.find(name) + len(name) :].strip().strip('"').strip()
    return name, instructions


def describe(thread: ChatCompletionThread, names: dict[str, str], link: str | None) -> str:
    place = SlackThread.of(thread)
    where = f"<#{place.channel}>" if place else "CLI"
    activity = thread.last_activity.strftime("%Y-%m-%d %H:%M UTC") if thread.last_activity else "-"
    shown = f"<{link}|open>" if link else "-"
    return (
        f"• `{thread.id}` *{names.get(thread.assistant_id, thread.assistant_id)}* in {where} "
        f"{shown} — {thread.message_count} messages, last {activity}"
    )


ROUTES = (
    Route(
        "ask",
        TutorCommands.ask,
        "ask; the answer arrives as a threaded reply",
        "<question>",
        needs_text=True,
        when_missing="Ask what? `/tutor ask how did the universe begin?`",
        stores_first=True,
    ),
    Route(
        "usage all",
        TutorCommands.usage_all,
        "usage by person, channel, assistant, model",
        admin_only=True,
    ),
    Route("usage", TutorCommands.usage, "your tokens and cost today and this month"),
    Route("assistants", TutorCommands.assistants, "list assistants"),
    Route(
        "assistant add",
        TutorCommands.add_assistant,
        "add an assistant (quote a name with spaces)",
        "<name> <instructions>",
        admin_only=True,
        needs_text=True,
    ),
    Route(
        "assistant edit",
        TutorCommands.edit_assistant,
        "change an assistant (prompts: up to four, quoted; style: coach|direct)",
        "<assistant> name|icon|model|instructions|prompts|style <value>",
        admin_only=True,
        needs_text=True,
        when_missing=EDIT_USAGE,
    ),
    Route(
        "assistant materials add",
        materials_add,
        "upload notes, an answer key, a rubric (only the model reads them)",
        "<assistant>",
        admin_only=True,
        needs_text=True,
        when_missing=ADD_USAGE,
    ),
    Route(
        "assistant materials ls",
        materials_ls,
        "an assistant's materials: names and sizes",
        "<assistant>",
        admin_only=True,
        needs_text=True,
    ),
    Route(
        "assistant materials rm",
        materials_rm,
        "take a material away",
        "<assistant> <material id>",
        admin_only=True,
        needs_text=True,
        when_missing=RM_USAGE,
    ),
    Route(
        "use",
        TutorCommands.use,
        "this channel's assistant (name or id)",
        "<assistant>",
        admin_only=True,
        needs_text=True,
    ),
    Route("threads", TutorCommands.threads, "list conversations", admin_only=True),
    Route(
        "thread add",
        TutorCommands.add_thread,
        "start an empty conversation to reply under",
        "[assistant]",
        admin_only=True,
        stores_first=True,
    ),
    Route(
        "allow",
        TutorCommands.allow,
        "let a channel or a person ask (lifts a deny)",
        "#channel | @person",
        admin_only=True,
        needs_text=True,
    ),
    Route(
        "deny",
        TutorCommands.deny,
        "keep a channel or a person from asking",
        "#channel | @person",
        admin_only=True,
        needs_text=True,
    ),
    Route("access", TutorCommands.show_access, "who may ask where", admin_only=True),
    Route(
        "limit",
        TutorCommands.limit,
        "show or change budgets (tokens a day, dollars a month)",
        "[user N [@person] | channel N | monthly USD]",
        admin_only=True,
    ),
    Route(
        "feedback",
        TutorCommands.feedback,
        "👍/👎 per assistant and the latest 👎 (default: the last 7 days)",
        "[assistant] [7d]",
        admin_only=True,
    ),
)
