"""The Slack sink: delivers the looper's answers as threaded replies, exactly once.

How an answer reaches Slack depends on the budget Slack's rate limits leave:
- stream: `chat.startStream` at once (the streaming message is the sign of work), text
  appended with `chat.appendStream` about once a second while the budget lasts, the rest and
  the metadata with `chat.stopStream`. Start and stop are Tier 2 (about 20 a minute each), so
  a stream is only begun when both fit.
- post: `assistant.threads.setStatus` shows "is thinking…" at once; the finished answer is
  posted with `chat.postMessage` (per-channel limit only).
- update: where the status is refused, a placeholder reply is posted at once and replaced
  with `chat.update` (progress at most about once a second while the Tier 3 budget lasts).

The reply's `ref` (`stream:<ts>`, `update:<ts>` or `post`) is recorded by the looper before
any text is sent. A looper that restarts after a crash resumes that ref: it finishes or
replaces the same message, and for `post` it first looks for an answer already posted
(by its metadata), so the thread never shows a second answer.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.formatting import (
    PART_LIMIT,
    answer_metadata,
    answers_of,
    error_blocks,
    error_metadata,
    split_after_streamed,
    split_markdown,
)
from bot.status import SHOWN, show_thinking
from bot.web import SlackApi, slack_error
from looper.models import utcnow
from looper.sinks import ConsoleSink, Job, Reply, Sink

log = logging.getLogger(__name__)
FLUSH_SECONDS = 1.0
STATUS_STILL_SHOWN = timedelta(seconds=60)  # Slack clears a status after two minutes


class SlackReply:
    """One answer on its way into a Slack thread."""

    def __init__(self, api: SlackApi, job: Job) -> None:
        self.api = api
        self.job = job
        meta = job.thread.metadata
        self.channel = meta["slack_channel"]
        self.thread_ts = meta["slack_thread_ts"]
        self.team = meta.get("slack_team", "")
        question = next(m for m in reversed(job.messages) if m.role == "user")
        self.asker = question.metadata.get("slack_user", "")
        fresh = utcnow() - question.created_at < STATUS_STILL_SHOWN
        self.status_shown = question.metadata.get(SHOWN) == "shown" and fresh
        self.mode = "post"
        self.ts: str | None = None
        self.leftovers: list[str] = []  # ts of extra parts of an earlier attempt
        self.text = ""  # what the completion has produced so far
        self.shown = 0  # characters of `text` already visible in Slack
        self.stale = False  # the visible text belongs to an abandoned attempt
        self.last_flush = time.monotonic()

    @property
    def ref(self) -> str:
        return f"{self.mode}:{self.ts}" if self.ts else self.mode

    # reserve
    async def begin(self) -> None:
        resumed = self.job.resumed_ref
        if resumed:
            await self._resume(resumed, self.job.thread.reply_upto or self.job.upto)
        elif not await self._start_stream():
            await self._show_working()

    async def _start_stream(self) -> bool:
        try:
            started = await self.api.call_if_budget(
                "chat.startStream",
                also=("chat.stopStream",),  # a stream we cannot stop would hang in Slack
                channel=self.channel,
                thread_ts=self.thread_ts,
                recipient_user_id=self.asker or None,
                recipient_team_id=self.team or None,
            )
        except SlackApiError as exc:
            log.info("streaming refused in %s (%s); posting whole", self.channel, slack_error(exc))
            return False
        if started is None:
            return False
        self.mode, self.ts = "stream", str(started["ts"])
        return True

    async def _show_working(self) -> None:
        self.mode = "post"
        if self.status_shown or await show_thinking(self.api, self.channel, self.thread_ts):
            return
        placeholder = await self.api.call(
            "chat.postMessage", channel=self.channel, thread_ts=self.thread_ts, text="_Thinking…_"
        )
        self.mode, self.ts = "update", str(placeholder["ts"])

    async def _resume(self, ref: str, upto: int) -> None:
        mode, _, ts = ref.partition(":")
        if mode == "stream":
            await self._stop_stream_quietly(ts)
        if ts:
            self.mode, self.ts = "update", ts
            return
        found = await self._answers_posted(upto)
        if found:
            self.mode, self.ts, self.leftovers = "update", found[0], found[1:]
        else:
            await self._show_working()

    async def _stop_stream_quietly(self, ts: str, prepaid: bool = False) -> None:
        try:
            await self.api.call("chat.stopStream", prepaid=prepaid, channel=self.channel, ts=ts)
        except SlackApiError as exc:
            if slack_error(exc) != "message_not_in_streaming_state":
                raise

    async def _answers_posted(self, upto: int) -> list[str]:
        """ts of the parts of an answer to `upto` already in the thread, in order."""
        found: list[tuple[int, str]] = []
        cursor = None
        while True:
            page = await self.api.call(
                "conversations.replies",
                channel=self.channel,
                ts=self.thread_ts,
                include_all_metadata=True,
                limit=200,
                cursor=cursor,
            )
            messages: list[dict[str, Any]] = page.get("messages", [])
            for message in messages:
                mark = answers_of(message)
                if mark and mark[:2] == (self.job.thread.id, str(upto)):
                    found.append((mark[2], message["ts"]))
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return [ts for _, ts in sorted(found)]

    # deliver
    async def append(self, delta: str) -> None:
        self.text += delta
        if time.monotonic() - self.last_flush < FLUSH_SECONDS or self.stale:
            return
        if self.mode == "stream":
            await self._append_stream()
        elif self.mode == "update":
            await self._show_progress()

    async def _append_stream(self) -> None:
        chunk = self.text[self.shown : PART_LIMIT]
        if not chunk:
            return
        done = await self.api.call_if_budget(
            "chat.appendStream", channel=self.channel, ts=self.ts, markdown_text=chunk
        )
        if done is not None:
            self.shown += len(chunk)
            self.last_flush = time.monotonic()

    async def _show_progress(self) -> None:
        done = await self.api.call_if_budget(
            "chat.update",
            channel=self.channel,
            ts=self.ts,
            markdown_text=self.text[:PART_LIMIT] + " …",
        )
        if done is not None:
            self.last_flush = time.monotonic()

    async def restart(self) -> None:
        self.text = ""
        if self.mode == "stream" and self.shown:
            self.stale = True  # the streamed text is wrong now: replace it at the end

    async def finish(self, text: str) -> dict[str, str]:
        if self.mode == "stream" and not self.stale:
            parts = split_after_streamed(text, self.shown)
            await self._stop_stream(parts[0][self.shown :], answer_metadata(*self._answering()))
        else:
            parts = split_markdown(text)
            if self.mode == "stream":
                await self._stop_stream_quietly(str(self.ts), prepaid=True)  # paid at start
                self.mode = "update"
            await self._write_first(parts[0])
        await self._write_rest(parts[1:])
        return {"slack_ts": str(self.ts)}

    def _answering(self, part: int = 1) -> tuple[str, int, int]:
        return self.job.thread.id, self.job.upto, part

    async def _stop_stream(self, markdown: str, metadata: dict[str, Any]) -> None:
        await self.api.call(
            "chat.stopStream",
            prepaid=True,
            channel=self.channel,
            ts=self.ts,
            markdown_text=markdown or None,
            metadata=metadata,
        )

    async def _write_first(self, part: str) -> None:
        metadata = answer_metadata(*self._answering())
        if self.mode == "update":
            await self.api.call(
                "chat.update",
                channel=self.channel,
                ts=self.ts,
                markdown_text=part,
                metadata=metadata,
            )
        else:
            posted = await self._post(part, metadata)
            self.ts = str(posted["ts"])

    async def _write_rest(self, parts: list[str]) -> None:
        for number, part in enumerate(parts, start=2):
            metadata = answer_metadata(*self._answering(number))
            if self.leftovers:
                await self.api.call(
                    "chat.update",
                    channel=self.channel,
                    ts=self.leftovers.pop(0),
                    markdown_text=part,
                    metadata=metadata,
                )
            else:
                await self._post(part, metadata)
        for ts in self.leftovers:  # an earlier attempt had more parts than this answer
            await self.api.call("chat.delete", channel=self.channel, ts=ts)

    async def _post(self, markdown: str, metadata: dict[str, Any]) -> Any:
        return await self.api.call(
            "chat.postMessage",
            channel=self.channel,
            thread_ts=self.thread_ts,
            markdown_text=markdown,
            metadata=metadata,
        )

    async def fail(self, error: str) -> None:
        thread_id = self.job.thread.id
        blocks = error_blocks(error, thread_id)
        metadata = error_metadata(thread_id, self.job.upto)
        text = f"Sorry, no answer this time: {error}"
        if self.mode == "stream":
            await self.api.call(
                "chat.stopStream",
                prepaid=True,
                channel=self.channel,
                ts=self.ts,
                blocks=blocks,
                metadata=metadata,
            )
        elif self.mode == "update":
            await self.api.call(
                "chat.update",
                channel=self.channel,
                ts=self.ts,
                text=text,
                blocks=blocks,
                metadata=metadata,
            )
        else:
            await self.api.call(
                "chat.postMessage",
                channel=self.channel,
                thread_ts=self.thread_ts,
                text=text,
                blocks=blocks,
                metadata=metadata,
            )


class SlackSink:
    """The looper's sink for threads that live in Slack; other threads (asked with the
    `tutor` CLI on the same store) go to `elsewhere`, the console by default."""

    def __init__(self, api: SlackApi, elsewhere: Sink | None = None) -> None:
        self.api = api
        self.elsewhere = elsewhere or ConsoleSink()

    async def open(self, job: Job) -> Reply:
        if "slack_channel" not in job.thread.metadata:
            return await self.elsewhere.open(job)
        reply = SlackReply(self.api, job)
        await reply.begin()
        return reply
