"""Where answers go: the sink interface, and the console sink of `tutor looper`.

An answer is delivered in three steps so that a sink posting elsewhere can be exactly-once:
`Sink.open` reserves a place for the answer (its `ref`, recorded in the store before any text
is sent), the `Reply` receives the streamed text and the final text, and only then does the
looper commit the answer together with the thread's high-water mark. A looper that restarts
after a crash opens the same `ref` again and completes or replaces it. A reply whose place
changes while it delivers (a stream its front end ended early, say) records its new `ref` with
`Job.reserve` before it sends text there.

A thread stored before it had a place (`awaiting_place`) is placed first, the same way:
the looper reserves `PLACING`, `Sink.place` puts it somewhere (finding the place an earlier
attempt made when the reservation was already there) and the looper commits the place.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from looper.models import BaseAssistant, ChatCompletionThread, Message

PLACING = "placing"  # the reservation of a thread being placed


class PlaceRefused(Exception):
    """The sink cannot place the thread anywhere (it has told the asker why)."""


@dataclass(frozen=True)
class Placed:
    """Where a sink placed a thread: its new metadata and external key; `sign_shown` when
    the sink showed a sign of work there as it placed it."""

    metadata: dict[str, str]
    external_key: str | None
    sign_shown: bool = False

    @classmethod
    def where_it_is(cls, thread: ChatCompletionThread) -> Placed:
        """For a thread whose sink needs no place made (the console)."""
        return cls(thread.metadata, thread.external_key)


async def _keep_nothing(ref: str | None) -> None:
    pass


@dataclass
class Job:
    """One answer to write: the thread, its persona, its messages, up to user message `upto`;
    `reserve` records a new `ref` for it (see `Reply.ref`); `sign_shown` when the sink
    showed a sign of work as it placed the thread just now."""

    thread: ChatCompletionThread
    assistant: BaseAssistant
    messages: list[Message]
    upto: int
    reserve: Callable[[str | None], Awaitable[None]] = field(default=_keep_nothing)
    sign_shown: bool = False

    @property
    def question(self) -> Message:
        """The newest user message: the one the answer is for."""
        return next(m for m in reversed(self.messages) if m.role == "user")

    @property
    def resumed_ref(self) -> str | None:
        """Where an earlier, interrupted attempt was delivering this thread's answer."""
        return self.thread.reply_ref


class Reply(Protocol):
    """One answer on its way to a sink."""

    @property
    def ref(self) -> str | None:
        """Where the answer is being delivered; recorded before any text is sent."""

    async def append(self, delta: str) -> None: ...

    async def restart(self) -> None:
        """Discard the text appended so far (the completion is being retried)."""

    async def finish(self, text: str) -> dict[str, str]:
        """Deliver the whole answer; return metadata to store with it (e.g. where it was posted)."""

    async def fail(self, error: str) -> str | None:
        """Tell the asker that no answer is coming, and why; return where that shows, so
        that it can be tidied up once the question is answered."""


class Sink(Protocol):
    async def open(self, job: Job) -> Reply:
        """Reserve the answer's place (reusing `job.resumed_ref` when there is one)."""

    async def place(self, job: Job) -> Placed:
        """Put a thread `awaiting_place` somewhere; when `job.resumed_ref` is `PLACING`, an
        earlier attempt may have done it already. Raises PlaceRefused."""


class ConsoleReply:
    """Prints the finished answer whole, so that concurrent answers never interleave."""

    def __init__(self, job: Job, out: TextIO, err: TextIO) -> None:
        self.ref: str | None = None
        self.job = job
        self.out = out
        self.err = err

    async def append(self, delta: str) -> None:
        pass

    async def restart(self) -> None:
        pass

    async def finish(self, text: str) -> dict[str, str]:
        print(f"[{self.job.thread.id}] assistant: {text}", file=self.out, flush=True)
        return {}

    async def fail(self, error: str) -> str | None:
        print(f"[{self.job.thread.id}] error: {error}", file=self.err, flush=True)
        return None


class ConsoleSink:
    """Prints each completion, as the seed's looper did."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    async def open(self, job: Job) -> ConsoleReply:
        return ConsoleReply(job, self.out, self.err)

    async def place(self, job: Job) -> Placed:
        return Placed.where_it_is(job.thread)
