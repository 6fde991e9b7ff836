"""One answer from OpenAI chat completions: streamed, retried, and failures put in words."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any, Protocol

import openai
from openai._httpx2 import request_exceptions, timeout_exceptions

from looper import metrics
from looper.context import Chat, ContextTooLarge, drop_older_half, fit, has_images, without_images
from looper.models import Usage
from looper.sse import EventDecoder
from looper.tokens import TokenCounter
from looper.urgency import Urgency
from looper.windows import ContextWindows, Counted, Refusal, Window

MAX_RETRY_AFTER = 60.0
MAX_BACKOFF = 30.0
DRAIN_SECONDS = 0.1
CONTEXT_ERROR_WORDS = ("context length", "context size", "context window", "too many tokens")
# How servers refuse image input: OpenAI's models without vision (400, "Invalid content type.
# image_url is only supported by certain models."), llama.cpp without a multimodal projector
# (500, "image input is not supported - hint: … mmproj"), vLLM's text-only models;
# `invalid_image` when OpenAI cannot read the image itself.
IMAGE_ERROR_CODES = {"invalid_image", "invalid_image_format"}
IMAGE_ERROR_WORDS = (
    "image_url is only supported",
    "image input is not supported",
    "does not support image",
    "images are not supported",
    "not a multimodal model",
    "vision is not supported",
)


CUT_OFF_NOTE = "\n\n_(cut off: ask “continue” for the rest)_"
IMAGES_NOTE = "\n\n_(the model could not take the images, so this answer is from the text alone)_"


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
    images_dropped: bool = False  # the model refused images: answered from the text alone

    @property
    def delivered(self) -> str:
        """What the asker sees: the text, and a note when it is not all there or the images
        were not read. Notes are not stored, so that the model reads its own words when
        asked to continue."""
        cut_off = CUT_OFF_NOTE if self.cut_off else ""
        return self.text + cut_off + (IMAGES_NOTE if self.images_dropped else "")

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
    # aiohttp (the client's own option) parses HTTP in C and reads a stream's events many
    # at a time; httpx passes each through a pure-Python stack, ~15 µs of CPU an event.
    return openai.AsyncOpenAI(
        api_key=api_key,
        base_url=base_url or None,
        max_retries=0,
        timeout=timeout,
        http_client=openai.DefaultAioHttpClient(),
    )


def make_clients(
    api_key: str, base_url: str | None, timeout: float, concurrency: int
) -> list[openai.AsyncOpenAI]:
    """One client per STREAMS_PER_CLIENT concurrent answers.

    httpx's connection pool scans all of its connections for every request, which costs
    O(n^2) with hundreds of streams open at once; small shards kept that cost flat. The
    aiohttp transport has no such cost (200 streams on one client measured the same).
    """
    count = max(1, -(-concurrency // STREAMS_PER_CLIENT))
    return [make_client(api_key, base_url, timeout) for _ in range(count)]


def is_context_error(error: openai.BadRequestError) -> bool:
    body = error.body if isinstance(error.body, dict) else {}
    code, kind = body.get("code"), body.get("type")
    if code == "context_length_exceeded" or kind == "exceed_context_size_error":
        return True
    return any(words in str(error.message).lower() for words in CONTEXT_ERROR_WORDS)


def refuses_images(error: openai.APIError) -> bool:
    """Whether the server refused the request for its images (OpenAI answers 400;
    llama.cpp 500, as a server error)."""
    if not isinstance(error, openai.APIStatusError) or error.status_code not in (400, 500):
        return False
    body = error.body if isinstance(error.body, dict) else {}
    if body.get("code") in IMAGE_ERROR_CODES:
        return True
    text = f"{body.get('message') or ''} {error.message}".lower()
    return any(words in text for words in IMAGE_ERROR_WORDS)


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
        urgency: Urgency | None = None,
    ) -> None:
        self.clients = clients if isinstance(clients, list) else [clients]
        self.urgency = urgency or Urgency()
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
        images_dropped = False
        while True:
            completion_tokens = window.completion_tokens(
                self.max_completion_tokens, counter.chat(chat)
            )
            try:
                answer = await self._stream(model, chat, target, completion_tokens)
                return replace(answer, images_dropped=images_dropped)
            except openai.APIError as exc:
                if refuses_images(exc) and has_images(chat):  # once: then there are none
                    whole, images_dropped = without_images(whole), True
                    chat = self.fit(whole, window, counter)
                    metrics.OPENAI_RETRIES.labels("images").inc()
                elif isinstance(exc, openai.BadRequestError):
                    window = self.learn_window(exc, model, chat, window, counter)
                    chat = self.shorter(whole, chat, window, counter, completion_tokens)
                else:
                    failures = await self.wait_to_retry(exc, model, failures)
            await target.restart()

    async def wait_to_retry(self, error: openai.APIError, model: str, failures: int) -> int:
        """Wait before trying again after a transient failure; how many there were now.
        CompletionFailed when the failure is not transient, or there were too many."""
        if not is_transient(error):
            raise CompletionFailed(explain(error, model)) from error
        failures += 1
        if failures >= self.attempts:
            raise CompletionFailed(
                f"OpenAI did not answer after {failures} tries ({describe(error)}). "
                "Your question is saved: retry in a moment."
            ) from error
        metrics.OPENAI_RETRIES.labels("transient").inc()
        await asyncio.sleep(self.backoff(failures, error))
        return failures

    def learn_window(
        self,
        refused: openai.BadRequestError,
        model: str,
        chat: Chat,
        window: Window,
        counter: TokenCounter,
    ) -> Window:
        """The window to fit the next try to after a refusal for length (CompletionFailed
        for any other refusal)."""
        if not is_context_error(refused):
            raise CompletionFailed(explain(refused, model)) from refused
        metrics.OPENAI_RETRIES.labels("context").inc()
        refusal = Refusal.of(refused)
        counted = Counted(counter.chat(chat), TokenCounter.formatting(chat))
        return self.windows.learn(model, self.base_url, window, refusal, counted) or window

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
        await self.urgency.turn()
        request = next(self._next_client).chat.completions.with_streaming_response.create(
            model=model,
            messages=[],
            stream=True,
            max_completion_tokens=completion_tokens,
            stream_options={"include_usage": True},
            # The client walks every message to transform its typed parameters (0.1 ms a
            # message: 4 ms for a 40-message thread); plain role/content dicts need none.
            extra_body={"messages": chat},
        )
        async with request as response:  # HTTP errors are raised here, as the client words them
            answer = StreamedAnswer()
            async for data in stream_events(response):
                if self.urgency.under_way:  # checked here: no coroutine for most events
                    await self.urgency.turn()
                delta = answer.read(parsed(data, response), response)
                if delta:
                    await target.append(delta)
        text = answer.text
        if not text.strip():
            raise CompletionFailed(empty_answer(answer.finish))
        usage = answer.usage or counted_usage(model, chat, text)
        metrics.tokens_used(model, usage)
        return Completion(text, "length" if answer.finish == "length" else None, usage)


async def stream_events(response: openai.AsyncAPIResponse[Any]) -> AsyncIterator[bytes]:
    """The data of each server-sent event until `[DONE]`, read failures worded as the
    client's own streams word them (a timeout, or the connection lost)."""
    http = response.http_response
    chunks = http.aiter_bytes()
    decoder = EventDecoder()
    try:
        async for chunk in chunks:
            for data in decoder.feed(chunk):
                if data.startswith(b"[DONE]"):
                    await read_to_the_end(chunks)
                    return
                yield data
    except timeout_exceptions() as exc:
        raise openai.APITimeoutError(request=http.request) from exc
    except request_exceptions() as exc:
        raise openai.APIConnectionError(request=http.request) from exc


