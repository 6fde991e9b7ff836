"""An answer on its way into a Slack thread: one class per way of delivering it.

- `StreamReply`: a native stream (`chat.startStream`, text appended with `chat.appendStream`
  about once a second while the budget lasts, the rest and the metadata with
  `chat.stopStream`). When Slack ends a stream first (after a few minutes, or a reader
  stopped it), its text stays as a part of the answer and the rest continues in a new stream,
  or once streams keep ending, in posted replies.
- `StatusReply`: "is thinking…" shows under the thread; the finished answer is posted.
- `PlaceholderReply`: a placeholder reply, replaced with `chat.update` (progress at most about
  once a second while the Tier 3 budget lasts).

Each reply's `ref` (`stream:<ts>[,<ts>…]`, `post`, `update:<ts>`) is recorded by the looper
before any text is sent (and again by the reply when it moves to a new stream), so that a
restarted looper completes the same messages (see `SlackSink`). Answers longer than one
message continue in further replies, each marked with its part. A finished answer also
tidies up the error reply of an earlier failure of the thread (its Retry button goes).
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from slack_sdk.errors import SlackApiError

from bot.formatting import (
    ANSWERED,
    PART_LIMIT,
    answer_metadata,
    answered_blocks,
    error_blocks,
    error_metadata,
    error_text,
    feedback_blocks,
    final_part,
    markdown_safe,
    split_after_streamed,
    split_markdown,
)
from bot.persona import persona
from bot.places import TS, SlackThread, asked_by
from bot.web import SlackApi, slack_error
from looper.sinks import Job

log = logging.getLogger(__name__)
FLUSH_SECONDS = 1.0
# Errors saying a stream takes no more text: Slack ended it, a reader stopped it, it is gone.
STREAM_OVER = {"message_not_in_streaming_state", "stopped_by_user", "message_not_found"}
STREAMS_PER_ANSWER = 3  # after this many streams ended early, the rest is posted


class SlackReply(ABC):
    """What every way of delivering shares: the thread, the text so far, the parts after
    the first, the pacing of progress, and tidying up an earlier failure."""

    kind: ClassVar[str]

    def __init__(self, api: SlackApi, job: Job, place: SlackThread, ts: str | None = None) -> None:
        self.api = api
        self.job = job
        self.place = place
        self.ts = ts  # the answer's (first) message, once there is one
        self.written: list[str] = []  # the completion's pieces so far, as they came
        self.last_flush = time.monotonic()

    @property
    def ref(self) -> str:
        return f"{self.kind}:{self.ts}" if self.ts else self.kind

    @property
    def text(self) -> str:
        """What the completion has produced so far, made safe to post: escaped when it is
        shown (about once a second), not for each of the hundreds of pieces it came in."""
        return markdown_safe("".join(self.written))

    async def append(self, delta: str) -> None:
        self.written.append(delta)
        if time.monotonic() - self.last_flush >= FLUSH_SECONDS and await self._show_progress():
            self.last_flush = time.monotonic()

    async def _show_progress(self) -> bool:
        """Show the text so far if this way of delivering can; True when it did."""
        return False

    async def restart(self) -> None:
        self.written = []

    async def finish(self, text: str) -> dict[str, str]:
        delivered = await self._deliver(markdown_safe(text))
        await self._tidy_failure()
        return delivered

    @abstractmethod
    async def _deliver(self, text: str) -> dict[str, str]:
        """Show the whole answer; what to store with it."""

    @abstractmethod
    async def fail(self, error: str) -> str | None:
        """Show the failure with its Retry button; the ts of the message that shows it."""

    def _marks(self, part: int = 1) -> dict[str, Any]:
        return answer_metadata(self.job.thread.id, self.job.upto, part)

    def _content(self, text: str, part: int, last: bool) -> dict[str, Any]:
        """Part `part` of the answer; the last one carries the feedback buttons."""
        if last:
            shown = final_part(text, self.job.thread.id, self.job.upto)
            return {**shown, "metadata": self._marks(part)}
        return {"markdown_text": text, "metadata": self._marks(part)}

    def _failure(self, error: str) -> dict[str, Any]:
        """A failure's blocks and metadata: what it says and its Retry button."""
        return {
            "text": error_text(error),
            "blocks": error_blocks(error, self.job.thread.id),
            "metadata": error_metadata(self.job.thread.id, self.job.upto),
        }

    async def _tidy_failure(self) -> None:
        """The error reply of the thread's last failure loses its Retry button."""
        shown = self.job.thread.failure_ref
        if not shown:
            return
        try:
            await self._update(shown, text=ANSWERED, blocks=answered_blocks())
        except SlackApiError as exc:  # deleted, say: nothing left to tidy
            log.info("could not tidy the error reply %s: %s", shown, slack_error(exc))

    async def _post(self, **content: Any) -> str:
        posted = await self.api.call(
            "chat.postMessage",
            channel=self.place.channel,
            thread_ts=self.place.thread_ts,
            **persona(self.job.assistant),
            **content,
        )
        return str(posted["ts"])

    async def _update(self, ts: str, **content: Any) -> None:
        await self.api.call("chat.update", channel=self.place.channel, ts=ts, **content)

    async def _write_rest(
        self, parts: list[str], leftovers: list[str], first: int = 2
    ) -> list[str]:
        """Parts `first`… of the answer: in the messages an earlier attempt left
        (`leftovers`), else posted; leftovers this answer does not need are deleted. Returns
        the parts' ts."""
        written = []
        for number, part in enumerate(parts, start=first):
            content = self._content(part, number, last=number == first + len(parts) - 1)
            if leftovers:
                written.append(leftovers.pop(0))
                await self._update(written[-1], **content)
            else:
                written.append(await self._post(**content))
        for ts in leftovers:
            await self.api.call("chat.delete", channel=self.place.channel, ts=ts)
        return written


