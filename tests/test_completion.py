"""The Completer with the real openai client against the fake server: streaming and faults."""

from __future__ import annotations

import asyncio
import time
from datetime import date

import pytest

from fakes.openai_server import API_KEY, FakeOpenAI, Fault
from looper.completion import Completer, CompletionFailed, make_client
from looper.deprecations import ModelUse, shutdown_of, shutdown_warning
from looper.settings import DEFAULT_MODEL
from tests.harness import OPEN_COMPLETERS

pytestmark = pytest.mark.usefixtures("close_completers")

CHAT = [
    {"role": "system", "content": "You are a tutor."},
    {"role": "user", "content": "How did the universe begin?"},
]


class Recorder:
    """A DeltaTarget that keeps what it was shown."""

    def __init__(self) -> None:
        self.deltas: list[str] = []
        self.restarts = 0

    async def append(self, delta: str) -> None:
        self.deltas.append(delta)

    async def restart(self) -> None:
        self.restarts += 1
        self.deltas.clear()


def completer(
    fake: FakeOpenAI,
    key: str = API_KEY,
    timeout: float = 10,
    attempts: int = 4,
    context_tokens: int = 0,
    max_completion_tokens: int = 4096,
) -> Completer:
    client = make_client(key, fake.base_url, timeout)
    made = Completer(
        client,
        max_completion_tokens=max_completion_tokens,
        attempts=attempts,
        base_delay=0.01,
        context_tokens=context_tokens,
    )
    OPEN_COMPLETERS.append(made)
    return made


async def test_streams_deltas_with_max_completion_tokens(fake_openai: FakeOpenAI) -> None:
    target = Recorder()
    answer = await completer(fake_openai).complete("gpt-5-mini", CHAT, target)
    text = answer.text
    assert text == "An answer to: How did the universe begin?" and answer.cut_off is None
    assert "".join(target.deltas) == text and len(target.deltas) > 1
    body = fake_openai.requests[0].body
    assert body["stream"] is True and body["messages"] == CHAT
    assert body["max_completion_tokens"] == 4096
    assert "max_tokens" not in body and "temperature" not in body


async def test_an_answer_cut_off_by_the_token_limit_is_marked(fake_openai: FakeOpenAI) -> None:
    fake_openai.add_faults(Fault(cut_off_after_chunks=2))
    target = Recorder()
    answer = await completer(fake_openai).complete("gpt-5-mini", CHAT, target)
    full = "An answer to: How did the universe begin?"
    assert answer.cut_off == "length"
    assert answer.text == "".join(target.deltas) and full.startswith(answer.text)
    assert len(answer.text) < len(full)
    assert answer.delivered == answer.text + "\n\n_(cut off: ask “continue” for the rest)_"
    assert answer.marks == {"cut_off": "length"}


async def test_429_waits_retry_after(fake_openai: FakeOpenAI) -> None:
    fake_openai.add_faults(Fault(status=429, retry_after=1))
    start = time.monotonic()
    answer = await completer(fake_openai).complete("gpt-5-mini", CHAT, Recorder())
    assert answer.text.startswith("An answer")
    assert time.monotonic() - start >= 1.0  # the server's Retry-After, not our 10 ms backoff
    await asyncio.to_thread(fake_openai.wait_requests, 2, completed=True)
    assert [r.status for r in fake_openai.requests] == [429, 200]


async def test_500_is_retried(fake_openai: FakeOpenAI) -> None:
    fake_openai.add_faults(Fault(status=500), Fault(status=503))
    assert (await completer(fake_openai).complete("gpt-5-mini", CHAT, Recorder())).text
    await asyncio.to_thread(fake_openai.wait_requests, 3, completed=True)
    assert [r.status for r in fake_openai.requests] == [500, 503, 200]


