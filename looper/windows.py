"""The context window of each model at each server, learned once per process.

OpenAI's models have known windows (`looper/tokens.py`). For any other model the window comes
from `TUTOR_CONTEXT_TOKENS` when set, else from the server when it tells it: llama.cpp
reports `n_ctx` at `GET /props` (at the server root, not under `/v1`), and its refusal of a
prompt that is too long states the window ("the available context size (N tokens)", with
`n_ctx` and `n_prompt_tokens` in the body), as vLLM's and OpenAI's do ("maximum context length
is N tokens"). What a server said is kept per (model, base URL), so that a model's window
costs at most one refused request per process.
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import dataclass, replace
from typing import Any

import openai

from looper.tokens import DEFAULT_WINDOW, context_window, known_window

# Our tokenizer is not the server's when the model is not OpenAI's: keep this share of the
# window free for the difference left after calibrating against the server's own counts.
HEADROOM = 0.9
PROPS_TIMEOUT = 5.0

WINDOW_PATTERNS = (
    re.compile(r"available context size \((\d+) tokens?\)"),  # llama.cpp
    re.compile(r"maximum context length is (\d+) tokens?"),  # OpenAI, vLLM
)
PROMPT_PATTERNS = (
    re.compile(r"request \((\d+) tokens?\) exceeds"),  # llama.cpp
    re.compile(r"\((\d+) in the messages"),  # vLLM
    re.compile(r"your request has (\d+) input tokens?"),  # newer vLLM
    re.compile(r"your prompt contains at least (\d+) input tokens?"),  # newer vLLM
    re.compile(r"your messages resulted in (\d+) tokens?"),  # OpenAI
)


@dataclass(frozen=True)
class Window:
    """A model's context window in the server's tokens, and how many of the server's tokens
    one token of our count makes (`ratio`, learned from a refusal that states the prompt's
    size). `exact` when our tokenizer is the model's (OpenAI's known models)."""

    tokens: int
    ratio: float = 1.0
    exact: bool = False

    def completion_reserve(self, max_completion_tokens: int) -> int:
        """Room kept for the answer: all it may take, or half the window when that is less."""
        return min(max_completion_tokens, self.tokens // 2)

    def prompt_budget(self, max_completion_tokens: int) -> int:
        """How many tokens of our count the prompt may take."""
        room = self.tokens - self.completion_reserve(max_completion_tokens)
        return math.floor(room / self.ratio * (1.0 if self.exact else HEADROOM))

    def server_tokens(self, counted: int) -> int:
        """What the server will likely count for a prompt we count at `counted` (erring high)."""
        return math.ceil(counted * self.ratio / (1.0 if self.exact else HEADROOM))

    def completion_tokens(self, max_completion_tokens: int, prompt_counted: int) -> int:
        """`max_completion_tokens` for one request: what is configured, or what is left of
        the window after the prompt when that is less (servers such as vLLM refuse a request
        whose prompt and completion together exceed the window)."""
        left = self.tokens - self.server_tokens(prompt_counted)
        reserve = self.completion_reserve(max_completion_tokens)
        return min(max_completion_tokens, max(left, reserve))


@dataclass(frozen=True)
class Refusal:
    """What a server's "too long" answer states: the window and the prompt's size, in its
    own tokens, each None when it does not say."""

    window: int | None
    prompt_tokens: int | None

    @classmethod
    def of(cls, error: openai.BadRequestError) -> Refusal:
        body: dict[str, Any] = error.body if isinstance(error.body, dict) else {}
        text = f"{body.get('message') or ''} {error.message}"
        window = positive(body.get("n_ctx")) or first_number(WINDOW_PATTERNS, text)
        prompt = positive(body.get("n_prompt_tokens")) or first_number(PROMPT_PATTERNS, text)
        return cls(window, prompt)


def positive(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def first_number(patterns: tuple[re.Pattern[str], ...], text: str) -> int | None:
    for pattern in patterns:
        found = pattern.search(text)
        if found:
            return positive(int(found.group(1)))
    return None


def props_url(base_url: str) -> str:
    """llama.cpp serves `/props` at its root: `http://host:8080/v1` → `http://host:8080/props`."""
    root = base_url.rstrip("/").removesuffix("/v1")
    return f"{root}/props"


def n_ctx_of(props: object) -> int | None:
    """The per-slot window in llama.cpp's `/props` (older versions put `n_ctx` at the top)."""
    if not isinstance(props, dict):
        return None
    settings = props.get("default_generation_settings")
    nested = settings.get("n_ctx") if isinstance(settings, dict) else None
    return positive(nested) or positive(props.get("n_ctx"))


