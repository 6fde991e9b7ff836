"""An answer on its way into a Slack thread: one class per way of delivering it.

- `StreamReply`: a native stream (`chat.startStream`, text appended with `chat.appendStream`
  about once a second while the budget lasts, the rest and the metadata with
  `chat.stopStream`).
- `StatusReply`: "is thinking…" shows under the thread; the finished answer is posted.
- `PlaceholderReply`: a placeholder reply, replaced with `chat.update` (progress at most about
  once a second while the Tier 3 budget lasts).

Each reply's `ref` (`stream:<ts>`, `post`, `update:<ts>`) is recorded by the looper before any
text is sent, so that a restarted looper completes the same message (see `SlackSink`).
Answers longer than one message continue in further replies, each marked with its part.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from slack_sdk.errors import SlackApiError

from bot.formatting import (
    PART_LIMIT,
    answer_metadata,
    error_blocks,
    error_metadata,
    error_text,
    split_after_streamed,
    split_markdown,
)
from bot.places import TS, SlackThread, asked_by
from bot.web import SlackApi, slack_error
from looper.sinks import Job

log = logging.getLogger(__name__)
FLUSH_SECONDS = 1.0


class SlackReply(ABC):
    """What every way of delivering shares: the thread, the text so far, the parts after
    the first, and the pacing of progress."""

    kind: ClassVar[str]

    def __init__(self, api: SlackApi, job: Job, place: SlackThread, ts: str | None = None) -> None:
        self.api = api
        self.job = job
        self.place = place
        self.ts = ts  # the answer's (first) message, once there is one
        self.text = ""  # what the completion has produced so far
        self.last_flush = time.monotonic()

    @property
    def ref(self) -> str:
        return f"{self.kind}:{self.ts}" if self.ts else self.kind

    async def append(self, delta: str) -> None:
        self.text += delta
        if time.monotonic() - self.last_flush >= FLUSH_SECONDS and await self._show_progress():
            self.last_flush = time.monotonic()

    async def _show_progress(self) -> bool:
        """Show the text so far if this way of delivering can; True when it did."""
        return False

    async def restart(self) -> None:
        self.text = ""

    @abstractmethod
    async def finish(self, text: str) -> dict[str, str]: ...

    @abstractmethod
    async def fail(self, error: str) -> None: ...

    def _marks(self, part: int = 1) -> dict[str, Any]:
        return answer_metadata(self.job.thread.id, self.job.upto, part)

    def _failure(self, error: str) -> dict[str, Any]:
        """A failure's blocks and metadata: what it says and its Retry button."""
        return {
            "blocks": error_blocks(error, self.job.thread.id),
            "metadata": error_metadata(self.job.thread.id, self.job.upto),
        }

    async def _post(self, **content: Any) -> str:
        posted = await self.api.call(
            "chat.postMessage",
            channel=self.place.channel,
            thread_ts=self.place.thread_ts,
            **content,
        )
        return str(posted["ts"])

    async def _update(self, ts: str, **content: Any) -> None:
        await self.api.call("chat.update", channel=self.place.channel, ts=ts, **content)

    @property
    def delivered(self) -> dict[str, str]:
        """What to store with the answer: its (first) message's ts."""
        return {TS: str(self.ts)}

    async def _write_rest(self, parts: list[str], leftovers: list[str]) -> None:
        """Parts 2… of the answer: in the messages an earlier attempt left (`leftovers`),
        else posted; leftovers this answer does not need are deleted."""
        for number, part in enumerate(parts, start=2):
            if leftovers:
                await self._update(
                    leftovers.pop(0), markdown_text=part, metadata=self._marks(number)
                )
            else:
                await self._post(markdown_text=part, metadata=self._marks(number))
        for ts in leftovers:
            await self.api.call("chat.delete", channel=self.place.channel, ts=ts)


class StatusReply(SlackReply):
    """The status ("is thinking…") shows under the thread; the answer is posted whole."""

    kind = "post"

    @property
    def ref(self) -> str:
        return self.kind  # recorded before the post: a restart looks the answer up instead

    async def finish(self, text: str) -> dict[str, str]:
        parts = split_markdown(text)
        self.ts = await self._post(markdown_text=parts[0], metadata=self._marks())
        await self._write_rest(parts[1:], [])
        return self.delivered

    async def fail(self, error: str) -> None:
        await self._post(text=error_text(error), **self._failure(error))


