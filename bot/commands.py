"""The /tutor slash command: one router, one small function per subcommand.

`AckFirst` acknowledges before any of this runs: usage and input errors (`problem`) travel in
the ack itself (ephemeral, no API call); everything else is answered ephemerally through the
command's response_url, except `ask`, which posts in the channel.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.admins import Admins
from bot.formatting import permalink_fallback, thread_metadata
from bot.places import asker, channel_place, thread_place
from bot.status import show_thinking
from bot.web import SlackApi, slack_error
from looper.core import Tutor
from looper.models import ChatCompletionThread, NewMessage, new_id
from looper.store import StoreError

log = logging.getLogger(__name__)

USAGE = """*tutor* — answers in threads. Reply in the thread to follow up.
• `/tutor ask <question>` — ask; the answer arrives as a threaded reply
• `/tutor assistants` — list assistants
• `/tutor help` — this text
Admins:
• `/tutor assistant add <name> <instructions>` — add an assistant (quote a name with spaces)
• `/tutor use <assistant>` — this channel's assistant (name or id)
• `/tutor threads` — list conversations
• `/tutor thread add [assistant]` — start an empty conversation to reply under"""

NOT_IN_CHANNEL = "I can't post here yet: invite me with `/invite @tutor` and try again."


class UserError(Exception):
    """Something the person typing the command can fix; shown to them as is."""


@dataclass
class Command:
    """One /tutor invocation."""

    user: str
    team: str
    channel: str
    args: str
    respond: Callable[..., Awaitable[Any]]

    async def tell(self, text: str) -> None:
        await self.respond(text=text, response_type="ephemeral", replace_original=False)


Handler = Callable[["TutorCommands", Command], Awaitable[None]]


def needs_text(usage: str) -> Callable[[str], str | None]:
    return lambda args: None if args else usage


class TutorCommands:
    """Routes /tutor subcommands to handlers."""

    def __init__(self, tutor: Tutor, api: SlackApi, admins: Admins) -> None:
        self.tutor = tutor
        self.api = api
        self.admins = admins

    async def run(self, command: dict[str, Any], respond: Any) -> None:
        """The subcommand's work, after `AckFirst` acknowledged it."""
        if problem(command):
            return
        name, _, args = (command.get("text") or "").strip().partition(" ")
        handler, admin_only, _ = ROUTES[name.lower()]
        call = Command(
            user=command.get("user_id", ""),
            team=command.get("team_id", ""),
            channel=command.get("channel_id", ""),
            args=args.strip(),
            respond=respond,
        )
        await self._run(handler, call, admin_only)

    async def _run(self, handler: Handler, call: Command, admin_only: bool) -> None:
        try:
            if admin_only and not await self.admins.allows(call.user):
                await call.tell("Sorry, only tutor admins can do that. Ask a workspace admin.")
                return
            await handler(self, call)
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
        assistant = await self.tutor.assistant_for(channel_place(call.channel))
        thread_id = new_id("thread")
        root = await self.api.call(
            "chat.postMessage",
            channel=call.channel,
            text=f"<@{call.user}> asked: {call.args}",
            metadata=thread_metadata(thread_id, assistant.id),
        )
        ts = str(root["ts"])
        shown = await show_thinking(self.api, call.channel, ts)
        await self.tutor.start_thread(
            assistant,
            thread_place(call.team, call.channel, ts),
            NewMessage(content=call.args, metadata=asker(call.user, ts, shown), external_id=ts),
            thread_id=thread_id,
        )

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
    async def assistant(self, call: Command) -> None:
        verb, _, rest = call.args.partition(" ")
        if verb.lower() != "add":
            raise UserError("Usage: `/tutor assistant add <name> <instructions>`")
        name, instructions = split_name(rest)
        added = await self.tutor.add_assistant(name, instructions)
        await call.tell(
            f"Added *{added.name}* `{added.id}`. Bind it with `/tutor use {added.name}`."
        )

    async def use(self, call: Command) -> None:
        assistant = await self.tutor.use(channel_place(call.channel), call.args)
        await call.tell(f"<#{call.channel}> now talks to *{assistant.name}*.")

    async def threads(self, call: Command) -> None:
        threads = await self.tutor.threads.newest(20)
        if not threads:
            await call.tell("No conversations yet.")
            return
        names = {a.id: a.name for a in await self.tutor.list_assistants()}
        links = await asyncio.gather(*(self._link(t) for t in threads))
        lines = [describe(t, names, link) for t, link in zip(threads, links, strict=True)]
        await call.tell("\n".join(lines))

    async def _link(self, thread: ChatCompletionThread) -> str | None:
        channel = thread.metadata.get("slack_channel")
        ts = thread.metadata.get("slack_thread_ts")
        if not (channel and ts):
            return None
        try:
            found = await self.api.call("chat.getPermalink", channel=channel, message_ts=ts)
            return str(found["permalink"])
        except SlackApiError:
            return permalink_fallback(channel, ts)

    async def thread(self, call: Command) -> None:
        verb, _, ref = call.args.partition(" ")
        if verb.lower() != "add":
            raise UserError("Usage: `/tutor thread add [assistant]`")
        place = channel_place(call.channel)
        ref = ref.strip()
        assistant = await (
            self.tutor.find_assistant(ref) if ref else self.tutor.assistant_for(place)
        )
        thread_id = new_id("thread")
        root = await self.api.call(
            "chat.postMessage",
            channel=call.channel,
            text=f"New conversation with *{assistant.name}*, started by <@{call.user}>. "
            "Reply in this thread to ask.",
            metadata=thread_metadata(thread_id, assistant.id),
        )
        metadata = thread_place(call.team, call.channel, str(root["ts"]))
        await self.tutor.start_thread(assistant, metadata, thread_id=thread_id)
        await call.tell(
            f"Started `{thread_id}` with *{assistant.name}*: replies under it are asked."
        )


def problem(command: dict[str, Any]) -> str | None:
    """What to say instead of running the command: usage, or what is wrong with the input."""
    name, _, args = (command.get("text") or "").strip().partition(" ")
    name = name.lower()
    if name in ("", "help"):
        return USAGE
    route = ROUTES.get(name)
    if route is None:
        return f"I don't know `/tutor {name}`.\n{USAGE}"
    check = route[2]
    return check(args.strip()) if check else None


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
    channel = thread.metadata.get("slack_channel")
    where = f"<#{channel}>" if channel else "CLI"
    activity = thread.last_activity.strftime("%Y-%m-%d %H:%M UTC") if thread.last_activity else "-"
    shown = f"<{link}|open>" if link else "-"
    return (
        f"• `{thread.id}` *{names.get(thread.assistant_id, thread.assistant_id)}* in {where} "
        f"{shown} — {thread.message_count} messages, last {activity}"
    )


ROUTES: dict[str, tuple[Handler, bool, Callable[[str], str | None] | None]] = {
    "ask": (
        TutorCommands.ask,
        False,
        needs_text("Ask what? `/tutor ask how did the universe begin?`"),
    ),
    "assistants": (TutorCommands.assistants, False, None),
    "assistant": (
        TutorCommands.assistant,
        True,
        needs_text("Usage: `/tutor assistant add <name> <instructions>`"),
    ),
    "use": (TutorCommands.use, True, needs_text("Usage: `/tutor use <assistant>`")),
    "threads": (TutorCommands.threads, True, None),
    "thread": (TutorCommands.thread, True, needs_text("Usage: `/tutor thread add [assistant]`")),
}
