"""The looper in-process: real store, real openai client, the fake server, a recording sink."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from fakes.openai_server import API_KEY, FakeOpenAI
from looper.completion import Completer, make_client
from looper.core import Tutor
from looper.loop import Looper
from looper.models import ChatCompletionPhysicsTutor
from looper.store import Store
from tests.harness import RecordingSink

PHYSICS = ChatCompletionPhysicsTutor().instructions


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
async def tutor(store: Store) -> Tutor:
    return Tutor(store, "gpt-5-mini")


MakeLooper = Callable[..., Looper]


@pytest.fixture
async def make_looper(
    store: Store, fake_openai: FakeOpenAI, sink: RecordingSink
) -> AsyncIterator[MakeLooper]:
    """Loopers on the test's store; each is drained and its client closed at the end."""
    made: list[Looper] = []

    def make(**options: float) -> Looper:
        client = make_client(API_KEY, fake_openai.base_url, 10)
        looper = Looper(
            store,
            Completer(client, base_delay=0.01),
            sink,
            concurrency=int(options.get("concurrency", 64)),
            poll_interval=30,
            grace_seconds=options.get("grace_seconds", 5),
        )
        made.append(looper)
        return looper

    yield make
    for looper in made:
        looper.stop()
        await looper.drain()
        await looper.completer.close()


@pytest.fixture
async def running(make_looper: MakeLooper) -> AsyncIterator[Looper]:
    looper = make_looper()
    task = asyncio.create_task(looper.run())
    yield looper
    looper.stop()
    await asyncio.wait_for(task, 10)


async def physics_thread(tutor: Tutor, model: str | None = None) -> str:
    assistant = await tutor.add_assistant()
    return (await tutor.add_thread(assistant.id, model)).id


async def test_wakes_at_once_and_answers_with_the_system_prompt(
    tutor: Tutor, running: Looper, sink: RecordingSink, fake_openai: FakeOpenAI
) -> None:
    thread_id = await physics_thread(tutor)
    await tutor.ask("How did the universe begin?")
    await sink.wait_for(1, timeout=5)  # the poll interval is 30 s: this was the in-process wake
    await asyncio.gather(*running.answering)  # delivered, now committed too
    assert sink.delivered == [(thread_id, "An answer to: How did the universe begin?")]
    sent = fake_openai.requests[0].body["messages"]
    assert sent == [
        {"role": "system", "content": PHYSICS},
        {"role": "user", "content": "How did the universe begin?"},
    ]
    stored = await tutor.messages(thread_id)
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[1].metadata == {"ref": "ref-0", "answers": "1"}
    assert (await tutor.threads.get(thread_id)).hwm == 1


async def test_two_quick_questions_get_one_answer(
    tutor: Tutor, make_looper: MakeLooper, fake_openai: FakeOpenAI, sink: RecordingSink
) -> None:
    thread_id = await physics_thread(tutor)
    await tutor.ask("what models?")
    await tutor.ask("what experiments?")
    looper = make_looper()
    assert await looper.tick() == 1
    await sink.wait_for(1)
    await asyncio.gather(*looper.answering)
    assert len(fake_openai.requests) == 1
    users = [m["content"] for m in fake_openai.requests[0].body["messages"][1:]]
    assert users == ["what models?", "what experiments?"]
    stored = await tutor.messages(thread_id)
    assert [(m.role, m.metadata.get("answers")) for m in stored] == [
        ("user", None),
        ("user", None),
        ("assistant", "2"),
    ]


async def test_question_during_an_answer_is_answered_next_in_order(
    tutor: Tutor, running: Looper, sink: RecordingSink, fake_openai: FakeOpenAI
) -> None:
    fake_openai.hold()
    thread_id = await physics_thread(tutor)
    await tutor.ask("q1")
    await asyncio.to_thread(fake_openai.wait_requests, 1)
    await tutor.ask("q2")  # while the answer to q1 is held in flight
    fake_openai.release()
    await sink.wait_for(2)
    await asyncio.gather(*running.answering)
    second = fake_openai.requests[1].body["messages"]
    assert [m["content"] for m in second[1:]] == ["q1", "An answer to: q1", "q2"]
    stored = await tutor.messages(thread_id)
    assert [m.content for m in stored] == ["q1", "q2", "An answer to: q1", "An answer to: q2"]