class ContextWindows:
    """The context window of each (model, base URL) for this process.

    What a server's refusal stated wins (it is what the server enforces); then
    `TUTOR_CONTEXT_TOKENS` (`configured`); then OpenAI's known windows; then, for an unknown
    model, the server's `/props` (asked once per server, never again where it is missing);
    DEFAULT_WINDOW when nothing says.
    """

    def __init__(self, configured: int = 0) -> None:
        self.configured = configured
        self.learned: dict[tuple[str, str], Window] = {}
        self._props: dict[str, asyncio.Task[int | None]] = {}  # one probe per server

    async def window(self, model: str, client: openai.AsyncOpenAI) -> Window:
        base_url = str(client.base_url)
        learned = self.learned.get((model, base_url))
        if learned is not None:
            return learned
        if self.configured:
            return Window(self.configured)
        if known_window(model) is not None:
            return Window(context_window(model), exact=True)
        n_ctx = await self._props_n_ctx(client)
        if n_ctx is None:
            return Window(DEFAULT_WINDOW)
        return self.learned.setdefault((model, base_url), Window(n_ctx))

    async def _props_n_ctx(self, client: openai.AsyncOpenAI) -> int | None:
        base_url = str(client.base_url)
        if base_url not in self._props:
            self._props[base_url] = asyncio.ensure_future(ask_props(client))
        return await asyncio.shield(self._props[base_url])

    def learn(
        self, model: str, base_url: str, sent: Window, refusal: Refusal, counted: Counted
    ) -> Window | None:
        """Remember what a refusal of a prompt we counted as `counted` states; the window to
        fit the next try to, or None when the server stated no window."""
        if refusal.window is None:
            return None
        ratio = sent.ratio
        if refusal.prompt_tokens:
            # Only ever up: a server that counts fewer tokens than we do costs some history,
            # one that counts more would cost another refusal.
            ratio = max(ratio, counted.ratio_to(refusal.prompt_tokens))
        learned = replace(sent, tokens=refusal.window, ratio=ratio, exact=False)
        self.learned[(model, base_url)] = learned
        return learned


@dataclass(frozen=True)
class Counted:
    """Our count of a prompt, and how much of it is chat formatting rather than text."""

    tokens: int
    formatting: int

    def ratio_to(self, server_tokens: int) -> float:
        """The server's tokens per token of ours. Taken on the text alone: formatting costs
        both sides about the same, and would make a short prompt's ratio look too small
        for the long history that follows."""
        text = self.tokens - self.formatting
        server_text = server_tokens - self.formatting
        if text > 0 and server_text > 0:
            return server_text / text
        return server_tokens / max(self.tokens, 1)


async def ask_props(client: openai.AsyncOpenAI) -> int | None:
    """llama.cpp's `n_ctx`, or None when the server has no `/props` (404 at OpenAI, vLLM)
    or does not answer it: then the window is learned from a refusal instead."""
    try:
        props = await client.get(
            props_url(str(client.base_url)),
            cast_to=object,
            options={"timeout": PROPS_TIMEOUT, "max_retries": 0},
        )
    except (openai.APIError, ValueError):  # ValueError: a body that is not JSON
        return None
    return n_ctx_of(props)