class PlaceholderReply(SlackReply):
    """A message already in the thread (a placeholder, a stopped stream, an earlier
    attempt's answer) that the answer replaces."""

    kind = "update"

    def __init__(
        self,
        api: SlackApi,
        job: Job,
        place: SlackThread,
        ts: str,
        leftovers: list[str] | None = None,
    ) -> None:
        super().__init__(api, job, place, ts)
        self.leftovers = leftovers or []  # further parts an earlier attempt posted

    async def _show_progress(self) -> bool:
        shown = await self.api.call_if_budget(
            "chat.update",
            channel=self.place.channel,
            ts=self.ts,
            markdown_text=self.text[:PART_LIMIT] + " …",
        )
        return shown is not None

    async def finish(self, text: str) -> dict[str, str]:
        parts = split_markdown(text)
        await self._update(str(self.ts), markdown_text=parts[0], metadata=self._marks())
        await self._write_rest(parts[1:], self.leftovers)
        return self.delivered

    async def fail(self, error: str) -> None:
        await self._update(str(self.ts), text=error_text(error), **self._failure(error))


class StreamReply(SlackReply):
    """A native Slack stream: the text shows as it is written."""

    kind = "stream"

    def __init__(self, api: SlackApi, job: Job, place: SlackThread, ts: str) -> None:
        super().__init__(api, job, place, ts)
        self.shown = 0  # characters of `text` already streamed
        self.stale = False  # the streamed text belongs to an abandoned attempt

    @classmethod
    async def start(cls, api: SlackApi, job: Job, place: SlackThread) -> StreamReply | None:
        """Begin a stream when the budget allows starting and stopping it (a stream that
        cannot be stopped would hang in Slack); None when it does not, or Slack refuses."""
        asker = asked_by(job.question)
        try:
            started = await api.call_if_budget(
                "chat.startStream",
                also=("chat.stopStream",),
                channel=place.channel,
                thread_ts=place.thread_ts,
                recipient_user_id=asker or None,
                recipient_team_id=place.team or None,
            )
        except SlackApiError as exc:
            log.info("streaming refused in %s (%s); posting whole", place.channel, slack_error(exc))
            return None
        return cls(api, job, place, str(started["ts"])) if started is not None else None

    async def _show_progress(self) -> bool:
        chunk = self.text[self.shown : PART_LIMIT]
        if self.stale or not chunk:
            return False
        done = await self.api.call_if_budget(
            "chat.appendStream", channel=self.place.channel, ts=self.ts, markdown_text=chunk
        )
        if done is not None:
            self.shown += len(chunk)
        return done is not None

    async def restart(self) -> None:
        await super().restart()
        self.stale = self.stale or self.shown > 0  # the streamed text is wrong now

    async def finish(self, text: str) -> dict[str, str]:
        if self.stale:  # stop the stream as it is, then replace its text
            await stop_stream(self.api, self.place.channel, str(self.ts), prepaid=True)
            return await PlaceholderReply(self.api, self.job, self.place, str(self.ts)).finish(text)
        parts = split_after_streamed(text, self.shown)
        rest = parts[0][self.shown :]
        await self._stop(markdown_text=rest or None, metadata=self._marks())
        await self._write_rest(parts[1:], [])
        return self.delivered

    async def fail(self, error: str) -> None:
        await self._stop(**self._failure(error))

    async def _stop(self, **content: Any) -> None:
        # Paid for at the start, so that a stream can always be stopped.
        await self.api.call(
            "chat.stopStream", prepaid=True, channel=self.place.channel, ts=self.ts, **content
        )


async def stop_stream(api: SlackApi, channel: str, ts: str, prepaid: bool = False) -> None:
    """Stop a stream, whatever it shows; one that Slack already ended is fine too."""
    try:
        await api.call("chat.stopStream", prepaid=prepaid, channel=channel, ts=ts)
    except SlackApiError as exc:
        if slack_error(exc) != "message_not_in_streaming_state":
            raise