async def test_dropped_stream_restarts_the_answer(fake_openai: FakeOpenAI) -> None:
    fake_openai.add_faults(Fault(drop_after_chunks=2))
    target = Recorder()
    answer = await completer(fake_openai).complete("gpt-5-mini", CHAT, target)
    assert target.restarts == 1
    assert "".join(target.deltas) == answer.text  # nothing of the broken attempt is left
    assert len(fake_openai.requests) == 2


async def test_slow_first_token_times_out_and_retries(fake_openai: FakeOpenAI) -> None:
    fake_openai.add_faults(Fault(first_token_delay=3))
    answer = await completer(fake_openai, timeout=0.5).complete("gpt-5-mini", CHAT, Recorder())
    assert answer.text.startswith("An answer") and len(fake_openai.requests) == 2


async def test_slow_first_token_within_timeout_is_awaited(fake_openai: FakeOpenAI) -> None:
    fake_openai.add_faults(Fault(first_token_delay=0.3))
    answer = await completer(fake_openai, timeout=5).complete("gpt-5-mini", CHAT, Recorder())
    assert answer.text
    assert len(fake_openai.requests) == 1


async def test_gives_up_after_attempts_with_a_clear_message(fake_openai: FakeOpenAI) -> None:
    fake_openai.add_faults(*[Fault(status=500)] * 3)
    with pytest.raises(CompletionFailed, match="did not answer after 3 tries"):
        await completer(fake_openai, attempts=3).complete("gpt-5-mini", CHAT, Recorder())
    assert len(fake_openai.requests) == 3


HISTORY = [
    {"role": r, "content": f"turn {i} " * 20} for i, r in enumerate(["user", "assistant"] * 4)
]


async def test_a_refusal_stating_no_window_retries_with_half_the_history(
    fake_openai: FakeOpenAI,
) -> None:
    chat = [CHAT[0], *HISTORY, {"role": "user", "content": "latest?"}]
    fake_openai.context_limit_chars = 300
    fake_openai.context_error_style = "vague"
    answer = await completer(fake_openai).complete("gpt-5-mini", chat, Recorder())
    assert answer.text == "An answer to: latest?"
    sent = [r.body["messages"] for r in fake_openai.requests]
    assert [len(m) for m in sent] == [10, 6, 4, 3]  # halved each time, oldest turns first
    assert all(m[0] == CHAT[0] and m[-1]["content"] == "latest?" for m in sent)


@pytest.mark.parametrize("style", ["openai", "llama.cpp"])
async def test_a_refusal_stating_the_window_is_refitted_once(
    fake_openai: FakeOpenAI, style: str
) -> None:
    chat = [CHAT[0], *HISTORY, {"role": "user", "content": "latest?"}]
    fake_openai.context_limit_chars = 300  # a character is a token, at this server
    fake_openai.context_error_style = style
    answer = await completer(fake_openai).complete("gpt-5-mini", chat, Recorder())
    assert answer.text == "An answer to: latest?"
    assert [r.status for r in fake_openai.requests] == [400, 200]  # one refusal, then it fits
    fitted = fake_openai.requests[1].body["messages"]
    assert fitted[0] == CHAT[0] and fitted[-1]["content"] == "latest?"
    assert sum(len(m["content"]) for m in fitted) <= 300 // 2  # half kept for the answer
    assert fake_openai.requests[1].body["max_completion_tokens"] < 300


async def test_context_error_on_the_question_alone_fails_clearly(fake_openai: FakeOpenAI) -> None:
    fake_openai.context_limit_chars = 10
    with pytest.raises(CompletionFailed, match="too long"):
        await completer(fake_openai).complete("gpt-5-mini", CHAT, Recorder())


async def test_history_is_trimmed_to_the_window_before_sending(fake_openai: FakeOpenAI) -> None:
    old = [{"role": "user", "content": "old words " * 300}, {"role": "assistant", "content": "ok"}]
    chat = [CHAT[0], *old, CHAT[1]]
    await completer(fake_openai, context_tokens=700, max_completion_tokens=100).complete(
        "gpt-5-mini", chat, Recorder()
    )
    sent = fake_openai.requests[0].body["messages"]
    assert sent == [CHAT[0], old[1], CHAT[1]]


