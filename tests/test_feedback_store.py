"""Issue 11 in the engine, on both backends: editing assistants, votes and comments, the
report, and edits reaching a running looper."""

from __future__ import annotations

from datetime import timedelta

import pytest

from looper.core import InvalidInput, Tutor, duration
from looper.models import ChatCompletionPhysicsTutor, ChatCompletionThread, Feedback, utcnow
from looper.store import NotFound, Store, open_store
from tests.harness import new_store_url


async def physics_thread(store: Store) -> ChatCompletionThread:
    tutor = await store.add_assistant(ChatCompletionPhysicsTutor())
    thread = ChatCompletionThread(assistant_id=tutor.id, chat_completion_model="gpt-5-mini")
    return await store.add_thread(thread)


async def test_an_edit_changes_only_what_is_given(store: Store) -> None:
    tutor = Tutor(store, "gpt-5-mini")
    added = await tutor.add_assistant()
    edited, moved = await tutor.edit_assistant(
        "physics tutor", name=" Sky  Guide ", icon=":telescope:", prompts=["Why?", "How far?"]
    )
    assert (edited.name, edited.icon, edited.prompts, moved) == (
        "Sky Guide",
        ":telescope:",
        ["Why?", "How far?"],
        0,
    )
    stored = await store.get_assistant(added.id)
    assert stored == edited and stored.instructions == added.instructions
    assert stored.created_at == added.created_at
    edited, _ = await tutor.edit_assistant(added.id, icon="https://example.org/a.png")
    assert (await store.get_assistant(added.id)).icon == "https://example.org/a.png"
    with pytest.raises(NotFound):
        await store.update_assistant(edited.model_copy(update={"id": "asst_nobody"}))


@pytest.mark.parametrize(
    ("change", "refused"),
    [
        ({"icon": "telescope"}, "is not an icon"),
        ({"icon": "javascript:alert(1)"}, "is not an icon"),
        ({"icon": "https://"}, "is not an icon"),
        ({"prompts": ["a"] * 5}, "5 prompts"),
        ({"prompts": ["a", " "]}, "a prompt is empty"),
        ({"prompts": ["x" * 151]}, "at most 150"),
        ({"name": "  "}, "the name is empty"),
        ({"instructions": " "}, "needs instructions"),
        ({"model": " "}, "the model name is empty"),
        ({}, "nothing to change"),
        ({"name": "New", "icon": "bad"}, "is not an icon"),  # nothing stored: not even the name
    ],
)
async def test_bad_edits_store_nothing(
    store: Store, change: dict[str, object], refused: str
) -> None:
    tutor = Tutor(store, "gpt-5-mini")
    added = await tutor.add_assistant()
    with pytest.raises(InvalidInput, match=refused):
        await tutor.edit_assistant(added.id, **change)  # type: ignore[arg-type]
    assert (await store.get_assistant(added.id)).model_dump() == added.model_dump()


async def test_a_second_vote_replaces_the_first_and_comments_stay_with_downs(
    store: Store,
) -> None:
    tutor = Tutor(store, "gpt-5-mini")
    thread = await physics_thread(store)
    since = utcnow() - timedelta(minutes=1)
    await tutor.vote(thread.id, 1, "slack:U1", "down", "C1/1.000001", "https://x/p1")
    assert await tutor.comment(thread.id, 1, "slack:U1", "  wrong \n year ")
    await tutor.vote(thread.id, 1, "slack:U1", "down")  # the same vote again: comment kept
    [down] = await store.latest_down(since, 5)
    assert (down.comment, down.message_ref, down.link) == (
        "wrong year",
        "C1/1.000001",
        "https://x/p1",
    )
    await tutor.vote(thread.id, 1, "slack:U1", "up")  # changed their mind: comment goes
    assert not await tutor.comment(thread.id, 1, "slack:U1", "late")  # no 👎 to comment on
    await tutor.vote(thread.id, 1, "slack:U2", "down")
    await tutor.vote(thread.id, 3, "slack:U1", "down")
    assert await store.votes_since(since) == {thread.assistant_id: {"up": 1, "down": 2}}
    [report] = await tutor.feedback(since)
    assert (report.assistant.id, report.up, report.down) == (thread.assistant_id, 1, 2)
    assert [(f.answers, f.person, f.comment) for f in report.latest_down] == [
        (3, "slack:U1", None),
        (1, "slack:U2", None),
    ]
    assert await tutor.feedback(utcnow() + timedelta(minutes=1)) == []
    [only] = await tutor.feedback(since, "Physics Tutor", latest=1)
    assert len(only.latest_down) == 1
    with pytest.raises(NotFound):
        await tutor.vote("thread_nobody", 1, "slack:U1", "up")


async def test_feedback_moves_with_the_store(store: Store, tmp_path: object) -> None:
    thread = await physics_thread(store)
    vote = Feedback(thread_id=thread.id, answers=1, person="p", assistant_id=thread.assistant_id,
                    vote="down", comment="why")  # fmt: skip
    await store.record_vote(vote)
    snapshot = await store.export_all()
    assert snapshot.feedback == [vote]
    other = await open_store(new_store_url("sqlite", tmp_path))  # type: ignore[arg-type]
    try:
        await other.import_all(snapshot)
        assert (await other.export_all()).feedback == [vote]
    finally:
        await other.close()


def test_durations() -> None:
    assert duration("7d") == timedelta(days=7) and duration(" 24H ") == timedelta(hours=24)
    assert duration("2w") == timedelta(weeks=2) and duration("30m") == timedelta(minutes=30)
    for bad in ("", "7", "d", "0d", "7y", "-1d"):
        with pytest.raises(InvalidInput, match="is not a duration"):
            duration(bad)
