"""A fake Slack on 127.0.0.1: the Web API over HTTP and Socket Mode over WebSocket.

Built from Slack's method specs (`fakes/slack/methods/*.json`, MIT-licensed: see the
LICENSE.md beside them): each method checks the token prefix and the spec's required
arguments, answers with errors named in the spec, and counts calls against the spec's rate
tier. It keeps channels and messages (with `ts`,
`thread_ts`, `metadata`, streaming state), delivers the bot's own posts back as events like
Slack does, and hands Socket Mode envelopes to one connected client at random, recording
each ack and its latency.

Switches: `fail_next(method, status=429, retry_after=1)` answers the next calls of a method
with an error; `enforce_tiers=True` answers 429 when a method goes over its tier (token
buckets: a tier's per-minute count, refilled evenly; `chat.postMessage` per channel);
`refuse_status=True` makes `assistant.threads.setStatus` fail as outside an AI thread;
`lose_answer(method, when)` lets the next matching call take effect but never answers it, as
when a connection drops after Slack did the work. `pings()` lists what the bot wrote that
would notify a whole channel or a user group.

`scopes` are the bot scopes the app was installed with (None: all). Posts made with
`username`/`icon_emoji`/`icon_url` show them only with `chat:write.customize` (as in Slack,
without it the fields are ignored). `click_feedback` and `submit_view` deliver the
`block_actions` and `view_submission` payloads of a person's clicks and modal submissions;
`views.open` checks the trigger (issued to a payload, used once, within 3 s).
App Home and the AI surfaces: `open_home(user, tab)` sends `app_home_opened` (tab `home` or
`messages`), `start_assistant_thread` and `change_context` the assistant view's events;
`views.publish` keeps each person's Home tab (`home_views`), and suggested prompts and
titles are kept as set (`suggested`, `titles`). `agent_view=True` is an app on Slack's
agent view, where `setSuggestedPrompts` with a `thread_ts` silently does nothing.
Files: `upload(name, data, mimetype, filetype)` keeps a file and returns its file object as
Slack's events carry it; `user_says(..., files=[…])` posts a `file_share` message with them.
The bytes are served at the object's `url_private`/`url_private_download` only to the bot
token with `files:read` (401 without the token, 403 without the scope, as a file the app may
not see); `broken_downloads` holds file ids whose download fails (HTTP 500), and every
download is recorded in `downloads` (file id, HTTP status).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

SPECS = Path(__file__).resolve().parent / "slack" / "methods"
BOT_TOKEN = "xoxb-fake-bot-token"
APP_TOKEN = "xapp-fake-app-token"
TEAM = "T0FAKE0001"
BOT_USER = "U0TUTORBOT"
BOT_ID = "B0TUTORBOT"
APP_ID = "A0TUTORAPP"
PER_MINUTE = {"t1": 1, "t2": 20, "t3": 50, "t4": 100}
POST_PER_CHANNEL_BURST = 3
MARKDOWN_LIMIT = 12_000
REDELIVER_AFTER = 3.0  # seconds Slack waits for an events_api ack before sending it again
REDELIVERIES = 3
HISTORY_METHODS = ("conversations.history", "conversations.replies")
VIEW_BYTES = 250_000  # views.publish: view_too_large above this
VIEW_BLOCKS = 100  # blocks a Home tab may have
TEXT_LIMIT = 3000  # characters of a section's text
PROMPTS_LIMIT = 4  # suggested prompts a thread may show
RESTRICTED_PAGE = 15  # messages a call under Slack's restricted history limit
TRIGGER_SECONDS = 3.0  # a trigger_id opens a view only this soon after its interaction
CUSTOMIZE = "chat:write.customize"
FILES_READ = "files:read"
CONTEXT_ACTION_TYPES = {"feedback_buttons", "icon_button"}
CONVERSATION_TYPES = {"public_channel", "private_channel", "mpim", "im"}
# What notifies a whole channel or user group where Slack parses a message's text.
MASS_MENTION = re.compile(r"<!(?:channel|here|everyone|subteam\^)")


def load_specs(folder: Path = SPECS) -> dict[str, dict[str, Any]]:
    specs = {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}
    if not specs:
        raise FileNotFoundError(f"no Slack method specs in {folder}")
    return specs


def event_payload(event: dict[str, Any]) -> dict[str, Any]:
    """What Slack sends for an event, as `FakeSlack.send_event` sends it."""
    return {
        "token": "verification-token",
        "team_id": TEAM,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": int(time.time()),
        "authorizations": [
            {
                "team_id": TEAM,
                "user_id": BOT_USER,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
    }


class SlackError(Exception):
    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    at: float
    status: int = 200
    error: str | None = None
    lost: bool = False  # done, but its answer never sent (`lose_answer`)


@dataclass
class Envelope:
    envelope_id: str
    type: str
    payload: dict[str, Any]
    sent_at: float
    acked_at: float | None = None
    ack_payload: dict[str, Any] | None = None

    @property
    def ack_latency(self) -> float | None:
        return None if self.acked_at is None else self.acked_at - self.sent_at


@dataclass
class Bucket:
    """`capacity` calls at once, refilled at `per_second`."""

    capacity: float
    per_second: float
    tokens: float = -1.0
    updated: float = 0.0

    def take(self, now: float) -> float:
        """0 when a call may go now, else the seconds until it may."""
        if self.tokens < 0:
            self.tokens, self.updated = self.capacity, now
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.per_second


@dataclass
class FakeSlack:
    specs: dict[str, dict[str, Any]] = field(default_factory=load_specs)
    enforce_tiers: bool = False
    # Slack drops envelopes when no app connection is open (nothing is sent later); True
    # holds them until one connects instead. Dropped envelope ids go to `undelivered`.
    queue_while_disconnected: bool = False
    undelivered: list[str] = field(default_factory=list)
    # Above 0: Slack's restricted limit on conversations.history and .replies, as for
    # commercially distributed apps outside the Marketplace: this many calls a minute, no
    # burst, and at most 15 messages a call (Slack's figure is 1 a minute).
    history_per_minute: int = 0
    without_bot: set[str] = field(default_factory=set)  # channels the bot is not a member of
    refuse_status: bool = False
    posts_per_second: float = 1.0  # chat.postMessage per channel, with tiers enforced
    stream_lifetime: float | None = None  # Slack ends a stream this many seconds after its start
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    channels: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    envelopes: dict[str, Envelope] = field(default_factory=dict)
    responses: list[dict[str, Any]] = field(default_factory=list)  # to response_url
    statuses: list[dict[str, Any]] = field(default_factory=list)  # setStatus calls that worked
    home_tab_enabled: bool = True
    agent_view: bool = False
    home_views: dict[str, dict[str, Any]] = field(default_factory=dict)  # user: their Home tab
    suggested: list[dict[str, Any]] = field(default_factory=list)  # prompts set, as set
    titles: dict[tuple[str, str], str] = field(default_factory=dict)  # (channel, thread_ts)
    finished: dict[str, int] = field(default_factory=dict)  # channel: answers finished there
    scopes: set[str] | None = None  # the bot's granted scopes; None: every scope
    views: list[dict[str, Any]] = field(default_factory=list)  # opened with views.open
    files: dict[str, bytes] = field(default_factory=dict)  # file id: its bytes
    broken_downloads: set[str] = field(default_factory=set)  # file ids whose download fails
    downloads: list[tuple[str, int]] = field(default_factory=list)  # (file id, HTTP status)
    base_url: str = ""
    # Makes the server's event loop: a benchmark passes a cheaper one (uvloop's), so that the
    # fake, which real Slack would not be, takes less of the machine.
    new_loop: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sockets: list[web.WebSocketResponse] = []
        self.connections_made = 0  # ever, so a restart is seen even while the old one closes
        self._connected: asyncio.Event | None = None
        self._forced: dict[str, list[tuple[int, float | None, str]]] = defaultdict(list)
        self._losing: dict[str, Callable[[dict[str, Any]], bool]] = {}
        self._never = asyncio.Event()  # what a call whose answer is lost waits for
        self._buckets: dict[tuple[str, str], Bucket] = {}
        self._clock = itertools.count(1)
        self._started = threading.Event()
        self._triggers: dict[str, float] = {}  # trigger_id: when its interaction was sent
        self.add_user("U0ADMIN001", is_admin=True)
        self.add_user("U0STUDENT1")
        self.add_user("U0STUDENT2")
        self.add_user("U0OTHERBOT", is_bot=True)

    # ---- set-up and inspection from the test thread
    def add_user(self, user_id: str, is_admin: bool = False, is_bot: bool = False) -> None:
        self.users[user_id] = {
            "id": user_id,
            "team_id": TEAM,
            "name": user_id.lower(),
            "is_admin": is_admin,
            "is_owner": False,
            "is_primary_owner": False,
            "is_bot": is_bot,
            "deleted": False,
        }

    def add_channel(self, channel: str) -> None:
        with self._lock:
            self.channels.setdefault(channel, [])

    def fail_next(
        self, method: str, status: int = 429, retry_after: float | None = 1, error: str = ""
    ) -> None:
        """The next call of `method` fails: HTTP `status` (429: rate limited), or ok=false."""
        with self._lock:
            self._forced[method].append((status, retry_after, error or "ratelimited"))

    def lose_answer(
        self, method: str, when: Callable[[dict[str, Any]], bool] = lambda args: True
    ) -> None:
        """The next call of `method` whose arguments satisfy `when` takes effect, but its
        answer never reaches the caller; the call is recorded with `lost=True`."""
        with self._lock:
            self._losing[method] = when

    def wait_until(self, check: Callable[[], Any], timeout: float = 15.0) -> Any:
        """Block until `check()` is truthy (re-checked at every change) and return it."""
        with self._changed:
            result = self._changed.wait_for(check, timeout)
            if not result:
                raise TimeoutError("the fake Slack never reached the expected state")
            return result

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def messages(self, channel: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(m) for m in self.channels.get(channel, [])]

    def alter_message(self, channel: str, ts: str, **fields: Any) -> None:
        """Change a stored message in place, sending no event (another app's doing)."""
        with self._lock:
            self._find(channel, ts).update(fields)
        self._notify()

    def copy_message(self, message: dict[str, Any], channel: str) -> str:
        """A copy of `message` in `channel`, under a new ts, sending no event; its ts."""
        self.add_channel(channel)
        with self._lock:
            ts = self.next_ts()
            self.channels[channel].append({**message, "ts": ts})
        self._notify()
        return ts

    def replies(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """The thread's replies (not the root), oldest first."""
        return [
            m
            for m in self.messages(channel)
            if m.get("thread_ts") == thread_ts and m["ts"] != thread_ts
        ]

    def pings(self) -> list[str]:
        """What the bot wrote (in any chat.* call, or as a message reads in the end: chunks
        streamed one after the other) that would notify a channel or a user group."""
        with self._lock:
            written = [c.args for c in self.calls if c.method.startswith("chat.")]
            shown = [
                m
                for messages in self.channels.values()
                for m in messages
                if m.get("bot_id") == BOT_ID
            ]
        texts = [
            " ".join(
                [
                    content.get("text") or "",
                    content.get("markdown_text") or "",
                    json.dumps(content.get("blocks"), ensure_ascii=False),
                ]
            )
            for content in [*written, *shown]
        ]
        return [text for text in texts if MASS_MENTION.search(text)]

    def calls_of(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    # ---- what users do
    def next_ts(self) -> str:
        now = time.time()
        return f"{int(now)}.{next(self._clock) % 1_000_000:06d}"

    def slash(self, user: str, channel: str, text: str, command: str = "/tutor") -> str:
        """A user runs a slash command; returns the envelope id."""
        self.add_channel(channel)
        payload = self.command_payload(user, channel, text, command)
        return self.send_envelope("slash_commands", payload, accepts_response_payload=True)

    def command_payload(
        self, user: str, channel: str, text: str, command: str = "/tutor"
    ) -> dict[str, Any]:
        """What Slack sends for a slash command, as `slash` sends it."""
        token = uuid.uuid4().hex
        return {
            "token": "verification-token",
            "team_id": TEAM,
            "team_domain": "fake",
            "channel_id": channel,
            "channel_name": channel.lower(),
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": f"{self.root_url}/response/{token}",
            "trigger_id": f"trigger.{token}",
        }

    def user_says(
        self,
        user: str,
        channel: str,
        text: str,
        thread_ts: str | None = None,
        bot_id: str | None = None,
        deliver: bool = True,
        files: list[dict[str, Any]] | None = None,
    ) -> str:
        """A person (or another bot) posts a message, with `files` (see `upload`) as a
        `file_share`; Slack sends the events. Returns its ts."""
        self.add_channel(channel)
        message: dict[str, Any] = {
            "type": "message",
            "user": user,
            "text": text,
            "ts": self.next_ts(),
        }
        if files:
            message.update(subtype="file_share", files=files, upload=False, display_as_bot=False)
        if thread_ts:
            message["thread_ts"] = thread_ts
        if bot_id:
            message["bot_id"] = bot_id
        with self._lock:
            self.channels[channel].append(message)
        self._notify()
        if deliver:
            self.deliver_message_events(channel, message)
        return str(message["ts"])

    def upload(
        self,
        name: str,
        data: bytes,
        mimetype: str,
        filetype: str,
        user: str = "U0STUDENT1",
        stated_size: int | None = None,
    ) -> dict[str, Any]:
        """A person uploads a file: Slack keeps it and describes it as its events do
        (`stated_size` overrides the size Slack states)."""
        file_id = f"F{uuid.uuid4().hex[:10].upper()}"
        with self._lock:
            self.files[file_id] = data
        private = f"{self.root_url}/files-pri/{TEAM}-{file_id}/{name}"
        now = int(time.time())
        return {
            "id": file_id,
            "created": now,
            "timestamp": now,
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": filetype,
            "pretty_type": filetype.upper(),
            "user": user,
            "user_team": TEAM,
            "editable": False,
            "size": len(data) if stated_size is None else stated_size,
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": True,
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "url_private": private,
            "url_private_download": f"{self.root_url}/files-pri/{TEAM}-{file_id}/download/{name}",
            "permalink": f"{self.root_url}/files/{user}/{file_id}/{name}",
            "has_rich_preview": False,
        }

    def deliver_message_events(self, channel: str, message: dict[str, Any]) -> None:
        if channel in self.without_bot:  # Slack sends an app only its channels' events
            return
        kind = "im" if channel.startswith("D") else "channel"
        event = {**message, "channel": channel, "event_ts": message["ts"], "channel_type": kind}
        self.send_event(event)
        if f"<@{BOT_USER}>" in message.get("text", "") and kind != "im":
            mention = {k: v for k, v in event.items() if k != "channel_type"}
            self.send_event({**mention, "type": "app_mention"})

    def edit(self, user: str, channel: str, ts: str, text: str) -> None:
        with self._lock:
            message = self._find(channel, ts)
            previous = dict(message)
            message["text"] = text
            message["edited"] = {"user": user, "ts": self.next_ts()}
        self.send_event(
            {
                "type": "message",
                "subtype": "message_changed",
                "channel": channel,
                "hidden": True,
                "message": dict(message),
                "previous_message": previous,
                "ts": self.next_ts(),
                "event_ts": self.next_ts(),
                "channel_type": "channel",
            }
        )

    def delete(self, channel: str, ts: str) -> None:
        with self._lock:
            message = self._find(channel, ts)
            self.channels[channel].remove(message)
        self.send_event(
            {
                "type": "message",
                "subtype": "message_deleted",
                "channel": channel,
                "hidden": True,
                "deleted_ts": ts,
                "previous_message": message,
                "ts": self.next_ts(),
                "event_ts": self.next_ts(),
                "channel_type": "channel",
            }
        )

    @staticmethod
    def dm_of(user: str) -> str:
        """The id of a person's DM with the bot (this fake's: D and the rest of their id)."""
        return "D" + user[1:]

    def open_home(self, user: str, tab: str = "home") -> str:
        """A person opens the app's Home (`tab: home`) or Messages tab (`tab: messages`);
        returns the event's envelope id. A Home tab published before comes as `view`."""
        channel = self.dm_of(user)
        self.add_channel(channel)
        event: dict[str, Any] = {
            "type": "app_home_opened",
            "user": user,
            "channel": channel,
            "tab": tab,
            "event_ts": self.next_ts(),
        }
        with self._lock:
            published = self.home_views.get(user)
        if tab == "home" and published is not None:
            event["view"] = dict(published)
        return self.send_event(event)

    def start_assistant_thread(self, user: str, context_channel: str | None = None) -> str:
        """A person starts a chat in the assistant view: Slack makes its root message in
        their DM (subtype `assistant_app_thread`) and sends `assistant_thread_started`.
        Returns the thread's ts; the person's messages then come as replies under it."""
        channel = self.dm_of(user)
        self.add_channel(channel)
        root: dict[str, Any] = {
            "type": "message",
            "subtype": "assistant_app_thread",
            "user": user,
            "text": "New chat",
            "ts": self.next_ts(),
        }
        root["thread_ts"] = root["ts"]
        with self._lock:
            self.channels[channel].append(root)
        self._notify()
        self._assistant_event(
            "assistant_thread_started", user, channel, root["ts"], context_channel
        )
        return str(root["ts"])

    def change_context(self, user: str, thread_ts: str, context_channel: str | None) -> str:
        """The person, chat open, moves to another channel (`assistant_thread_context_changed`)."""
        return self._assistant_event(
            "assistant_thread_context_changed", user, self.dm_of(user), thread_ts, context_channel
        )

    def _assistant_event(
        self, kind: str, user: str, channel: str, thread_ts: str, context_channel: str | None
    ) -> str:
        context: dict[str, Any] = {"team_id": TEAM}
        if context_channel:
            context["channel_id"] = context_channel
        thread = {
            "user_id": user,
            "context": context,
            "channel_id": channel,
            "thread_ts": thread_ts,
        }
        return self.send_event(
            {"type": kind, "assistant_thread": thread, "event_ts": self.next_ts()}
        )

    def click(self, user: str, channel: str, message_ts: str, action_id: str, value: str) -> str:
        """A user clicks a Block Kit button."""
        with self._lock:
            message = dict(self._find(channel, message_ts))
        payload = {
            "type": "block_actions",
            "team": {"id": TEAM, "domain": "fake"},
            "user": {"id": user, "team_id": TEAM},
            "api_app_id": APP_ID,
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
            "channel": {"id": channel},
            "message": message,
            "trigger_id": f"trigger.{uuid.uuid4().hex}",
            "response_url": f"{self.root_url}/response/{uuid.uuid4().hex}",
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "tutor_retry",
                    "value": value,
                    "action_ts": str(time.time()),
                }
            ],
        }
        return self.send_envelope("interactive", payload, accepts_response_payload=False)

    def click_feedback(self, user: str, channel: str, message_ts: str, positive: bool) -> str:
        """A user clicks 👍 (`positive`) or 👎 of the feedback buttons under a message."""
        with self._lock:
            message = dict(self._find(channel, message_ts))
        block, element = next(
            (b, e)
            for b in message.get("blocks") or []
            if b.get("type") == "context_actions"
            for e in b["elements"]
            if e.get("type") == "feedback_buttons"
        )
        button = element["positive_button" if positive else "negative_button"]
        container = {"type": "message", "message_ts": message_ts, "channel_id": channel}
        payload = self._interaction(user, channel, container, message)
        payload["actions"] = [
            {
                "type": "feedback_buttons",
                "action_id": element.get("action_id", ""),
                "block_id": block.get("block_id", ""),
                "value": button["value"],
                "text": button["text"],
                "action_ts": str(time.time()),
            }
        ]
        return self.send_envelope("interactive", payload, accepts_response_payload=False)

    def _interaction(
        self, user: str, channel: str, container: dict[str, Any], message: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "type": "block_actions",
            "team": {"id": TEAM, "domain": "fake"},
            "user": {"id": user, "team_id": TEAM},
            "api_app_id": APP_ID,
            "container": container,
            "channel": {"id": channel},
            "message": message,
            "trigger_id": f"trigger.{uuid.uuid4().hex}",
            "response_url": f"{self.root_url}/response/{uuid.uuid4().hex}",
        }

    def upload_file(
        self, user: str, name: str, content: bytes, filetype: str = "text"
    ) -> dict[str, Any]:
        """A user uploads a text or PDF file (e.g. in a modal's file input); its file object
        as Slack shows it (see `upload`)."""
        mimetype = "application/pdf" if filetype == "pdf" else "text/plain"
        return self.upload(name, content, mimetype, filetype, user)

    def submit_view(self, user: str, view_id: str, values: dict[str, dict[str, Any]]) -> str:
        """A user submits a modal opened with views.open; `values` by block id, then action
        id, as Slack's `view.state.values` (e.g. {"type": "plain_text_input", "value": …})."""
        with self._lock:
            view = next(v for v in self.views if v["id"] == view_id)
        payload = {
            "type": "view_submission",
            "team": {"id": TEAM, "domain": "fake"},
            "user": {"id": user, "team_id": TEAM},
            "api_app_id": APP_ID,
            "trigger_id": f"trigger.{uuid.uuid4().hex}",
            "view": {**view, "state": {"values": values}},
            "response_urls": [],
        }
        return self.send_envelope("interactive", payload, accepts_response_payload=True)

    def send_event(self, event: dict[str, Any]) -> str:
        payload = event_payload(event)
        return self.send_envelope(
            "events_api", payload, retry_attempt=0, retry_reason="", accepts_response_payload=False
        )

    def send_envelope(self, kind: str, payload: dict[str, Any], **extra: Any) -> str:
        envelope_id = str(uuid.uuid4())
        body = {"envelope_id": envelope_id, "type": kind, "payload": payload, **extra}
        with self._lock:
            if payload.get("trigger_id"):
                self._triggers[payload["trigger_id"]] = time.monotonic()
            self.envelopes[envelope_id] = Envelope(envelope_id, kind, payload, time.monotonic())
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self._send(body), self._loop)
        return envelope_id

    def wait_ack(self, envelope_id: str, timeout: float = 10.0) -> dict[str, Any]:
        envelope = self.wait_until(
            lambda: (
                self.envelopes[envelope_id].acked_at is not None and self.envelopes[envelope_id]
            ),
            timeout,
        )
        return envelope.ack_payload or {}

    def wait_events_acked(self, timeout: float = 10.0) -> None:
        """Until every event sent so far is acknowledged: by a bot that acknowledges an event
        once it has handled it, every one handled."""
        self.wait_until(
            lambda: all(
                e.acked_at is not None for e in self.envelopes.values() if e.type == "events_api"
            ),
            timeout,
        )

    def wait_connected(self, count: int = 1, timeout: float = 15.0) -> None:
        self.wait_until(lambda: len(self._sockets) >= count, timeout)

    def drop_connections(self) -> None:
        """Close every app connection from Slack's side (the apps then reconnect)."""
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(self.disconnect_all(), self._loop).result(5)

    def wait_disconnected(self, timeout: float = 15.0) -> None:
        """Until no app connection is open (a stopped bot's socket is closed here too)."""
        self.wait_until(lambda: not self._sockets, timeout)

    def said_earlier(self, user: str, channel: str, text: str, seconds_ago: float) -> str:
        """A person posted a top-level message `seconds_ago` (its events long gone)."""
        self.add_channel(channel)
        ts = f"{int(time.time() - seconds_ago)}.{next(self._clock) % 1_000_000:06d}"
        with self._lock:
            self.channels[channel].append({"type": "message", "user": user, "text": text, "ts": ts})
            self.channels[channel].sort(key=lambda m: float(m["ts"]))
        self._notify()
        return ts

    # ---- Socket Mode
    async def _send(self, body: dict[str, Any]) -> None:
        if not self._sockets and not self.queue_while_disconnected:
            self._drop(body)
            return
        await self._some_socket().wait()  # with queue_while_disconnected: until one connects
        socket = random.choice(self._sockets)
        with self._lock:
            self.envelopes[body["envelope_id"]].sent_at = time.monotonic()
        try:
            await socket.send_json(body)
        except ConnectionError:
            await self._send(body)
            return
        if body["type"] == "events_api":
            asyncio.get_running_loop().call_later(
                REDELIVER_AFTER, lambda: asyncio.ensure_future(self._redeliver(body))
            )

    async def _redeliver(self, body: dict[str, Any]) -> None:
        """Slack sends an event again when its envelope is not acknowledged in time."""
        with self._lock:
            acked = self.envelopes[body["envelope_id"]].acked_at is not None
        if acked or body["retry_attempt"] >= REDELIVERIES:
            return
        await self._send(
            {**body, "retry_attempt": body["retry_attempt"] + 1, "retry_reason": "timeout"}
        )

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(heartbeat=None)
        await socket.prepare(request)
        await socket.send_json(
            {
                "type": "hello",
                "num_connections": len(self._sockets) + 1,
                "debug_info": {"host": "fake-slack", "approximate_connection_time": 3600},
                "connection_info": {"app_id": APP_ID},
            }
        )
        self._sockets.append(socket)
        self.connections_made += 1
        self._some_socket().set()
        self._notify()
        try:
            async for message in socket:
                if message.type == WSMsgType.TEXT:
                    self._acked(json.loads(message.data))
        finally:
            if socket in self._sockets:
                self._sockets.remove(socket)
            if not self._sockets:
                self._some_socket().clear()
            self._notify()
        return socket

    def _some_socket(self) -> asyncio.Event:
        """Set while at least one app connection is open (used on the server's loop)."""
        if self._connected is None:
            self._connected = asyncio.Event()
        return self._connected

    def _acked(self, ack: dict[str, Any]) -> None:
        with self._lock:
            envelope = self.envelopes.get(ack.get("envelope_id", ""))
            if envelope is not None and envelope.acked_at is None:
                envelope.acked_at = time.monotonic()
                envelope.ack_payload = ack.get("payload")
        self._notify()

    async def disconnect_all(self) -> None:
        for socket in list(self._sockets):
            await socket.close()

    def _drop(self, body: dict[str, Any]) -> None:
        """No app connection is open: Slack keeps nothing to send later."""
        with self._lock:
            self.undelivered.append(body["envelope_id"])
        self._notify()

    # ---- the Web API
    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await self._arguments(request)
        call = Call(method, args, time.monotonic())
        with self._lock:
            self.calls.append(call)
        try:
            limited = self._rate_limited(method, args)
            if limited is not None:
                call.status, call.error = 429, "ratelimited"
                return web.json_response(
                    {"ok": False, "error": "ratelimited"},
                    status=429,
                    headers={"Retry-After": str(max(1, round(limited)))},
                )
            result = self._dispatch(method, args, request)
            call.lost = self._loses(method, args)
        except SlackError as exc:
            call.error = exc.error
            return web.json_response({"ok": False, "error": exc.error, **exc.extra})
        finally:
            self._notify()
        if call.lost:
            await self._never.wait()
        return web.json_response({"ok": True, **result})

    def _loses(self, method: str, args: dict[str, Any]) -> bool:
        with self._lock:
            when = self._losing.get(method)
            if when is None or not when(args):
                return False
            del self._losing[method]
            return True

    async def _arguments(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        raw = await request.read()
        if request.content_type == "application/json" and raw:
            args.update(json.loads(raw))
        elif raw:
            args.update(parse_qsl(raw.decode(), keep_blank_values=True))
        for key in ("metadata", "blocks", "prompts", "loading_messages", "view"):
            if isinstance(args.get(key), str) and args[key]:
                try:
                    args[key] = json.loads(args[key])
                except json.JSONDecodeError:
                    args[key] = {"unparseable": args[key]}
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            args.setdefault("token", auth.removeprefix("Bearer "))
        return args

    def _rate_limited(self, method: str, args: dict[str, Any]) -> float | None:
        with self._lock:
            forced = self._forced.get(method)
            if forced:
                status, retry_after, error = forced.pop(0)
                if status == 429:
                    return retry_after or 1
                raise SlackError(error)
            if self.history_per_minute and method in HISTORY_METHODS:
                return self._history_bucket(method).take(time.monotonic()) or None
            if not self.enforce_tiers:
                return None
            now = time.monotonic()
            if method == "chat.postMessage":
                key = (method, str(args.get("channel")))
                bucket = self._buckets.setdefault(
                    key, Bucket(POST_PER_CHANNEL_BURST, self.posts_per_second)
                )
            else:
                per_minute = PER_MINUTE.get(self.specs[method].get("rate_limits", ""))
                if per_minute is None:
                    return None
                bucket = self._buckets.setdefault(
                    (method, TEAM), Bucket(per_minute, per_minute / 60)
                )
            wait = bucket.take(now)
            return wait or None

    def _history_bucket(self, method: str) -> Bucket:
        return self._buckets.setdefault(
            (method, "restricted"), Bucket(1, self.history_per_minute / 60)
        )

    def _dispatch(self, method: str, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        spec = self.specs.get(method)
        if spec is None:
            raise SlackError("unknown_method")
        token = str(args.get("token", ""))
        wanted = APP_TOKEN if method == "apps.connections.open" else BOT_TOKEN
        if not token:
            raise SlackError("not_authed")
        if token != wanted:
            raise SlackError(
                "invalid_auth" if token[:5] == wanted[:5] else "not_allowed_token_type"
            )
        missing = [a for a in spec["args"].get("required", []) if a != "token" and a not in args]
        if missing:
            raise SlackError(
                "invalid_arguments",
                response_metadata={"messages": [f"[ERROR] missing required field: {missing[0]}"]},
            )
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            raise SlackError("not_implemented")
        with self._lock:
            result: dict[str, Any] = handler(args, request)
        return result

    def _channel(self, args: dict[str, Any], key: str = "channel") -> list[dict[str, Any]]:
        channel = str(args.get(key, ""))
        if channel not in self.channels:
            raise SlackError("channel_not_found")
        return self.channels[channel]

    def _find(self, channel: str, ts: str) -> dict[str, Any]:
        for message in self.channels.get(channel, []):
            if message["ts"] == ts:
                return message
        raise SlackError("message_not_found")

    @staticmethod
    def _check_metadata(args: dict[str, Any]) -> dict[str, Any] | None:
        metadata = args.get("metadata")
        if metadata in (None, ""):
            return None
        if not (
            isinstance(metadata, dict)
            and isinstance(metadata.get("event_type"), str)
            and isinstance(metadata.get("event_payload"), dict)
        ):
            raise SlackError("invalid_metadata_format")
        return metadata

    def _identity(self, args: dict[str, Any]) -> dict[str, Any]:
        """How a post shows its author: the `username` and icon it asked for, with the
        scope that allows them (without it Slack shows the app's own)."""
        if self.scopes is not None and CUSTOMIZE not in self.scopes:
            return {}
        shown: dict[str, Any] = {}
        if args.get("username"):
            shown["username"] = args["username"]
        if args.get("icon_emoji"):  # overrides icon_url, as the specs say
            shown["icons"] = {"emoji": args["icon_emoji"]}
        elif args.get("icon_url"):
            shown["icons"] = {"image_48": args["icon_url"]}
        return shown

    @staticmethod
    def _check_blocks(args: dict[str, Any]) -> None:
        """What this fake knows of Block Kit: `markdown` blocks within the markdown limit,
        `context_actions` of at most five feedback or icon buttons, each feedback button
        with plain text and a value."""
        blocks = args.get("blocks") or []
        if not isinstance(blocks, list):
            raise SlackError("invalid_blocks_format")
        for block in blocks:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "markdown" and not 0 < len(block.get("text") or "") <= MARKDOWN_LIMIT:
                raise SlackError("invalid_blocks")
            if kind == "context_actions":
                elements = block.get("elements") or []
                if not 0 < len(elements) <= 5 or any(
                    e.get("type") not in CONTEXT_ACTION_TYPES for e in elements
                ):
                    raise SlackError("invalid_blocks")
                for element in elements:
                    if element["type"] == "feedback_buttons":
                        for side in ("positive_button", "negative_button"):
                            button = element.get(side) or {}
                            text = button.get("text") or {}
                            if text.get("type") != "plain_text" or not button.get("value"):
                                raise SlackError("invalid_blocks")

    @staticmethod
    def _check_text(args: dict[str, Any], required: bool = True, beside: bool = False) -> None:
        """`beside`: blocks go below the markdown text (chat.stopStream) rather than
        conflict with it."""
        markdown = args.get("markdown_text")
        if markdown and (args.get("text") or (args.get("blocks") and not beside)):
            raise SlackError("markdown_text_conflict")
        if markdown and len(markdown) > MARKDOWN_LIMIT:
            raise SlackError("msg_too_long")
        if required and not (args.get("text") or markdown or args.get("blocks")):
            raise SlackError("no_text")

    def _new_bot_message(self, args: dict[str, Any], channel: str) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "ts": self.next_ts(),
            "text": args.get("text") or args.get("markdown_text") or "",
        }
        for key in ("blocks", "thread_ts"):
            if args.get(key):
                message[key] = args[key]
        self._check_blocks(args)
        message.update(self._identity(args))
        metadata = self._check_metadata(args)
        if metadata:
            message["metadata"] = metadata
        if message.get("thread_ts"):
            self._find(channel, message["thread_ts"])  # a reply needs its parent
        self.channels[channel].append(message)
        return message

    def _count_finished(self, channel: str, message: dict[str, Any]) -> None:
        """Keep a cheap count of finished answers per channel (benchmarks wait on it)."""
        metadata = message.get("metadata") or {}
        if metadata.get("event_type") == "tutor_answer" and not message.get("counted"):
            message["counted"] = True
            self.finished[channel] = self.finished.get(channel, 0) + 1

    def _echo(self, channel: str, message: dict[str, Any]) -> None:
        """Slack sends an app its own posts back as message events."""
        assert self._loop is not None
        self._loop.call_soon(self.deliver_message_events, channel, dict(message))

    # each method: arguments in, the fields of a successful answer out
    def _auth_test(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        return {
            "url": f"{self.root_url}/",
            "team": "Fake School",
            "user": "tutor",
            "team_id": TEAM,
            "user_id": BOT_USER,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "is_enterprise_install": False,
        }

    def _apps_connections_open(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        host = self.root_url.removeprefix("http://")
        return {"url": f"ws://{host}/link/?ticket={uuid.uuid4().hex}&app_id={APP_ID}"}

    def _chat_postMessage(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        self._channel(args)
        self._check_text(args)
        message = self._new_bot_message(args, args["channel"])
        self._count_finished(args["channel"], message)
        self._echo(args["channel"], message)
        return {"channel": args["channel"], "ts": message["ts"], "message": dict(message)}

    def _chat_update(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        self._channel(args)
        message = self._find(args["channel"], args["ts"])
        if message.get("bot_id") != BOT_ID:
            raise SlackError("cant_update_message")
        if message.get("streaming"):
            raise SlackError("streaming_state_conflict")
        self._check_text(args)
        self._check_blocks(args)
        message["text"] = args.get("text") or args.get("markdown_text") or ""
        message["blocks"] = args.get("blocks") or []
        message.pop("broken", None)
        metadata = self._check_metadata(args)
        if metadata:
            message["metadata"] = metadata
        message["edited"] = {"user": BOT_USER, "ts": self.next_ts()}
        self._count_finished(args["channel"], message)
        return {"channel": args["channel"], "ts": message["ts"], "text": message["text"]}

    def _chat_delete(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        messages = self._channel(args)
        message = self._find(args["channel"], args["ts"])
        if message.get("bot_id") != BOT_ID:
            raise SlackError("cant_delete_message")
        messages.remove(message)
        return {"channel": args["channel"], "ts": args["ts"]}

    def _chat_startStream(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        self._channel(args)
        if not args["channel"].startswith("D"):
            if not args.get("recipient_user_id"):
                raise SlackError("missing_recipient_user_id")
            if not args.get("recipient_team_id"):
                raise SlackError("missing_recipient_team_id")
        if args.get("recipient_user_id") and args["recipient_user_id"] not in self.users:
            raise SlackError("user_not_found")
        self._check_text(args, required=False)
        message = self._new_bot_message(args, args["channel"])
        message["text"] = args.get("markdown_text") or ""
        message["streaming"] = True
        message["stream_started"] = time.monotonic()
        return {"channel": args["channel"], "ts": message["ts"]}

    def _streaming(self, args: dict[str, Any]) -> dict[str, Any]:
        self._channel(args)
        message = self._find(args["channel"], args["ts"])
        if message.get("bot_id") != BOT_ID:
            raise SlackError("message_not_owned_by_app")
        lifetime = self.stream_lifetime
        if message.get("streaming") and lifetime is not None:
            if time.monotonic() - message["stream_started"] > lifetime:
                # Slack ended it: the message shows as broken until chat.update gives it text
                message["streaming"], message["broken"] = False, True
        if not message.get("streaming"):
            raise SlackError("message_not_in_streaming_state")
        return message

    def _chat_appendStream(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        message = self._streaming(args)
        self._check_text(args)
        message["text"] += args["markdown_text"]
        return {"channel": args["channel"], "ts": message["ts"]}

    def _chat_stopStream(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        message = self._streaming(args)
        self._check_text(args, required=False, beside=True)
        message["text"] += args.get("markdown_text") or ""
        self._check_blocks(args)
        if args.get("blocks"):
            message["blocks"] = args["blocks"]
        metadata = self._check_metadata(args)
        if metadata:
            message["metadata"] = metadata
        message["streaming"] = False
        self._count_finished(args["channel"], message)
        self._echo(args["channel"], message)
        return {"channel": args["channel"], "ts": message["ts"], "message": dict(message)}

    def _chat_postEphemeral(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        self._channel(args)
        self._check_text(args)
        self.responses.append({"channel": args["channel"], "user": args["user"], **args})
        return {"message_ts": self.next_ts()}

    def _chat_getPermalink(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        self._channel(args)
        message = self._find(args["channel"], args["message_ts"])
        link = f"{self.root_url}/archives/{args['channel']}/p{message['ts'].replace('.', '')}"
        if message.get("thread_ts") and message["thread_ts"] != message["ts"]:
            link += f"?thread_ts={message['thread_ts']}&cid={args['channel']}"
        return {"channel": args["channel"], "permalink": link}

    def _views_open(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        trigger = str(args.get("trigger_id") or "")
        issued = self._triggers.get(trigger)
        if issued is None:
            raise SlackError("invalid_trigger_id")
        if issued < 0:
            raise SlackError("exchanged_trigger_id")
        self._triggers[trigger] = -1.0  # a trigger opens one view
        if time.monotonic() - issued > TRIGGER_SECONDS:
            raise SlackError("expired_trigger_id")
        view = args.get("view")
        if isinstance(view, str):
            view = json.loads(view)
        if not isinstance(view, dict) or view.get("type") != "modal" or not view.get("title"):
            raise SlackError("invalid_arguments")
        opened = {**view, "id": f"V{uuid.uuid4().hex[:10].upper()}", "app_id": APP_ID}
        self.views.append(opened)
        return {"view": opened}

    def _conversations_replies(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        messages = self._channel(args)
        root = self._find(args["channel"], args["ts"])
        thread_ts = root.get("thread_ts", root["ts"])
        oldest = float(args.get("oldest") or 0)
        inclusive = str(args.get("inclusive", "0")).lower() in ("1", "true")
        limit = int(args.get("limit") or 1000)
        limit = min(limit, RESTRICTED_PAGE) if self.history_per_minute else limit
        start = int(args.get("cursor") or 0)
        thread = [m for m in messages if m["ts"] == thread_ts or m.get("thread_ts") == thread_ts]
        thread.sort(key=lambda m: float(m["ts"]))
        if oldest:
            thread = [
                m
                for m in thread
                if float(m["ts"]) > oldest or (inclusive and float(m["ts"]) == oldest)
            ]
        page = thread[start : start + limit]
        with_metadata = str(args.get("include_all_metadata", "0")).lower() in ("1", "true")
        shown = [{k: v for k, v in m.items() if k != "metadata" or with_metadata} for m in page]
        more = start + limit < len(thread)
        return {
            "messages": shown,
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _users_info(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        user = self.users.get(str(args["user"]))
        if user is None:
            raise SlackError("user_not_found")
        return {"user": dict(user)}

    def _assistant_threads_setStatus(
        self, args: dict[str, Any], request: web.Request
    ) -> dict[str, Any]:
        messages = self._channel(args, "channel_id")
        if self.refuse_status:
            raise SlackError("channel_not_found", detail="not an assistant thread")
        if not any(m["ts"] == args["thread_ts"] for m in messages):
            raise SlackError("invalid_thread_ts")
        self.statuses.append(dict(args))
        return {}

    def _assistant_threads_setSuggestedPrompts(
        self, args: dict[str, Any], request: web.Request
    ) -> dict[str, Any]:
        messages = self._channel(args, "channel_id")
        prompts = args["prompts"]
        if not (
            isinstance(prompts, list)
            and 1 <= len(prompts) <= PROMPTS_LIMIT
            and all(isinstance(p, dict) and p.get("title") and p.get("message") for p in prompts)
        ):
            raise SlackError("invalid_arguments")
        thread_ts = args.get("thread_ts")
        if thread_ts and not any(m["ts"] == thread_ts for m in messages):
            raise SlackError("invalid_thread_ts", detail="Thread not found")
        if thread_ts and self.agent_view:
            return {}  # Slack: "will cause the call to silently fail" for an agent app
        latest = max((m["ts"] for m in messages), key=float, default=None)
        shown = {**args, "thread_ts": thread_ts or latest}
        self.suggested.append({k: v for k, v in shown.items() if k != "token"})
        return {}

    def _assistant_threads_setTitle(
        self, args: dict[str, Any], request: web.Request
    ) -> dict[str, Any]:
        messages = self._channel(args, "channel_id")
        if not any(m["ts"] == args["thread_ts"] for m in messages):
            raise SlackError("invalid_thread_ts", detail="Thread not found")
        self.titles[(args["channel_id"], args["thread_ts"])] = str(args["title"])
        return {}

    def _views_publish(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        user = str(args["user_id"])
        if user not in self.users:
            raise SlackError(
                "invalid_arguments", response_metadata={"messages": ["invalid `user_id`"]}
            )
        view = args["view"]
        if not isinstance(view, dict) or view.get("type") != "home":
            raise SlackError(
                "invalid_arguments", response_metadata={"messages": ["invalid `view`"]}
            )
        if not self.home_tab_enabled:
            raise SlackError("not_enabled")
        if len(json.dumps(view).encode()) > VIEW_BYTES:
            raise SlackError("view_too_large")
        self._check_view_blocks(view.get("blocks"))
        published = self.home_views.get(user)
        if args.get("hash") and (published is None or published["hash"] != args["hash"]):
            raise SlackError("hash_conflict")
        stored = {
            "id": published["id"] if published else f"V{uuid.uuid4().hex[:10].upper()}",
            "team_id": TEAM,
            "type": "home",
            "blocks": view.get("blocks") or [],
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "external_id": view.get("external_id", ""),
            "hash": f"{time.time():.6f}.{uuid.uuid4().hex[:8]}",
            "app_id": APP_ID,
            "bot_id": BOT_ID,
        }
        self.home_views[user] = stored
        return {"view": dict(stored)}

    @staticmethod
    def _check_view_blocks(blocks: Any) -> None:
        """Slack's limits that a view built from stored text can break: invalid_arguments."""
        if not isinstance(blocks, list) or len(blocks) > VIEW_BLOCKS:
            raise SlackError(
                "invalid_arguments",
                response_metadata={"messages": [f"[ERROR] no more than {VIEW_BLOCKS} items"]},
            )
        for block in blocks:
            texts = [block.get("text") or {}, *(block.get("elements") or [])]
            if any(
                len(str(t.get("text") or "")) > TEXT_LIMIT for t in texts if isinstance(t, dict)
            ):
                raise SlackError(
                    "invalid_arguments",
                    response_metadata={"messages": [f"[ERROR] text over {TEXT_LIMIT} characters"]},
                )

    def _conversations_info(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        self._channel(args)
        channel = str(args["channel"])
        return {
            "channel": {"id": channel, "is_im": channel.startswith("D"), "name": channel.lower()}
        }

    def _users_conversations(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        types = set(str(args.get("types") or "public_channel").split(","))
        if not types <= CONVERSATION_TYPES:
            raise SlackError("invalid_types")
        limit = self._page_limit(args, default=100)
        if limit is None:
            raise SlackError("invalid_limit")
        member = [c for c in self.channels if c not in self.without_bot and self._kind(c) in types]
        start = self._cursor(args)
        page = member[start : start + limit]
        more = start + limit < len(member)
        return {
            "channels": [self._conversation(c) for c in page],
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _conversations_history(self, args: dict[str, Any], request: web.Request) -> dict[str, Any]:
        messages = self._channel(args)
        if args["channel"] in self.without_bot:
            raise SlackError("not_in_channel")
        oldest = self._timestamp(args, "oldest", 0.0)
        latest = self._timestamp(args, "latest", float("inf"))
        inclusive = str(args.get("inclusive", "0")).lower() in ("1", "true")
        limit = self._page_limit(args, default=100) or 100  # the spec names no limit error
        if self.history_per_minute:
            limit = min(limit, RESTRICTED_PAGE)
        top = [
            m
            for m in sorted(messages, key=lambda m: float(m["ts"]), reverse=True)
            if m.get("thread_ts", m["ts"]) == m["ts"] or m.get("subtype") == "thread_broadcast"
        ]
        top = [
            m
            for m in top
            if oldest < float(m["ts"]) < latest
            or (inclusive and float(m["ts"]) in (oldest, latest))
        ]
        start = self._cursor(args)
        page = top[start : start + limit]
        with_metadata = str(args.get("include_all_metadata", "0")).lower() in ("1", "true")
        more = start + limit < len(top)
        return {
            "messages": [self._top_level(messages, m, with_metadata) for m in page],
            "has_more": more,
            "pin_count": 0,
            "channel_actions_ts": None,
            "channel_actions_count": 0,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    @staticmethod
    def _kind(channel: str) -> str:
        """D… a DM, G… a private channel (as legacy ids are), anything else public."""
        return {"D": "im", "G": "private_channel"}.get(channel[:1], "public_channel")

    def _conversation(self, channel: str) -> dict[str, Any]:
        kind = self._kind(channel)
        if kind == "im":
            people = [m["user"] for m in self.channels[channel] if not m.get("bot_id")]
            user = people[0] if people else ""
            return {"id": channel, "is_im": True, "user": user, "is_user_deleted": False}
        return {
            "id": channel,
            "name": channel.lower(),
            "is_channel": True,
            "is_group": False,
            "is_im": False,
            "is_mpim": False,
            "is_private": kind == "private_channel",
            "is_archived": False,
        }

    @staticmethod
    def _top_level(
        messages: list[dict[str, Any]], message: dict[str, Any], with_metadata: bool
    ) -> dict[str, Any]:
        """A message as history shows it: a thread's parent with its replies summed up."""
        shown = {k: v for k, v in message.items() if k != "metadata" or with_metadata}
        replies = [
            m for m in messages if m.get("thread_ts") == message["ts"] and m["ts"] != message["ts"]
        ]
        if replies:
            users = list(dict.fromkeys(m["user"] for m in replies if m.get("user")))
            shown.update(
                thread_ts=message["ts"],
                reply_count=len(replies),
                reply_users=users,
                reply_users_count=len(users),
                latest_reply=max((m["ts"] for m in replies), key=float),
            )
        return shown

    @staticmethod
    def _page_limit(args: dict[str, Any], default: int) -> int | None:
        """The page size asked for (at most 999, as the specs say); None when not a count."""
        try:
            limit = int(args.get("limit") or default)
        except ValueError:
            return None
        return min(limit, 999) if limit >= 1 else None

    @staticmethod
    def _cursor(args: dict[str, Any]) -> int:
        """This fake's cursors are offsets into the listing."""
        cursor = str(args.get("cursor") or "0")
        if not cursor.isdigit():
            raise SlackError("invalid_cursor")
        return int(cursor)

    @staticmethod
    def _timestamp(args: dict[str, Any], name: str, default: float) -> float:
        try:
            return float(args[name]) if args.get(name) else default
        except ValueError:
            raise SlackError(f"invalid_ts_{name}") from None

    async def _response_url(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self._lock:
            self.responses.append({"response_url": request.path, "at": time.monotonic(), **body})
        self._notify()
        return web.Response(text="ok")

    async def _file(self, request: web.Request) -> web.Response:
        """A file's private URL: its bytes, for the bot token with `files:read` only."""
        file_id = request.match_info["file"].partition("-")[2]
        status, body = self._file_answer(file_id, request.headers.get("Authorization", ""))
        with self._lock:
            self.downloads.append((file_id, status))
        self._notify()
        if status != 200:
            return web.Response(status=status, text=f"HTTP {status}")
        return web.Response(body=body, content_type="application/octet-stream")

    def _file_answer(self, file_id: str, auth: str) -> tuple[int, bytes]:
        with self._lock:
            data = self.files.get(file_id)
            broken = file_id in self.broken_downloads
        if auth != f"Bearer {BOT_TOKEN}":
            return 401, b""
        if self.scopes is not None and FILES_READ not in self.scopes:
            return 403, b""
        if data is None:
            return 404, b""
        if broken:
            return 500, b""
        return 200, data

    async def _permalink(self, request: web.Request) -> web.Response:
        channel = request.match_info["channel"]
        digits = request.match_info["digits"]
        with self._lock:
            for message in self.channels.get(channel, []):
                if message["ts"].replace(".", "") == digits:
                    return web.json_response(message)
        return web.Response(status=404, text="no such message")

    # ---- running it
    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/link/", self._link)
        app.router.add_post("/response/{token}", self._response_url)
        app.router.add_get("/archives/{channel}/p{digits}", self._permalink)
        app.router.add_get("/files-pri/{file}/download/{name}", self._file)
        app.router.add_get("/files-pri/{file}/{name}", self._file)
        return app

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/api/")

    def start(self, port: int = 0) -> FakeSlack:
        threading.Thread(target=self._serve, args=(port,), daemon=True).start()
        if not self._started.wait(10):
            raise RuntimeError("the fake Slack did not start")
        return self

    def _serve(self, port: int) -> None:
        loop = self.new_loop()
        self._loop = loop
        runner = web.AppRunner(self.app(), access_log=None)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
        loop.run_until_complete(site.start())
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{bound}/api/"
        self._started.set()
        loop.run_forever()
        loop.close()  # here, once stopped: not left to the garbage collector at exit

    def stop(self) -> None:
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self.disconnect_all(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._never.set)
            self._loop.call_soon_threadsafe(self._loop.stop)
