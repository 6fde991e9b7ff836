"""The Slack sink: places new conversations, picks how each answer is delivered, and resumes
interrupted ones.

A thread asked for with /tutor is stored before its root message exists; `place` posts that
root (see `RootPoster`). A new answer is streamed when the Tier 2 budget allows starting and
stopping a stream; otherwise "is thinking…" shows and the answer is posted whole; where Slack
refuses the status, a placeholder reply is posted at once and replaced. A looper that
restarts after a crash resumes: it gathers the messages the interrupted attempt left in the
thread (those its ref names, those marked as parts of this answer, and any of the bot's
unmarked messages: a placeholder or a stream not yet recorded), stops any stream among them
and writes the new answer into them, so the thread never shows a second answer.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from bot.formatting import answers_of
from bot.persona import persona
from bot.places import ChannelRequest, SlackThread, status_shown
from bot.replies import PlaceholderReply, SlackReply, StatusReply, StreamReply, stop_stream
from bot.roots import RootPoster
from bot.status import show_thinking
from bot.web import SlackApi
from looper.models import utcnow
from looper.sinks import ConsoleSink, Job, Placed, Reply, Sink

STATUS_STILL_SHOWN = timedelta(seconds=60)  # Slack clears a status after two minutes


class SlackSink:
    """The looper's sink for threads that live in Slack; other threads (asked with the
    `tutor` CLI on the same store) go to `elsewhere`, the console by default."""

    def __init__(self, api: SlackApi, elsewhere: Sink | None = None) -> None:
        self.api = api
        self.elsewhere = elsewhere or ConsoleSink()
        self.roots = RootPoster(api)

    async def place(self, job: Job) -> Placed:
        request = ChannelRequest.of(job.thread)
        if request is None:
            return await self.elsewhere.place(job)
        placed = await self.roots.place(job, request)
        place = SlackThread.from_metadata(placed.metadata)
        if (
            place
            and job.thread.pending
            and await show_thinking(self.api, place.channel, place.thread_ts)
        ):
            return replace(placed, sign_shown=True)  # the first sign of work, at once
        return placed

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
        if shown or job.sign_shown or await show_thinking(self.api, place.channel, place.thread_ts):
            return StatusReply(self.api, job, place)
        placeholder = await self.api.call(
            "chat.postMessage",
            channel=place.channel,
            thread_ts=place.thread_ts,
            text="_Thinking…_",
            **persona(job.assistant),
        )
        return PlaceholderReply(self.api, job, place, str(placeholder["ts"]))

    async def _resume(self, job: Job, place: SlackThread, ref: str) -> SlackReply:
        kind, _, named = ref.partition(":")
        listed = [ts for ts in named.split(",") if ts]
        if kind == PlaceholderReply.kind and listed:
            return PlaceholderReply(self.api, job, place, listed[0])
        unmarked, marked = await self._left_in_thread(job, place, job.thread.reply_upto or job.upto)
        for ts in sorted({*listed, *unmarked}, key=float):
            await stop_stream(self.api, place.channel, ts)
        left = sorted({*listed, *unmarked, *marked}, key=float)
        if left:
            return PlaceholderReply(self.api, job, place, left[0], leftovers=left[1:])
        return await self._show_working(job, place)

    async def _left_in_thread(
        self, job: Job, place: SlackThread, upto: int
    ) -> tuple[list[str], list[str]]:
        """ts of the bot's unmarked replies in the thread, and of the parts of an answer to
        `upto` already there."""
        me = await self.api.bot_user()
        unmarked: list[str] = []
        marked: list[str] = []
        async for message in self.api.replies(
            place.channel, place.thread_ts, include_all_metadata=True
        ):
            if message["ts"] == place.thread_ts or message.get("user") != me:
                continue
            mark = answers_of(message)
            if mark and mark[:2] == (job.thread.id, str(upto)):
                marked.append(message["ts"])
            elif not has_metadata(message):
                unmarked.append(message["ts"])
        return unmarked, marked


def has_metadata(message: dict[str, Any]) -> bool:
    return bool((message.get("metadata") or {}).get("event_type"))