class StatusReply(SlackReply):
    """The status ("is thinking…") shows under the thread; the answer is posted whole."""

    kind = "post"

    @property
    def ref(self) -> str:
        return self.kind  # recorded before the post: a restart looks the answer up instead

    async def _deliver(self, text: str) -> dict[str, str]:
        written = await self._write_rest(split_markdown(text), [], first=1)
        return {TS: written[0]}

    async def fail(self, error: str) -> str | None:
        return await self._post(**self._failure(error))


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
        self.leftovers = leftovers or []  # further messages an earlier attempt left

    async def _show_progress(self) -> bool:
        shown = await self.api.call_if_budget(
            "chat.update",
            channel=self.place.channel,
            ts=self.ts,
            markdown_text=self.text[:PART_LIMIT] + " …",
        )
        return shown is not None

    async def _deliver(self, text: str) -> dict[str, str]:
        written = await self._write_rest(split_markdown(text), [str(self.ts), *self.leftovers], 1)
        return {TS: written[0]}

    async def fail(self, error: str) -> str | None:
        await self._update(str(self.ts), **self._failure(error))
        return self.ts


class StreamReply(SlackReply):
    """A native Slack stream: the text shows as it is written. When Slack ends the stream
    early, what it shows becomes part 1 (`earlier`) and the rest continues in a new one."""

    kind = "stream"

    def __init__(self, api: SlackApi, job: Job, place: SlackThread, ts: str) -> None:
        super().__init__(api, job, place, ts)
        self.earlier: list[str] = []  # parts shown by streams Slack ended, in order
        self.base = 0  # characters of `text` in those parts
        self.shown = 0  # characters of `text` after `base` shown by the current stream
        self.streams = 1
        self.stale = False  # the streamed text belongs to an abandoned attempt

    @property
    def ref(self) -> str:
        messages = [*self.earlier, *([self.ts] if self.ts else [])]
        return f"{self.kind}:{','.join(messages)}" if self.ts else "post"

    @property
    def part(self) -> int:
        """The part the current stream shows."""
        return len(self.earlier) + 1

    @classmethod
    async def start(cls, api: SlackApi, job: Job, place: SlackThread) -> StreamReply | None:
        """Begin a stream when the budget allows; None when it does not, or Slack refuses."""
        ts = await start_stream(api, job, place)
        return cls(api, job, place, ts) if ts else None

    async def _show_progress(self) -> bool:
        chunk = self.text[self.base + self.shown : self.base + PART_LIMIT]
        if self.stale or not chunk or not self.ts:
            return False
        try:
            done = await self.api.call_if_budget(
                "chat.appendStream", channel=self.place.channel, ts=self.ts, markdown_text=chunk
            )
        except SlackApiError as exc:
            if slack_error(exc) not in STREAM_OVER:
                raise
            await self._continue_elsewhere()
            return False
        if done is not None:
            self.shown += len(chunk)
        return done is not None

    async def _continue_elsewhere(self) -> None:
        """Slack ended the stream: keep what it shows as a part, go on in a new stream (or,
        once streams keep ending, in posted replies), and record where before any text."""
        ended, shown = str(self.ts), self.text[self.base : self.base + self.shown]
        self.ts, self.shown = None, 0
        if shown and await self._settle_ended(ended, self._content(shown, self.part, False)):
            self.earlier.append(ended)
            self.base += len(shown)
        elif not shown:  # an empty ended stream would stay a broken message
            await delete_quietly(self.api, self.place.channel, ended)
        if self.streams < STREAMS_PER_ANSWER:
            self.ts = await start_stream(self.api, self.job, self.place)
            self.streams += 1
        log.info("a stream of %s ended early; going on in %s", self.job.thread.id, self.ref)
        await self.job.reserve(self.ref)

    async def _settle_ended(self, ts: str, content: dict[str, Any]) -> bool:
        """Give an ended stream its text and part marks; False when it is gone."""
        try:
            await self._update(ts, **content)
        except SlackApiError as exc:
            if slack_error(exc) != "message_not_found":
                raise
            return False
        return True

    async def restart(self) -> None:
        await super().restart()
        self.stale = self.stale or self.shown > 0 or bool(self.earlier)  # shown text is wrong

    async def _deliver(self, text: str) -> dict[str, str]:
        if self.stale:  # stop the stream as it is, then replace what all streams showed
            return await self._replace_all(text)
        parts = split_after_streamed(text[self.base :], self.shown)
        if self.ts:
            await self._end_stream(parts.pop(0), last=not parts)
        messages = [*self.earlier, *([self.ts] if self.ts else [])]
        written = await self._write_rest(parts, [], first=len(messages) + 1)
        return {TS: [*messages, *written][0]}

    async def _end_stream(self, part: str, last: bool) -> None:
        """Stop the stream with the rest of its part and its marks (and when it is the
        answer's last part, the feedback buttons); if Slack ended it meanwhile, give it the
        whole part (posted anew if it is gone)."""
        rest = part[self.shown :]
        buttons = feedback_blocks(self.job.thread.id, self.job.upto) if last else None
        try:
            await self._stop(
                markdown_text=rest or None, metadata=self._marks(self.part), blocks=buttons
            )
        except SlackApiError as exc:
            if slack_error(exc) not in STREAM_OVER:
                raise
            content = self._content(part, self.part, last)
            if not await self._settle_ended(str(self.ts), content):
                self.ts = await self._post(**content)

    async def _replace_all(self, text: str) -> dict[str, str]:
        if self.ts:
            await stop_stream(self.api, self.place.channel, self.ts, prepaid=True)
        messages = [*self.earlier, *([self.ts] if self.ts else [])]
        if not messages:
            return await StatusReply(self.api, self.job, self.place)._deliver(text)
        replacing = PlaceholderReply(self.api, self.job, self.place, messages[0], messages[1:])
        return await replacing._deliver(text)

    async def fail(self, error: str) -> str | None:
        if not self.ts:
            return await self._post(**self._failure(error))
        try:
            await self._stop(**{k: v for k, v in self._failure(error).items() if k != "text"})
        except SlackApiError as exc:
            if slack_error(exc) not in STREAM_OVER:
                raise
            await self._update(self.ts, **self._failure(error))
        return self.ts

    async def _stop(self, **content: Any) -> None:
        # Paid for at the start, so that a stream can always be stopped.
        await self.api.call(
            "chat.stopStream", prepaid=True, channel=self.place.channel, ts=self.ts, **content
        )


