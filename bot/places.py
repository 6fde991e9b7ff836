"""How Slack places map to tutor's keys and metadata. The Slack metadata keys live here only."""

from __future__ import annotations

import re
from dataclasses import dataclass

from looper.models import ChatCompletionThread, Message

# A thread's metadata: where its Slack thread is; before it has one, how to tell the asker.
TEAM, CHANNEL, THREAD_TS = "slack_team", "slack_channel", "slack_thread_ts"
RESPONSE_URL = "slack_response_url"
# A message's metadata: who wrote it, its Slack ts, whether "is thinking…" shows for it.
USER, TS, STATUS = "slack_user", "slack_ts", "slack_status"
SHOWN = "shown"
# Access subjects: a Slack user or channel, as the store keeps its rule.
USER_SUBJECT, CHANNEL_SUBJECT = "slack:user:", "slack:channel:"
ESCAPED = re.compile(r"<([#@])([A-Z0-9]+)(?:\|[^>]*)?>")  # <#C123|name>, <@U123|name>
CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{2,}")
USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")


def channel_place(channel: str) -> str:
    """The binding key of a channel (`/tutor use`)."""
    return f"slack:{channel}"


def channel_of_place(place: str) -> str | None:
    """The channel of a binding key (see `channel_place`); None for another front end's."""
    channel = place.removeprefix("slack:")
    return channel if channel != place else None


def is_dm(channel: str) -> bool:
    """Whether `channel` is a direct message with the bot (Slack's DM ids begin with D)."""
    return channel.startswith("D")


def user_subject(user: str) -> str:
    return USER_SUBJECT + user


def channel_subject(channel: str) -> str:
    return CHANNEL_SUBJECT + channel


def subject_named(text: str) -> str | None:
    """The subject of a channel or a person as typed after `/tutor allow`: Slack's escaped
    `<#C123|name>` or `<@U123|name>`, or a plain id (`C123`, `U123`); None for anything else."""
    said = text.strip()
    if escaped := ESCAPED.fullmatch(said):
        kind, found = escaped.groups()
        return channel_subject(found) if kind == "#" else user_subject(found)
    if CHANNEL_ID.fullmatch(said.upper()):
        return channel_subject(said.upper())
    if USER_ID.fullmatch(said.upper()):
        return user_subject(said.upper())
    return None


def shown_subject(subject: str) -> str:
    """A subject as Slack shows it (a channel or a person's link); others as they are."""
    if subject.startswith(CHANNEL_SUBJECT):
        return f"<#{subject.removeprefix(CHANNEL_SUBJECT)}>"
    if subject.startswith(USER_SUBJECT):
        return f"<@{subject.removeprefix(USER_SUBJECT)}>"
    return subject


@dataclass(frozen=True)
class SlackThread:
    """The Slack thread a tutor thread lives in: the channel and the root message's ts."""

    channel: str
    thread_ts: str
    team: str = ""

    @property
    def key(self) -> str:
        """The tutor thread's external key: one tutor thread per Slack thread."""
        return f"slack:{self.channel}:{self.thread_ts}"

    @property
    def metadata(self) -> dict[str, str]:
        return {TEAM: self.team, CHANNEL: self.channel, THREAD_TS: self.thread_ts}

    @classmethod
    def of(cls, thread: ChatCompletionThread) -> SlackThread | None:
        """Where `thread` lives in Slack; None for a thread started elsewhere (the CLI)."""
        return cls.from_metadata(thread.metadata)

    @classmethod
    def from_metadata(cls, metadata: dict[str, str]) -> SlackThread | None:
        if not (metadata.get(CHANNEL) and metadata.get(THREAD_TS)):
            return None
        return cls(metadata[CHANNEL], metadata[THREAD_TS], metadata.get(TEAM, ""))


@dataclass(frozen=True)
class ChannelRequest:
    """A conversation asked for with /tutor in a channel and stored before its root message
    is posted: where it goes, who asked, and the command's `response_url` to tell them
    when Slack refuses the post."""

    channel: str
    team: str
    user: str
    response_url: str = ""

    @property
    def metadata(self) -> dict[str, str]:
        return {
            CHANNEL: self.channel,
            TEAM: self.team,
            USER: self.user,
            RESPONSE_URL: self.response_url,
        }

    def placed_at(self, root_ts: str) -> SlackThread:
        return SlackThread(self.channel, root_ts, self.team)

    @classmethod
    def of(cls, thread: ChatCompletionThread) -> ChannelRequest | None:
        """The request of a thread awaiting its root message; None for any other thread."""
        metadata = thread.metadata
        if not thread.awaiting_place or not metadata.get(CHANNEL):
            return None
        return cls(
            metadata[CHANNEL],
            metadata.get(TEAM, ""),
            metadata.get(USER, ""),
            metadata.get(RESPONSE_URL, ""),
        )


def key_from_metadata(metadata: dict[str, str]) -> str | None:
    """The external key of a thread with this metadata (for exports that lack it)."""
    place = SlackThread.from_metadata(metadata)
    return place.key if place else None


def asker(user: str, ts: str, thinking_shown: bool = False) -> dict[str, str]:
    """A question's metadata: who wrote it, its Slack ts, whether the status shows."""
    metadata = {USER: user, TS: ts}
    if thinking_shown:
        metadata[STATUS] = SHOWN
    return metadata


def asker_key(user: str) -> str:
    """Who asked, as the engine keys askers (it takes turns between them)."""
    return f"slack:{user}"


def asked_by(message: Message) -> str:
    return message.metadata.get(USER, "")


def slack_ts(message: Message) -> str:
    """The Slack ts of a stored message ("" for one that never was in Slack)."""
    return message.metadata.get(TS, "")


def status_shown(message: Message) -> bool:
    """Whether "is thinking…" was shown under the thread when `message` was asked."""
    return message.metadata.get(STATUS) == SHOWN
