"""One answer from OpenAI chat completions: streamed, retried, and failures put in words."""

from __future__ import annotations

import asyncio
import itertools
import random
from dataclasses import dataclass
from typing import Any, Protocol, cast

import openai

from looper import metrics
from looper.context import Chat, ContextTooLarge, drop_older_half, fit
from looper.models import Usage
from looper.tokens import TokenCounter
from looper.windows import ContextWindows, Counted, Refusal, Window

MAX_RETRY_AFTER = 60.0
MAX_BACKOFF = 30.0
CONTEXT_ERROR_WORDS = ("context length", "context size", "context window", "too many tokens")


CUT_OFF_NOTE = "\n\n_(cut off: ask “continue” for the rest)_"


def counted_usage(model: str, chat: Chat, text: str) -> Usage:
    """What an answer took by the offline tokenizer's count, for servers that report none."""
    counter = TokenCounter(model)
    return Usage(counter.chat(chat), counter.text(text), counted=True)


@dataclass(frozen=True)
class Completion:
    """An answer, and why it stopped short when it did: `cut_off` is "length" when the
    token limit (`max_completion_tokens`, or the server's context) ended it. `usage` is
    what this last attempt took (the server's own report, or counted)."""

    text: str
    cut_off: str | None = None
    usage: Usage | None = None

    @property
    def delivered(self) -> str:
        """What the asker sees: the text, and a note when it is not all there. The note
        is not stored, so that the model reads its own words when asked to continue."""
        return self.text + CUT_OFF_NOTE if self.cut_off else self.text

    @property
    def marks(self) -> dict[str, str]:
        """Metadata to store with the answer."""
        return {"cut_off": self.cut_off} if self.cut_off else {}


class CompletionFailed(Exception):
    """No answer could be produced; the message is written for the person who asked."""


class DeltaTarget(Protocol):
    """Where streamed text goes while an answer is being written."""

    async def append(self, delta: str) -> None: ...

    async def restart(self) -> None:
        """Forget the text appended so far: the answer is being written again."""


STREAMS_PER_CLIENT = 50


def make_client(api_key: str, base_url: str | None, timeout: float) -> openai.AsyncOpenAI:
    # Retries are ours (below): they also cover streams dropped half-way, which the client
    # does not retry, and they end in a message for the asker rather than an exception.
    return openai.AsyncOpenAI(
        api_key=api_key, base_url=base_url or None, max_retries=0, timeout=timeout
    )


