"""Usage, cost and budgets in the engine: the real looper, store (both backends) and openai
client against the fake OpenAI, with a clock the test moves."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fakes.openai_server import API_KEY, FakeOpenAI
from looper.budgets import Budgets, Defaults
from looper.completion import Completer, make_client
from looper.core import InvalidInput, Tutor
from looper.loop import Looper
from looper.models import (
    ChatCompletionPhysicsTutor,
    ChatCompletionThread,
    NewMessage,
    Snapshot,
    UsageRecord,
)
from looper.prices import BUILT_IN, Price, Prices, PricesUnreadable
from looper.store import Store, open_store
from looper.tokens import TokenCounter
from tests.harness import Cli, RecordingSink

NOON = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
ALICE, BOB = "slack:U0ALICE", "slack:U0BOB"
CLASS, LAB = "slack:C0CLASS", "slack:C0LAB"


class Clock:
    def __init__(self) -> None:
        self.now = NOON

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def budgets(store: Store, clock: Clock) -> Budgets:
    return Budgets(store, Defaults(), clock)


@pytest.fixture
def tutor(store: Store, budgets: Budgets) -> Tutor:
    return Tutor(store, "gpt-5.4-mini", budgets=budgets)


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


StartLooper = Callable[..., Awaitable[Looper]]


@pytest.fixture
async def start_looper(
    fake_openai: FakeOpenAI, sink: RecordingSink, budgets: Budgets
) -> AsyncIterator[StartLooper]:
    """Runs loopers: on the test's store, or with `another`, on a `Store` of its own on the
    same database (a second replica), closed once the loopers have stopped."""
    running: list[tuple[Looper, asyncio.Task[None]]] = []
    opened: list[Store] = []

    async def start(another: str | None = None, concurrency: int = 8) -> Looper:
        on = await open_store(another) if another else budgets.store
        if another:
            opened.append(on)
        looper = Looper(
            on,
            Completer(make_client(API_KEY, fake_openai.base_url, 10), base_delay=0.01),
            sink,
            concurrency=concurrency,
            poll_interval=0.1,
            budgets=Budgets(on, budgets.defaults, budgets.clock),
        )
        running.append((looper, asyncio.create_task(looper.run())))
        return looper

    yield start
    for looper, task in running:
        looper.stop()
        await asyncio.wait_for(task, 10)
    for store in opened:
        await store.close()


async def question(
    tutor: Tutor, text: str, asker: str = ALICE, place: str = CLASS, model: str | None = None
) -> ChatCompletionThread:
    assistant = await tutor.assistant_for(place)
    first = NewMessage(content=text, asker=asker, place=place)
    return await tutor.start_thread(assistant, {}, first, model=model)


async def refused_after(
    tutor: Tutor, start_looper: StartLooper, answered: str, refused: str
) -> ChatCompletionThread:
    """With a daily limit of 1 token, `answered` is answered and spends it; the thread of
    `refused`, asked next, is refused."""
    await tutor.set_limit("user", 1)
    await question(tutor, answered)
    await start_looper()
    await records(tutor.store, 1)
    thread = await question(tutor, refused)
    await records(tutor.store, 2)
    return thread


async def records(store: Store, count: int = 1) -> list[UsageRecord]:
    """The ledger once it holds `count` records (the sink hears of an answer just before
    the answer is committed)."""
    for _ in range(200):
        found = (await store.export_all()).usage
        if len(found) >= count:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"the ledger holds {len(found)} records, not {count}")


async def test_an_answer_records_the_servers_usage_and_its_cost(
    tutor: Tutor, start_looper: StartLooper, sink: RecordingSink, fake_openai: FakeOpenAI
) -> None:
    fake_openai.cached_tokens = 3
    thread = await question(tutor, "why is the sky blue at noon")
    await start_looper()
    await sink.wait_for(1)
    [record] = await records(tutor.store)
    assert (record.thread_id, record.message_id, record.refused) == (thread.id, 1, None)
    assert (record.asker, record.place, record.model) == (ALICE, CLASS, "gpt-5.4-mini")
    assert record.assistant_id == thread.assistant_id and record.at == NOON
    sent = fake_openai.requests[0].body["messages"]
    words = sum(len(m["content"].split()) for m in sent)
    assert (record.prompt_tokens, record.completion_tokens, record.cached_tokens) == (words, 4, 3)
    assert not record.counted
    expected = ((words - 3) * 0.75 + 3 * 0.075 + 4 * 4.50) / 1e6
    assert record.cost_usd == pytest.approx(expected)
    [line] = await tutor.usage(NOON - timedelta(days=1), "model")
    assert (line.key, line.questions, line.tokens, line.refused) == (
        "gpt-5.4-mini",
        1,
        words + 4,
        0,
    )
    [by_assistant] = await tutor.usage(NOON - timedelta(days=1), "assistant")
    assert by_assistant.key == "Physics Tutor"


async def test_usage_is_counted_when_the_server_reports_none_and_unknown_models_have_no_price(
    tutor: Tutor, start_looper: StartLooper, sink: RecordingSink, fake_openai: FakeOpenAI
) -> None:
    fake_openai.reports_usage = False
    await question(tutor, "what is a photon", model="local-llama")
    await start_looper()
    await sink.wait_for(1)
    [record] = await records(tutor.store)
    answer = sink.delivered[0][1]
    counter = TokenCounter("local-llama")
    assert record.counted
    assert record.completion_tokens == counter.text(answer)
    assert record.prompt_tokens == counter.chat(fake_openai.requests[0].body["messages"])
    assert record.cost_usd is None
    [line] = await tutor.usage(NOON - timedelta(days=30), "user")
    assert (line.key, line.unpriced, line.priced) == (ALICE, 1, False)


async def test_a_spent_daily_budget_keeps_the_question_until_raised_and_retried(
    tutor: Tutor, start_looper: StartLooper, sink: RecordingSink, fake_openai: FakeOpenAI
) -> None:
    second = await refused_after(tutor, start_looper, "first question", "second question")
    said = sink.delivered[1][1]
    assert said.startswith("ERROR Your daily token budget is used up: ")
    assert "tokens of 1 tokens. It resets at 00:00 UTC (in 12 h 0 min)." in said
    assert len(fake_openai.requests) == 1  # never sent to the model
    stored = await tutor.thread(second.id)
    assert stored.failed and stored.last_error == said.removeprefix("ERROR ")
    [line] = await tutor.usage(NOON - timedelta(days=1), "user")
    assert (line.questions, line.refused) == (1, 1)

    await tutor.set_limit("user", 1_000_000, asker=ALICE)  # Alice's own limit
    assert await tutor.retry(second.id)
    await records(tutor.store, 3)
    assert sink.delivered[2] == (second.id, "An answer to: second question")
    assert len(fake_openai.requests) == 2
    [line] = await tutor.usage(NOON - timedelta(days=1), "user")
    assert (line.questions, line.refused) == (2, 1)


async def test_a_budget_used_exactly_refuses_and_one_token_more_does_not(
    tutor: Tutor, start_looper: StartLooper, sink: RecordingSink
) -> None:
    await question(tutor, "how long is a day")
    await start_looper()
    [first] = await records(tutor.store)
    taken = first.prompt_tokens + first.completion_tokens
    await tutor.set_limit("user", taken)
    refused = await question(tutor, "exactly at the limit")
    await records(tutor.store, 2)
    assert sink.delivered[1][1].startswith(
        f"ERROR Your daily token budget is used up: {taken:,} tokens of {taken:,} tokens."
    )
    await tutor.set_limit("user", taken + 1)
    assert await tutor.retry(refused.id)
    await records(tutor.store, 3)
    assert sink.delivered[2][1].startswith("An answer to: exactly at the limit")


async def test_a_daily_budget_starts_again_the_next_utc_day(
    tutor: Tutor, start_looper: StartLooper, sink: RecordingSink, clock: Clock
) -> None:
    refused = await refused_after(tutor, start_looper, "today", "still today")
    assert sink.delivered[1][1].startswith("ERROR Your daily token budget")
    clock.now = NOON + timedelta(hours=12)  # midnight
    assert await tutor.retry(refused.id)
    await sink.wait_for(3)
    assert sink.delivered[2][0] == refused.id
    assert sink.delivered[2][1].startswith(
        "An answer to: still today\n\n_(Your daily token budget is now used up ("
    )
    assert sink.delivered[2][1].endswith(
        " tokens of 1 tokens): new questions wait until it resets at 00:00 UTC (in 24 h 0 min).)_"
    )


async def test_channel_and_monthly_budgets_hold_for_everyone(
    tutor: Tutor, start_looper: StartLooper, sink: RecordingSink, clock: Clock
) -> None:
    await tutor.set_limit("channel", 1)
    await question(tutor, "alice in class", ALICE, CLASS)
    await start_looper()
    await records(tutor.store, 1)
    await question(tutor, "bob in class", BOB, CLASS)
    await sink.wait_for(2)
    assert sink.delivered[1][1].startswith("ERROR This channel's daily token budget is used up")
    await question(tutor, "bob in the lab", BOB, LAB)  # another channel: its own budget
    await records(tutor.store, 3)
    assert sink.delivered[2][1].startswith("An answer to: bob in the lab\n\n_(This channel's")

    await tutor.set_limit("channel", 0)  # none
    await tutor.set_limit("monthly", 0.000001)
    await question(tutor, "over the month", BOB, LAB)
    await records(tutor.store, 4)
    said = sink.delivered[3][1]
    assert said.startswith("ERROR This workspace's monthly budget is used up: $")
    assert "It resets on 01 December at 00:00 UTC." in said
    by_channel = {line.key: line for line in await tutor.usage(NOON, "channel")}
    assert (by_channel[CLASS].questions, by_channel[CLASS].refused) == (1, 1)
    assert (by_channel[LAB].questions, by_channel[LAB].refused) == (1, 1)


async def test_an_answer_that_nears_a_budget_says_so_and_the_note_is_not_stored(
    tutor: Tutor, start_looper: StartLooper, sink: RecordingSink
) -> None:
    await question(tutor, "the same question", ALICE)
    await start_looper()
    await records(tutor.store, 1)
    [first] = await records(tutor.store)
    taken = first.prompt_tokens + first.completion_tokens
    await tutor.set_limit("user", taken + 2, asker=BOB)
    thread = await question(tutor, "the same question", BOB)
    await records(tutor.store, 2)
    said = sink.delivered[1][1]
    share = taken / (taken + 2)
    assert said == (
        "An answer to: the same question\n\n"
        f"_(Your daily token budget: {share:.0%} used ({taken:,} tokens of {taken + 2:,} "
        "tokens); it resets at 00:00 UTC (in 12 h 0 min).)_"
    )
    stored = await tutor.messages(thread.id)
    assert stored[-1].content == "An answer to: the same question"


async def test_a_burst_overshoots_by_no_more_than_the_answers_in_flight_across_replicas(
    tutor: Tutor,
    start_looper: StartLooper,
    sink: RecordingSink,
    fake_openai: FakeOpenAI,
    store_url: str,
) -> None:
    await tutor.set_limit("user", 1)
    fake_openai.hold()
    try:
        await start_looper(concurrency=2)
        await start_looper(store_url, concurrency=2)  # a second replica, same database
        for n in range(20):
            await question(tutor, f"burst {n}")
        await asyncio.to_thread(fake_openai.wait_requests, 4)
    finally:
        fake_openai.release()
    await records(tutor.store, 20)
    answered = [text for _, text in sink.delivered if not text.startswith("ERROR")]
    assert len(answered) == len(fake_openai.requests) == 4
    [line] = await tutor.usage(NOON - timedelta(days=1), "user")
    assert (line.questions, line.refused) == (4, 16)


async def test_limits_are_checked_and_kept_in_the_store(tutor: Tutor, store: Store) -> None:
    with pytest.raises(InvalidInput, match="no budget 'weekly'"):
        await tutor.set_limit("weekly", 5)
    with pytest.raises(InvalidInput, match="only the daily token budget"):
        await tutor.set_limit("monthly", 5, asker=ALICE)
    with pytest.raises(InvalidInput, match="cannot be negative"):
        await tutor.set_limit("user", -1)
    await tutor.set_limit("user", 500)
    await tutor.set_limit("user", 900, asker=ALICE)
    elsewhere = Budgets(store, Defaults(user_daily_tokens=100, monthly_budget_usd=20))
    assert await elsewhere.limits(ALICE) == {
        "user_daily_tokens": 900,
        "channel_daily_tokens": 0,
        "monthly_budget_usd": 20,
    }
    assert (await elsewhere.limits(BOB))["user_daily_tokens"] == 500
    assert await elsewhere.own_limits() == {ALICE: 900}
    await tutor.set_limit("user", None)  # back to the setting
    assert (await elsewhere.limits(BOB))["user_daily_tokens"] == 100
    together = await asyncio.gather(elsewhere.limits(ALICE), elsewhere.limits(BOB))
    assert [t["user_daily_tokens"] for t in together] == [900, 100]


def test_prices_come_from_the_table_or_a_file(tmp_path: Path) -> None:
    folder = tmp_path
    (folder / "p.toml").write_text('["local-llama"]\ninput = 0.1\noutput = 0.2\n')
    (folder / "p.json").write_text(json.dumps({"gpt-5.4-mini": {"input": 1, "output": 2}}))
    (folder / "bad.toml").write_text('["x"]\ninput = -1\noutput = 1\n')
    toml, from_json = (
        Prices.from_file(str(folder / "p.toml")),
        Prices.from_file(str(folder / "p.json")),
    )
    assert toml.of("local-llama") == Price(input=0.1, output=0.2)
    assert toml.of("gpt-4o-2024-08-06") == BUILT_IN["gpt-4o"]  # a dated snapshot
    assert from_json.of("gpt-5.4-mini") == Price(input=1, output=2)
    assert Prices().of("no-such-model") is None
    with pytest.raises(PricesUnreadable, match=r"x\.input: Input should be greater than or equal"):
        Prices.from_file(str(folder / "bad.toml"))
    with pytest.raises(PricesUnreadable, match="cannot be read"):
        Prices.from_file(str(folder / "missing.toml"))


def test_tutor_usage_prints_a_table_csv_or_json(cli: Cli) -> None:
    tutor_asst = ChatCompletionPhysicsTutor(id="asst_physics")
    now = datetime.now(UTC)

    def used(model: str, days_ago: float, tokens: int, cost: float | None) -> UsageRecord:
        return UsageRecord(
            thread_id=f"thread_{model}_{days_ago}",
            message_id=1,
            at=now - timedelta(days=days_ago),
            assistant_id=tutor_asst.id,
            model=model,
            asker=ALICE,
            place=CLASS,
            prompt_tokens=tokens,
            completion_tokens=10,
            cost_usd=cost,
        )

    async def seed() -> None:
        store = await open_store(cli.env["TUTOR_DATABASE_URL"])
        usage = [
            used("gpt-5.4-mini", 1, 100, 0.5),
            used("gpt-5.4-mini", 2, 100, 0.25),
            used("local-llama", 3, 50, None),
            used("gpt-5.4-mini", 40, 1000, 9.0),  # outside the last 30 days
        ]
        await store.import_all(Snapshot(assistants=[tutor_asst], usage=usage))
        await store.close()

    asyncio.run(seed())
    lines = json.loads(cli.ok("usage", "--by", "model", "--format", "json"))
    assert [(x["key"], x["questions"], x["tokens"], x["cost_usd"]) for x in lines] == [
        ("gpt-5.4-mini", 2, 220, 0.75),
        ("local-llama", 1, 60, None),
    ]
    table = cli.ok("usage", "--by", "assistant", "--since", "2020-01-01").splitlines()
    assert table[0].split() == [
        "assistant", "answers", "refused", "prompt", "cached", "completion", "tokens", "cost"
    ]  # fmt: skip
    assert table[1].split() == [
        "Physics", "Tutor", "4", "0", "1,250", "0", "40", "1,290", "$9.7500", "+1", "unpriced"
    ]  # fmt: skip
    csv_lines = cli.ok("usage", "--since", "7d", "--format", "csv").splitlines()
    assert csv_lines == [
        "key,questions,refused,prompt_tokens,cached_tokens,completion_tokens,tokens,cost_usd,unpriced",
        f"{ALICE},3,0,250,0,30,280,0.75,1",
    ]
    refused = cli.run("usage", "--since", "2026-13-01")
    assert refused.returncode == 1
    assert refused.stderr == (
        "tutor: --since: '2026-13-01' is not today, Nd (7d, 30d) or a date (YYYY-MM-DD)\n"
    )