async def test_many_threads_are_answered_concurrently(
    tutor: Tutor, running: Looper, sink: RecordingSink, fake_openai: FakeOpenAI
) -> None:
    fake_openai.hold()
    assistant = await tutor.add_assistant()
    threads = [(await tutor.add_thread(assistant.id)).id for _ in range(20)]
    for index, thread_id in enumerate(threads):
        await tutor.ask(f"question {index}", thread_id)
    await asyncio.to_thread(fake_openai.wait_requests, 20)  # all asked before any answered
    fake_openai.release()
    await sink.wait_for(20)
    assert fake_openai.max_in_flight == 20
    assert sorted(sink.delivered) == sorted(
        (t, f"An answer to: question {i}") for i, t in enumerate(threads)
    )


async def test_concurrency_limit_is_respected(
    tutor: Tutor, make_looper: MakeLooper, fake_openai: FakeOpenAI, sink: RecordingSink
) -> None:
    fake_openai.hold()
    assistant = await tutor.add_assistant()
    for index in range(6):
        thread = await tutor.add_thread(assistant.id)
        await tutor.ask(f"q{index}", thread.id)
    looper = make_looper(concurrency=2)
    task = asyncio.create_task(looper.run())
    await asyncio.to_thread(fake_openai.wait_requests, 2)
    assert (len(looper.answering), fake_openai.in_flight) == (2, 2)  # the other 4 wait
    fake_openai.release()
    await sink.wait_for(6)
    looper.stop()
    await task
    assert fake_openai.max_in_flight == 2


async def test_retired_model_stores_an_error_and_does_not_retry_busily(
    tutor: Tutor, make_looper: MakeLooper, fake_openai: FakeOpenAI, sink: RecordingSink
) -> None:
    thread_id = await physics_thread(tutor, model="gpt-3.5-turbo")
    await tutor.ask("How did the universe begin?")
    looper = make_looper()
    await looper.tick()
    await sink.wait_for(1)
    await asyncio.gather(*looper.answering)
    assert sink.delivered[0][1].startswith("ERROR The model `gpt-3.5-turbo` is retired")
    for _ in range(3):
        assert await looper.tick() == 0
    assert len(fake_openai.requests) == 1
    thread = await tutor.threads.get(thread_id)
    assert thread.last_error and "retired" in thread.last_error
    assert [m.content for m in await tutor.messages(thread_id)] == ["How did the universe begin?"]
    assert await tutor.retry(thread_id)
    assert await looper.tick() == 1


async def test_stop_hands_back_unfinished_answers(
    tutor: Tutor, make_looper: MakeLooper, fake_openai: FakeOpenAI, sink: RecordingSink
) -> None:
    fake_openai.hold()
    thread_id = await physics_thread(tutor)
    await tutor.ask("slow one")
    looper = make_looper(grace_seconds=0.1)
    task = asyncio.create_task(looper.run())
    await asyncio.to_thread(fake_openai.wait_requests, 1)
    looper.stop()
    await asyncio.wait_for(task, 2)
    thread = await tutor.threads.get(thread_id)
    assert thread.pending and thread.reply_ref == "ref-0"
    assert await tutor.store.lease_owners() == []
    fake_openai.release()
    again = make_looper()
    assert await again.tick() == 1
    await sink.wait_for(1)
    assert sink.opened[-1].resumed_ref == "ref-0"  # the same reply is completed, not a new one


async def test_an_edit_reaches_a_running_looper(
    tutor: Tutor, running: Looper, sink: RecordingSink
) -> None:
    running.assistant_seconds = 0.0  # every answer reads its assistant afresh
    thread_id = await physics_thread(tutor)
    await tutor.ask("first?", thread_id)
    await sink.wait_for(1, timeout=5)
    await asyncio.gather(*running.answering)
    assistant_id = (await tutor.thread(thread_id)).assistant_id
    await tutor.edit_assistant(assistant_id, name="Sky Guide", instructions="Be brief.")
    await tutor.ask("second?", thread_id)
    await sink.wait_for(2, timeout=5)
    assert [job.assistant.name for job in sink.opened] == ["Physics Tutor", "Sky Guide"]
    assert sink.opened[-1].assistant.instructions == "Be brief."
