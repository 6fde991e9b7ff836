"""The Slack sink: picks how each answer is delivered, and resumes interrupted ones.

A new answer is streamed when the Tier 2 budget allows starting and stopping a stream;
otherwise "is thinking…" shows and the answer is posted whole; where Slack refuses the
status, a placeholder reply is posted at once and replaced. A looper that restarts after a
crash resumes the recorded ref: it stops a stream it had begun and replaces that same
message, completes a placeholder, and for `post` first looks for an answer already posted
(by its metadata), so the thread never shows a second answer.
"""

from __future__ import annotations

from datetime import timedelta

from bot.formatting import answers_of
from bot.places import SlackThread, status_shown
from bot.replies import PlaceholderReply, SlackReply, StatusReply, StreamReply, stop_stream
from bot.status import show_thinking
from bot.web import SlackApi
from looper.models import utcnow
from looper.sinks import ConsoleSink, Job, Reply, Sink

STATUS_STILL_SHOWN = timedelta(seconds=60)  # Slack clears a status after two minutes


class SlackSink:
    """The looper's sink for threads that live in Slack; other threads (asked with the
    `tutor` CLI on the same store) go to `elsewhere`, the console by default."""

    def __init__(self, api: SlackApi, elsewhere: Sink | None = None) -> None:
        self.api = api
        self.elsewhere = elsewhere or ConsoleSink()

    async def open(self, job: Job) -> Reply:
        place = SlackThread.of(job.thread)
        if place is None:
            return await self.elsewhere.open(job)
        if job.resumed_ref:
            return await self._resume(job, place, job.resumed_ref)
        return await StreamReply.start(self.api, job, place) or await self._show_working(job, place)

    async def _show_working(self, job: Job, place: SlackThread) -> SlackReply:
        """The status under the thread, or where Slack refuses it, a placeholder reply."""
        question = job.question
        shown = status_shown(question) and utcnow() - question.created_at < STATUS_STILL_SHOWN
        if shown or await show_thinking(self.api, place.channel, place.thread_ts):
            return StatusReply(self.api, job, place)
        placeholder = await self.api.call(
            "chat.postMessage", channel=place.channel, thread_ts=place.thread_ts, text="_Thinking…_"
        )
        return PlaceholderReply(self.api, job, place, str(placeholder["ts"]))

    async def _resume(self, job: Job, place: SlackThread, ref: str) -> SlackReply:
        kind, _, ts = ref.partition(":")
        if kind == StreamReply.kind:
            await stop_stream(self.api, place.channel, ts)
        if ts:
            return PlaceholderReply(self.api, job, place, ts)
        posted = await self._answers_posted(job, place, job.thread.reply_upto or job.upto)
        if posted:
            return PlaceholderReply(self.api, job, place, posted[0], leftovers=posted[1:])
        return await self._show_working(job, place)

    async def _answers_posted(self, job: Job, place: SlackThread, upto: int) -> list[str]:
        """ts of the parts of an answer to `upto` already in the thread, in order."""
        found: list[tuple[int, str]] = []
        async for message in self.api.replies(
            place.channel, place.thread_ts, include_all_metadata=True
        ):
            mark = answers_of(message)
            if mark and mark[:2] == (job.thread.id, str(upto)):
                found.append((mark[2], message["ts"]))
        return [ts for _, ts in sorted(found)]