async def test_retired_model(fake_openai: FakeOpenAI) -> None:
    with pytest.raises(CompletionFailed, match=r"`gpt-3\.5-turbo` is retired or unknown"):
        await completer(fake_openai).complete("gpt-3.5-turbo", CHAT, Recorder())
    assert len(fake_openai.requests) == 1  # no retry


async def test_bad_key(fake_openai: FakeOpenAI) -> None:
    with pytest.raises(CompletionFailed, match="rejected the API key"):
        await completer(fake_openai, key="sk-wrong").complete("gpt-5-mini", CHAT, Recorder())
    assert len(fake_openai.requests) == 1


async def test_quota_exhausted_is_not_retried(fake_openai: FakeOpenAI) -> None:
    fake_openai.add_faults(Fault(status=429, code="insufficient_quota"))
    with pytest.raises(CompletionFailed, match="out of quota"):
        await completer(fake_openai).complete("gpt-5-mini", CHAT, Recorder())
    assert len(fake_openai.requests) == 1


async def test_unreachable_server_fails_after_retries() -> None:
    client = make_client(API_KEY, "http://127.0.0.1:9/v1", 2)
    made = Completer(client, attempts=2, base_delay=0.01)
    OPEN_COMPLETERS.append(made)
    with pytest.raises(CompletionFailed, match="connection lost"):
        await made.complete("m", CHAT, Recorder())


@pytest.mark.parametrize(
    ("model", "shuts_down", "replacement"),
    [
        ("gpt-5-mini", "2026-12-11", "gpt-5.4-mini"),
        ("gpt-5-mini-2025-08-07", "2026-12-11", "gpt-5.4-mini"),
        ("gpt-5", "2026-12-11", "gpt-5.4"),
        ("gpt-4o-2024-08-06", "2027-01-14", "gpt-5.4"),
        ("gpt-4o-2024-05-13", "2026-10-23", "gpt-5.4"),  # its own, earlier date
        ("gpt-4.1-mini", "2027-01-14", "gpt-5.4-mini"),
        (DEFAULT_MODEL, None, None),
        ("gpt-5.4", None, None),
        ("gpt-5-mini-tuned", None, None),  # a prefix is not a snapshot
        ("llama-3.1-8b", None, None),
    ],
)
def test_announced_shutdowns(model: str, shuts_down: str | None, replacement: str | None) -> None:
    shutdown = shutdown_of(model)
    found = (shutdown.on.isoformat(), shutdown.replacement) if shutdown else (None, None)
    assert found == (shuts_down, replacement)


def test_a_shutdown_warning_names_the_date_the_users_and_the_move() -> None:
    use = ModelUse(default=True, assistants=["Poet"], threads=3)
    before = shutdown_warning("gpt-5-mini", use, date(2026, 12, 1))
    assert before == (
        "gpt-5-mini (TUTOR_MODEL, assistant 'Poet', 3 threads) shuts down at OpenAI on "
        "2026-12-11: move to gpt-5.4-mini (set TUTOR_MODEL=gpt-5.4-mini; `tutor assistant "
        "move ASSISTANT --model gpt-5.4-mini --from gpt-5-mini` moves an assistant and its "
        "threads)"
    )
    after = shutdown_warning("gpt-5-mini", ModelUse(default=True), date(2026, 12, 11))
    assert after == (
        "gpt-5-mini (TUTOR_MODEL) was shut down at OpenAI on 2026-12-11: move to gpt-5.4-mini "
        "(set TUTOR_MODEL=gpt-5.4-mini)"
    )
    assert shutdown_warning("gpt-5.4-mini", use, date(2026, 12, 1)) is None
