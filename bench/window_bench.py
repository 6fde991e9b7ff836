"""Context-window benchmark: requests and refusals for length for seven questions in one
thread, against a local model with a 1,024-token window that tutor does not know.

    .venv/bin/python -m bench.window_bench [--window 1024] [--answer-chars 1500]

The fake OpenAI server plays llama.cpp (with and without `GET /props`) and vLLM; the model
writes long answers, as a real one does. "before" is tutor as it was: it assumes 128k tokens
for an unknown model and halves the history after each refusal; "after" learns the window.
Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any

from fakes.openai_server import API_KEY, FakeOpenAI, LocalModel, default_answer
from looper.completion import Completer, CompletionFailed, make_client
from looper.context import Chat
from looper.models import ChatCompletionPhysicsTutor
from looper.windows import ContextWindows, Counted, Refusal, Window

# The seed's three questions, then four more follow-ups in the same thread.
QUESTIONS = [
    "How did the universe begin?",
    "what models?",
    "what experiments?",
    "what is dark matter?",
    "and dark energy?",
    "how old is the universe?",
    "how will it end?",
]
MODEL = "local-model"  # a model tutor does not know
PROSE = (
    "Physicists describe the early universe with general relativity and the standard model "
    "of particle physics, and they test those descriptions against what telescopes measure: "
    "the cosmic microwave background, the abundance of light elements, and the way galaxies "
    "cluster across billions of light years. "
)


def long_answer(chars: int) -> Callable[[dict[str, Any]], str]:
    """A model that answers in English prose of about `chars` characters, as a tutor does
    (tokenizers count prose differently from filler text)."""

    def answer(body: dict[str, Any]) -> str:
        text = default_answer(body) + ". " + PROSE * (chars // len(PROSE) + 1)
        return text[:chars]

    return answer


class Discard:
    """A DeltaTarget that keeps nothing."""

    async def append(self, delta: str) -> None:
        pass

    async def restart(self) -> None:
        pass


class AssumedWindows(ContextWindows):
    """Tutor before learning windows: 128k for an unknown model, and nothing learned."""

    async def _props_n_ctx(self, client: object) -> int | None:
        return None

    def learn(
        self, model: str, base_url: str, sent: Window, refusal: Refusal, counted: Counted
    ) -> Window | None:
        return None


async def ask_all(completer: Completer, questions: list[str] = QUESTIONS) -> int:
    """Ask each question in turn in one thread, as the looper does; how many were answered
    (a failed one stays in the thread unanswered, as the looper leaves it)."""
    chat: Chat = [{"role": "system", "content": ChatCompletionPhysicsTutor().instructions}]
    answered = 0
    for question in questions:
        chat.append({"role": "user", "content": question})
        try:
            answer = await completer.complete(MODEL, chat, Discard())
        except CompletionFailed:
            continue
        chat.append({"role": "assistant", "content": answer.text})
        answered += 1
    return answered


async def measure(local: LocalModel, learn: bool, answer_chars: int) -> str:
    fake = FakeOpenAI(local_model=local, answer=long_answer(answer_chars)).start()
    try:
        windows = ContextWindows() if learn else AssumedWindows()
        completer = Completer(make_client(API_KEY, fake.base_url, 30), windows=windows)
        answered = await ask_all(completer)
        await completer.close()
        refused = sum(1 for r in fake.requests if r.status == 400)
        return f"{len(fake.requests)} ({refused}), {answered} answered"
    finally:
        fake.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--answer-chars", type=int, default=1500)
    args = parser.parse_args()
    servers = {
        "llama.cpp": LocalModel(args.window),
        "llama.cpp without /props": LocalModel(args.window, props=False),
        "vLLM": LocalModel(args.window, server="vllm"),
    }
    print(f"seven questions, one thread, {args.window}-token window, unknown model")
    print("| server | before: requests (refused) | after: requests (refused) |")
    print("|---|---|---|")
    for name, local in servers.items():
        before = await measure(local, False, args.answer_chars)
        after = await measure(local, True, args.answer_chars)
        print(f"| {name} | {before} | {after} |")


if __name__ == "__main__":
    asyncio.run(main())