async def read_to_the_end(chunks: AsyncIterator[bytes]) -> None:
    """Read what follows `[DONE]` (the body's end, usually there already), so that the
    connection serves the next request; a server that says no more within DRAIN_SECONDS
    loses it instead, as with the client's own streams."""
    with contextlib.suppress(TimeoutError, *request_exceptions()):
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _ in chunks:
                pass


class StreamedAnswer:
    """What the chunks of a streamed chat completion add up to."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.finish: str | None = None
        self.usage: Usage | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def read(self, chunk: Any, response: openai.AsyncAPIResponse[Any]) -> str | None:
        """Take in one chunk; return the text it adds, if any."""
        if not isinstance(chunk, dict):
            return None
        if chunk.get("error"):
            raise stream_error(chunk["error"], response)
        if chunk.get("usage"):  # the last chunk, without choices
            self.usage = usage_of(chunk["usage"])
        choices = chunk.get("choices")
        if not choices:
            return None
        choice = choices[0]
        self.finish = choice.get("finish_reason") or self.finish
        content: str | None = (choice.get("delta") or {}).get("content")
        if content:
            self.parts.append(content)
        return content


def parsed(data: bytes, response: openai.AsyncAPIResponse[Any]) -> Any:
    """One event's JSON; an event that is none fails the attempt as the server's error."""
    try:
        return json.loads(data)
    except ValueError as exc:
        shown = data[:80].decode(errors="replace")
        raise openai.APIError(
            f"the server streamed an event that is not JSON ({shown!r})",
            response.http_request,
            body=None,
        ) from exc


def usage_of(usage: dict[str, Any]) -> Usage:
    details = usage.get("prompt_tokens_details") or {}
    return Usage(
        usage.get("prompt_tokens") or 0,
        usage.get("completion_tokens") or 0,
        details.get("cached_tokens") or 0,
    )


def stream_error(error: Any, response: openai.AsyncAPIResponse[Any]) -> openai.APIError:
    """An error event in the middle of a stream, as the client raises it."""
    message = error.get("message") if isinstance(error, dict) else None
    if not message or not isinstance(message, str):
        message = "An error occurred during streaming"
    return openai.APIError(message, response.http_request, body=error)


def describe(error: Exception) -> str:
    if isinstance(error, openai.APIStatusError):
        return f"last error: HTTP {error.status_code}"
    if isinstance(error, openai.APITimeoutError) and not refused(error):
        return "last error: timed out"
    return "last error: connection lost"


def refused(error: BaseException) -> bool:
    """True when the connection was refused or reset: the aiohttp transport reports a refused
    connection as a connect timeout, though the operating system said why."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ConnectionError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def empty_answer(finish: str | None) -> str:
    if finish == "length":
        return (
            "The model used its whole token budget without writing an answer. "
            "Ask an admin to raise TUTOR_MAX_COMPLETION_TOKENS."
        )
    return "The model returned an empty answer. Try rephrasing the question."