def make_clients(
    api_key: str, base_url: str | None, timeout: float, concurrency: int
) -> list[openai.AsyncOpenAI]:
    """One client per STREAMS_PER_CLIENT concurrent answers.

    The HTTP connection pool scans all of its connections for every request, which costs
    O(n^2) with hundreds of streams open at once; small shards keep that cost flat.
    """
    count = max(1, -(-concurrency // STREAMS_PER_CLIENT))
    return [make_client(api_key, base_url, timeout) for _ in range(count)]


def is_context_error(error: openai.BadRequestError) -> bool:
    body = error.body if isinstance(error.body, dict) else {}
    code, kind = body.get("code"), body.get("type")
    if code == "context_length_exceeded" or kind == "exceed_context_size_error":
        return True
    return any(words in str(error.message).lower() for words in CONTEXT_ERROR_WORDS)


def is_transient(error: Exception) -> bool:
    if isinstance(error, openai.RateLimitError):
        return error.code != "insufficient_quota"
    if isinstance(error, openai.APIStatusError):
        return error.status_code in (408, 409) or error.status_code >= 500
    return isinstance(error, openai.APIConnectionError)  # includes timeouts and dropped streams


def retry_after(error: Exception) -> float | None:
    """The server's own wait (`retry-after-ms` or `Retry-After` seconds), capped."""
    if not isinstance(error, openai.APIStatusError):
        return None
    headers = error.response.headers
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if not value:
            continue
        try:
            return min(float(value) * scale, MAX_RETRY_AFTER)
        except ValueError:
            continue  # an HTTP date: fall back to our own backoff
    return None


def explain(error: Exception, model: str) -> str:
    """One sentence for the asker about a failure that retrying will not fix."""
    if isinstance(error, openai.NotFoundError):
        return (
            f"The model `{model}` is retired or unknown at this OpenAI endpoint. "
            "Ask an admin to pick a current model (TUTOR_MODEL, or a thread's --model)."
        )
    if isinstance(error, openai.AuthenticationError):
        return "OpenAI rejected the API key (401). Ask an admin to check OPENAI_API_KEY."
    if isinstance(error, openai.PermissionDeniedError):
        return f"This OpenAI key may not use the model `{model}` (403)."
    if isinstance(error, openai.RateLimitError):
        return "The OpenAI account is out of quota. Ask an admin to check billing."
    if isinstance(error, openai.APIStatusError):
        return f"OpenAI refused the request ({error.status_code}): {error.message}"
    return f"OpenAI failed: {error}"


class Completer:
    """Streams one chat completion into a DeltaTarget, with retries and context trimming."""

    def __init__(
        self,
        clients: openai.AsyncOpenAI | list[openai.AsyncOpenAI],
        max_completion_tokens: int = 4096,
        attempts: int = 4,
        base_delay: float = 0.5,
        context_tokens: int = 0,
        windows: ContextWindows | None = None,
    ) -> None:
        self.clients = clients if isinstance(clients, list) else [clients]
        self._next_client = itertools.cycle(self.clients)
        self.max_completion_tokens = max_completion_tokens
        self.attempts = attempts
        self.base_delay = base_delay
        self.windows = windows or ContextWindows(context_tokens)

    @property
    def base_url(self) -> str:
        return str(self.clients[0].base_url)  # every client has the same

    async def close(self) -> None:
        for client in self.clients:
            await client.close()

    async def prompt_room(self, model: str) -> int:
        """How many tokens (of our count) a prompt to `model` may take."""
        window = await self.windows.window(model, self.clients[0])
        return window.prompt_budget(self.max_completion_tokens)

    async def complete(self, model: str, whole: Chat, target: DeltaTarget) -> Completion:
        counter = TokenCounter(model)
        window = await self.windows.window(model, self.clients[0])
        chat = self.fit(whole, window, counter)
        failures = 0
        while True:
            completion_tokens = window.completion_tokens(
                self.max_completion_tokens, counter.chat(chat)
            )
            try:
                return await self._stream(model, chat, target, completion_tokens)
            except openai.BadRequestError as exc:
                if not is_context_error(exc):
                    raise CompletionFailed(explain(exc, model)) from exc
                metrics.OPENAI_RETRIES.labels("context").inc()
                refusal = Refusal.of(exc)
                counted = Counted(counter.chat(chat), TokenCounter.formatting(chat))
                stated = self.windows.learn(model, self.base_url, window, refusal, counted)
                window = stated or window
                chat = self.shorter(whole, chat, window, counter, completion_tokens)
            except openai.APIError as exc:
                if not is_transient(exc):
                    raise CompletionFailed(explain(exc, model)) from exc
                failures += 1
                if failures >= self.attempts:
                    raise CompletionFailed(
                        f"OpenAI did not answer after {failures} tries ({describe(exc)}). "
                        "Your question is saved: retry in a moment."
                    ) from exc
                metrics.OPENAI_RETRIES.labels("transient").inc()
                await asyncio.sleep(self.backoff(failures, exc))
            await target.restart()

    def fit(self, chat: Chat, window: Window, counter: TokenCounter) -> Chat:
        try:
            return fit(chat, window.prompt_budget(self.max_completion_tokens), counter)
        except ContextTooLarge as exc:
            raise CompletionFailed(f"Your message is too long: {exc}.") from exc

    def shorter(
        self, whole: Chat, refused: Chat, window: Window, counter: TokenCounter, completion: int
    ) -> Chat:
        """The chat to try after a refusal for length: fitted to the window the server stated
        (from the whole chat), or half the history when that changes nothing."""
        refitted = self.fit(whole, window, counter)
        asks_less = window.completion_tokens(self.max_completion_tokens, counter.chat(refitted))
        fewer = len(refitted) < len(refused)
        if fewer or (len(refitted) == len(refused) and asks_less < completion):
            return refitted  # each try asks for less than the last, so this ends
        halved = drop_older_half(refused)
        if halved is None:
            raise CompletionFailed("Your message is too long for the model's context window.")
        return halved

    def backoff(self, failures: int, error: Exception) -> float:
        server_says = retry_after(error)
        if server_says is not None:
            return server_says
        delay = min(self.base_delay * 2 ** (failures - 1), MAX_BACKOFF)
        return float(delay * random.uniform(0.75, 1.25))

    async def _stream(
        self, model: str, chat: Chat, target: DeltaTarget, completion_tokens: int
    ) -> Completion:
        stream = await next(self._next_client).chat.completions.create(
            model=model,
            messages=cast(Any, chat),
            stream=True,
            max_completion_tokens=completion_tokens,
            stream_options={"include_usage": True},
        )
        parts: list[str] = []
        finish: str | None = None
        usage: Usage | None = None
        async with stream:
            async for chunk in stream:
                if chunk.usage:  # the last chunk, without choices
                    details = chunk.usage.prompt_tokens_details
                    cached = (details.cached_tokens or 0) if details else 0
                    usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens, cached)
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                finish = choice.finish_reason or finish
                if choice.delta.content:
                    parts.append(choice.delta.content)
                    await target.append(choice.delta.content)
        text = "".join(parts)
        if not text.strip():
            raise CompletionFailed(empty_answer(finish))
        usage = usage or counted_usage(model, chat, text)
        metrics.tokens_used(model, usage)
        return Completion(text, "length" if finish == "length" else None, usage)


def describe(error: Exception) -> str:
    if isinstance(error, openai.APIStatusError):
        return f"last error: HTTP {error.status_code}"
    if isinstance(error, openai.APITimeoutError):
        return "last error: timed out"
    return "last error: connection lost"


def empty_answer(finish: str | None) -> str:
    if finish == "length":
        return (
            "The model used its whole token budget without writing an answer. "
            "Ask an admin to raise TUTOR_MAX_COMPLETION_TOKENS."
        )
    return "The model returned an empty answer. Try rephrasing the question."