async def start_stream(api: SlackApi, job: Job, place: SlackThread) -> str | None:
    """Begin a stream when the budget allows starting and stopping it (a stream that cannot
    be stopped would hang in Slack); its ts, or None when it does not, or Slack refuses."""
    asker = asked_by(job.question)
    try:
        started = await api.call_if_budget(
            "chat.startStream",
            also=("chat.stopStream",),
            channel=place.channel,
            thread_ts=place.thread_ts,
            recipient_user_id=asker or None,
            recipient_team_id=place.team or None,
            **persona(job.assistant),
        )
    except SlackApiError as exc:
        log.info("streaming refused in %s (%s); posting whole", place.channel, slack_error(exc))
        return None
    return str(started["ts"]) if started is not None else None


async def delete_quietly(api: SlackApi, channel: str, ts: str) -> None:
    """Delete one of our messages; one already gone is fine."""
    try:
        await api.call("chat.delete", channel=channel, ts=ts)
    except SlackApiError as exc:
        if slack_error(exc) != "message_not_found":
            raise


async def stop_stream(api: SlackApi, channel: str, ts: str, prepaid: bool = False) -> None:
    """Stop a stream, whatever it shows; one that Slack already ended is fine too."""
    try:
        await api.call("chat.stopStream", prepaid=prepaid, channel=channel, ts=ts)
    except SlackApiError as exc:
        if slack_error(exc) not in STREAM_OVER:
            raise
