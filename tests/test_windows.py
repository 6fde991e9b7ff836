"""Learning a model's context window: the seed's questions against a local model with a
1,024-token window that tutor does not know, through the real `openai` client and the fake
server playing llama.cpp (with and without `GET /props`) or vLLM."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx2
import openai
import pytest

from bench.window_bench import MODEL, QUESTIONS, Discard, ask_all, long_answer
from fakes.openai_server import API_KEY, FakeOpenAI, LocalModel
from looper.completion import Completer, make_client
from looper.context import Chat
from looper.windows import ContextWindows, Refusal
from tests.harness import OPEN_COMPLETERS, Cli, Lines

ANSWER_CHARS = 1500  # about 500 tokens: a tutor's answer, half the window


def refused(fake: FakeOpenAI) -> int:
    return sum(1 for r in fake.requests if r.status == 400)


def local_fake(local: LocalModel) -> FakeOpenAI:
    return FakeOpenAI(local_model=local, answer=long_answer(ANSWER_CHARS)).start()


pytestmark = pytest.mark.usefixtures("close_completers")


@pytest.fixture
def llama() -> Iterator[FakeOpenAI]:
    fake = local_fake(LocalModel(1024))
    yield fake
    fake.stop()


def completer(fake: FakeOpenAI, windows: ContextWindows | None = None) -> Completer:
    made = Completer(make_client(API_KEY, fake.base_url, 10), base_delay=0.01, windows=windows)
    OPEN_COMPLETERS.append(made)  # closed by `close_completers`
    return made


def long_thread() -> Chat:
    """A thread whose history is far past a 1,024-token window."""
    prose = long_answer(ANSWER_CHARS)({"messages": [{"role": "user", "content": "?"}]})
    turns = [{"role": role, "content": prose} for role in ["user", "assistant"] * 3]
    return [*turns, {"role": "user", "content": "and now?"}]


def answered_in_seed_flow(cli: Cli, model: str) -> None:
    """The seed's flow with seven questions: `tutor looper` in its own process answers each
    `tutor ask` in one thread, in context."""
    assistant_id = cli.ok("assistant", "add").split()[-1]
    thread_id = cli.ok("thread", "add", "--assistant-id", assistant_id, "--model", model).split()[
        -1
    ]
    looper = cli.start("looper")
    output = Lines(looper.stdout)  # type: ignore[arg-type]
    try:
        for question in QUESTIONS:
            cli.ok("ask", question)
            prefix = f"[{thread_id}] assistant: An answer to: {question}"
            while not output.next().startswith(prefix):
                pass  # the note under an answer the window cut off
    finally:
        looper.terminate()
        assert looper.wait(timeout=10) == 0


@pytest.mark.parametrize(
    ("props", "setting", "refusals", "probes"),
    [
        (True, "", 0, 1),  # /props tells the window before the first request
        (False, "", 1, 1),  # no /props (404, asked once): the first refusal tells it
        (False, "1024", 0, 0),  # TUTOR_CONTEXT_TOKENS: nothing to learn, nothing asked
    ],
    ids=["props", "refusal", "setting"],
)
def test_seven_questions_against_llama_cpp_cost_at_most_one_refusal(
    cli: Cli, fake_openai: FakeOpenAI, props: bool, setting: str, refusals: int, probes: int
) -> None:
    fake_openai.local_model = LocalModel(1024, props=props)
    fake_openai.answer = long_answer(ANSWER_CHARS)
    if setting:
        cli.env["TUTOR_CONTEXT_TOKENS"] = setting
    answered_in_seed_flow(cli, MODEL)
    assert refused(fake_openai) == refusals
    assert len(fake_openai.requests) == len(QUESTIONS) + refusals
    assert fake_openai.props_requests == probes
    # The history was kept where it fits: the second question was asked after the first.
    second = next(
        r for r in fake_openai.requests if r.body["messages"][-1]["content"] == QUESTIONS[1]
    )
    assert [m["role"] for m in second.body["messages"]] == ["system", "user", "assistant", "user"]


@pytest.mark.parametrize(
    "local",
    [LocalModel(1024), LocalModel(1024, props=False), LocalModel(1024, server="vllm")],
    ids=["llama.cpp", "llama.cpp without /props", "vLLM"],
)
async def test_seven_questions_are_all_answered_with_at_most_one_refusal(
    local: LocalModel,
) -> None:
    fake = local_fake(local)
    try:
        assert await ask_all(completer(fake)) == len(QUESTIONS)
        assert refused(fake) <= 1
        statuses = [r.status for r in fake.requests]
        learned = statuses.index(400) + 1 if 400 in statuses else 0
        # Once the window is known, no request asks for more tokens than it holds.
        assert all(r.body["max_completion_tokens"] < 1024 for r in fake.requests[learned:])
    finally:
        fake.stop()


async def test_the_window_is_learned_per_model_and_base_url(llama: FakeOpenAI) -> None:
    other = local_fake(LocalModel(1024, props=False))
    llama.local_model = LocalModel(1024, props=False)
    windows = ContextWindows()  # one process, two servers
    here, there = completer(llama, windows), completer(other, windows)
    try:
        for _ in range(2):
            await here.complete("model-a", long_thread(), Discard())
        assert refused(llama) == 1  # learned once, for model-a at this server
        await here.complete("model-b", long_thread(), Discard())
        assert refused(llama) == 2  # another model: its own window
        await there.complete("model-a", long_thread(), Discard())
        assert refused(other) == 1  # another server: its own window
        assert llama.props_requests == other.props_requests == 1  # 404 remembered per server
        assert {window.tokens for window in windows.learned.values()} == {1024}
        assert len(windows.learned) == 3
    finally:
        other.stop()


async def test_many_first_questions_at_once_ask_props_once(llama: FakeOpenAI) -> None:
    done = completer(llama)
    await asyncio.gather(*(done.complete(MODEL, long_thread(), Discard()) for _ in range(5)))
    assert llama.props_requests == 1 and refused(llama) == 0


async def test_a_known_openai_model_asks_nothing(llama: FakeOpenAI) -> None:
    await completer(llama).complete("gpt-5-mini", [{"role": "user", "content": "hi"}], Discard())
    assert llama.props_requests == 0


async def test_a_question_longer_than_the_window_fails_in_one_line(llama: FakeOpenAI) -> None:
    from looper.completion import CompletionFailed

    huge = [{"role": "user", "content": "why? " * 2000}]
    with pytest.raises(CompletionFailed, match="too long"):
        await completer(llama).complete(MODEL, huge, Discard())
    assert llama.requests == []  # /props said 1,024 tokens: nothing sent in vain


def bad_request(body: dict[str, object]) -> openai.BadRequestError:
    request = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx2.Response(400, request=request, json=body)
    inner = body.get("error", body)
    assert isinstance(inner, dict)
    return openai.BadRequestError(
        f"Error code: 400 - {inner['message']}", response=response, body=inner
    )


@pytest.mark.parametrize(
    ("body", "window", "prompt"),
    [
        (
            {
                "error": {
                    "code": 400,
                    "message": "request (1100 tokens) exceeds the available context size "
                    "(1024 tokens), try increasing it",
                    "type": "exceed_context_size_error",
                    "n_prompt_tokens": 1100,
                    "n_ctx": 1024,
                }
            },
            1024,
            1100,
        ),
        (
            {
                "object": "error",
                "message": "This model's maximum context length is 2048 tokens. However, you "
                "requested 4150 tokens (54 in the messages, 4096 in the completion). Please "
                "reduce the length of the messages or completion.",
                "type": "BadRequestError",
                "code": 400,
            },
            2048,
            54,
        ),
        (
            {
                "error": {
                    "message": "'max_tokens' or 'max_completion_tokens' is too large: 4096. This "
                    "model's maximum context length is 2048 tokens and your request has 54 "
                    "input tokens (4096 > 2048 - 54).",
                    "type": "BadRequestError",
                    "code": 400,
                }
            },
            2048,
            54,
        ),
        (
            {
                "error": {
                    "message": "This model's maximum context length is 128000 tokens. However, "
                    "your messages resulted in 130001 tokens. Please reduce the length of the "
                    "messages.",
                    "type": "invalid_request_error",
                    "code": "context_length_exceeded",
                }
            },
            128000,
            130001,
        ),
        (
            {"error": {"message": "The prompt is too long.", "type": "invalid_request_error"}},
            None,
            None,
        ),
    ],
    ids=["llama.cpp", "vLLM", "newer vLLM", "OpenAI", "says nothing"],
)
def test_what_a_refusal_states(
    body: dict[str, object], window: int | None, prompt: int | None
) -> None:
    assert Refusal.of(bad_request(body)) == Refusal(window, prompt)
