"""Course materials on both backends: the store's full-text search finds the passage that
answers a question in a 200-page course, the looper puts what fits the budget in the system
message (as reference for the tutor only), and the coach style reaches the system prompt."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bench.course import Course, course, question_set
from fakes.openai_server import API_KEY, FakeOpenAI, LocalModel
from looper.completion import Completer, make_client
from looper.context import COACH
from looper.core import InvalidInput, Tutor
from looper.loop import Looper
from looper.materials import HEADER, Reference, query_words
from looper.models import BaseAssistant
from looper.store import NotFound, Store
from looper.tokens import TokenCounter
from tests.harness import RecordingSink

COUNTER = TokenCounter("gpt-5")


@pytest.fixture(scope="module")
def big_course() -> Course:
    return course()


@pytest.fixture
async def tutor(store: Store) -> Tutor:
    return Tutor(store, "gpt-5-mini")


async def with_course(tutor: Tutor, made: Course) -> BaseAssistant:
    assistant = await tutor.add_assistant("Geography", "You teach geography.")
    await tutor.add_material(assistant.id, "course.md", made.text.encode())
    return assistant


async def test_the_passage_holding_the_answer_ranks_first(
    tutor: Tutor, store: Store, big_course: Course
) -> None:
    assistant = await with_course(tutor, big_course)
    reference = Reference(store)
    questions = question_set(big_course)
    assert len(questions) == 30
    for question in questions:
        for asked in (question.text, f"Hi! Could you remind me: {question.text.lower()} Thanks"):
            found = await reference.passages(assistant.id, asked)
            assert found, asked
            assert question.answer in found[0].content, asked


async def test_search_takes_any_text_and_stays_within_its_assistant(
    tutor: Tutor, store: Store, big_course: Course
) -> None:
    assistant = await with_course(tutor, big_course)
    other = await tutor.add_assistant("Other", "Something else.")
    question = big_course.questions[0]
    assert await store.search_passages(other.id, query_words(question.text), 5) == []
    # Search syntax of both databases is only words here: nothing breaks the query.
    nasty = f'"{question.text}" AND (NOT* ^col: NEAR(x) -{{}} \' & | ! <-> :*'
    found = await Reference(store).passages(assistant.id, nasty)
    assert question.answer in found[0].content
    assert await store.search_passages(assistant.id, query_words("?!* \"'"), 5) == []


async def test_reference_keeps_to_the_budget_and_small_materials_go_whole(
    tutor: Tutor, store: Store, big_course: Course
) -> None:
    assistant = await with_course(tutor, big_course)
    question = big_course.questions[10]
    for budget in (2000, 600):
        block = await Reference(store, budget).for_question(assistant.id, question.text)
        assert block.startswith(HEADER)
        assert question.answer in block
        assert COUNTER.text(block) <= budget
    assert await Reference(store, 0).for_question(assistant.id, question.text) == ""

    small = await tutor.add_assistant("Small", "Short notes.")
    await tutor.add_material(small.id, "key.md", b"Answer key: question 1 is 42.")
    await tutor.add_material(small.id, "rubric.txt", b"Full marks need units.")
    block = await Reference(store, 2000).for_question(small.id, "nothing in common")
    assert '<material name="key.md">\nAnswer key: question 1 is 42.\n</material>' in block
    assert '<material name="rubric.txt">\nFull marks need units.\n</material>' in block


async def test_materials_are_listed_removed_and_checked(tutor: Tutor, store: Store) -> None:
    assistant = await tutor.add_assistant("Notes", "Teach.")
    added = await tutor.add_material("notes", "notes.md", b"# Notes\n\nOhm's law: V = IR.")
    assert (added.name, added.size) == ("notes.md", 27)
    _, listed = await tutor.materials(assistant.id)
    assert [m.id for m in listed] == [added.id]
    assert await Reference(store).for_question(assistant.id, "ohm") != ""
    with pytest.raises(InvalidInput, match="not a readable PDF"):
        await tutor.add_material(assistant.id, "broken.pdf", b"%PDF-1.4 not really")
    with pytest.raises(InvalidInput, match="not text"):
        await tutor.add_material(assistant.id, "photo.png", b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(InvalidInput, match="holds no text"):
        await tutor.add_material(assistant.id, "empty.md", b"  \n")
    with pytest.raises(NotFound):
        await tutor.add_material("nobody", "notes.md", b"text")
    with pytest.raises(NotFound):
        await tutor.remove_material(assistant.id, "mat_unknown")
    removed = await tutor.remove_material(assistant.id, added.id)
    assert removed.id == added.id
    assert (await tutor.materials(assistant.id))[1] == []
    assert await store.search_passages(assistant.id, ["ohm"], 5) == []
    assert await Reference(store).for_question(assistant.id, "ohm") == ""


async def test_totals_asked_together_are_each_their_own_assistants(
    tutor: Tutor, store: Store
) -> None:
    one = await tutor.add_assistant("One", "Teach.")
    two = await tutor.add_assistant("Two", "Teach.")
    await tutor.add_material(one.id, "a.md", b"Ohm's law: V = IR.")
    await tutor.add_material(one.id, "b.md", b"Power: P = VI.")
    await tutor.add_material(two.id, "c.md", b"Kirchhoff's laws.")
    alone = [await store.material_tokens(a) for a in (one.id, two.id, "nobody")]
    together = await asyncio.gather(*(store.material_tokens(a) for a in (one.id, two.id, "nobody")))
    assert together == alone and alone[0] > alone[1] > 0 and alone[2] == 0


async def test_style_is_stored_and_checked(tutor: Tutor, store: Store) -> None:
    coach = await tutor.add_assistant("Coach", "Teach.", style="coach")
    assert (await store.get_assistant(coach.id)).style == "coach"
    edited, _ = await tutor.edit_assistant("Coach", style="direct")
    assert (await store.get_assistant(coach.id)).style == edited.style == "direct"
    with pytest.raises(InvalidInput, match="not a style"):
        await tutor.edit_assistant("Coach", style="socratic")
    assert (await tutor.add_assistant()).style == "direct"


@pytest.fixture
async def looper(store: Store, fake_openai: FakeOpenAI) -> AsyncIterator[Looper]:
    client = make_client(API_KEY, fake_openai.base_url, 10)
    made = Looper(store, Completer(client, base_delay=0.01), RecordingSink(), poll_interval=30)
    task = asyncio.create_task(made.run())
    yield made
    made.stop()
    await asyncio.wait_for(task, 10)


async def test_the_model_reads_the_passages_and_the_coach_style_in_its_system_message(
    tutor: Tutor, looper: Looper, fake_openai: FakeOpenAI, big_course: Course
) -> None:
    assistant = await with_course(tutor, big_course)
    await tutor.edit_assistant(assistant.id, style="coach")
    question = big_course.questions[100]
    thread = await tutor.add_thread(assistant.id)
    await tutor.ask(question.text, thread.id)
    await asyncio.to_thread(fake_openai.wait_requests, 1, 10.0, True)
    system, asked = fake_openai.requests[0].body["messages"]
    assert asked == {"role": "user", "content": question.text}
    assert system["role"] == "system"
    assert system["content"].startswith(f"You teach geography.\n\n{COACH}\n\n{HEADER}")
    assert question.answer in system["content"]
    assert COUNTER.text(system["content"]) <= 2000 + COUNTER.text(f"You teach geography.{COACH}")


async def test_a_direct_assistant_without_materials_sends_its_instructions_alone(
    tutor: Tutor, looper: Looper, fake_openai: FakeOpenAI
) -> None:
    assistant = await tutor.add_assistant("Plain", "Answer plainly.")
    thread = await tutor.add_thread(assistant.id)
    await tutor.ask("What is 2 + 2?", thread.id)
    await asyncio.to_thread(fake_openai.wait_requests, 1, 10.0, True)
    system = fake_openai.requests[0].body["messages"][0]
    assert system == {"role": "system", "content": "Answer plainly."}


async def test_a_small_window_takes_a_quarter_of_its_room_in_materials(
    tutor: Tutor, store: Store, big_course: Course
) -> None:
    local = FakeOpenAI(local_model=LocalModel(4096)).start()  # a model tutor does not know
    client = make_client(API_KEY, local.base_url, 10)
    completer = Completer(client, max_completion_tokens=1024, base_delay=0.01)
    looper = Looper(store, completer, RecordingSink(), poll_interval=30)
    task = asyncio.create_task(looper.run())
    try:
        assistant = await with_course(tutor, big_course)
        question = big_course.questions[200]
        thread = await tutor.add_thread(assistant.id, "local-model")
        await tutor.ask(question.text, thread.id)
        await asyncio.to_thread(local.wait_requests, 1, 10.0, True)
        [request] = local.requests
        assert request.status == 200
        system = request.body["messages"][0]["content"]
        room = await completer.prompt_room("local-model")
        assert question.answer in system
        assert COUNTER.text(system.removeprefix("You teach geography.\n\n")) <= room // 4
    finally:
        looper.stop()
        await asyncio.wait_for(task, 10)
        local.stop()
