"""The store conformance suite: every backend must pass it unchanged (see `store_url`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from looper.core import Tutor
from looper.models import (
    BaseAssistant,
    ChatCompletionPhysicsTutor,
    ChatCompletionThread,
    Message,
    NewMessage,
    utcnow,
)
from looper.store import Conflict, LeaseLost, NotFound, SchemaTooNew, Store, open_store
from tests.harness import new_store_url


async def physics_thread(
    store: Store, key: str | None = None, **metadata: str
) -> ChatCompletionThread:
    """A thread of a new Physics Tutor, filed under `key` with the front end's `metadata`."""
    assistant = await store.add_assistant(ChatCompletionPhysicsTutor())
    thread = ChatCompletionThread(
        assistant_id=assistant.id,
        chat_completion_model="gpt-5-mini",
        metadata=metadata,
        external_key=key,
    )
    return await store.add_thread(thread)


async def claim_one(
    store: Store, owner: str = "looper-a", lease: float = 30
) -> ChatCompletionThread:
    claims = await store.claim_pending(owner, 10, lease)
    assert len(claims) == 1
    return claims[0].thread


async def test_assistants_round_trip(store: Store) -> None:
    tutor = await store.add_assistant(ChatCompletionPhysicsTutor())
    other = await store.add_assistant(BaseAssistant(name="Poet", instructions="Rhyme.", model="m"))
    listed = await store.list_assistants()
    assert [a.id for a in listed] == [tutor.id, other.id]
    assert listed[0].instructions.startswith("You are an acclaimed Physics Tutor")
    assert (await store.get_assistant(other.id)).model == "m"
    with pytest.raises(NotFound):
        await store.get_assistant("asst_missing")


async def test_threads_newest_first_and_found_by_key(store: Store) -> None:
    first = await physics_thread(store)
    second = await physics_thread(
        store, "slack:C1:111.222", slack_team="T1", slack_channel="C1", slack_thread_ts="111.222"
    )
    assert [t.id for t in await store.list_threads()] == [second.id, first.id]
    assert [t.id for t in await store.list_threads(1)] == [second.id]
    found = await store.find_thread("slack:C1:111.222")
    assert found is not None and found.id == second.id
    assert found.metadata == {
        "slack_team": "T1",
        "slack_channel": "C1",
        "slack_thread_ts": "111.222",
    }
    assert await store.find_thread("slack:C1:999") is None
    with pytest.raises(NotFound):
        await store.get_thread("thread_missing")


async def test_one_thread_per_external_place(store: Store) -> None:
    await physics_thread(store, "slack:C1:1.1", slack_channel="C1", slack_thread_ts="1.1")
    with pytest.raises(Conflict):
        await physics_thread(store, "slack:C1:1.1", slack_channel="C1", slack_thread_ts="1.1")


async def test_thread_needs_a_known_assistant(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.add_thread(
            ChatCompletionThread(assistant_id="asst_missing", chat_completion_model="m")
        )
    assert await store.list_threads() == []


async def test_messages_numbered_per_thread_in_order(store: Store) -> None:
    one = await physics_thread(store)
    two = await physics_thread(store)
    a, _ = await store.add_user_message(one.id, "first", {"slack_ts": "1.0"})
    b, _ = await store.add_user_message(two.id, "other")
    c, _ = await store.add_user_message(one.id, "second")
    assert (a.id, b.id, c.id) == (1, 1, 2)
    listed = await store.list_messages(one.id)
    assert [(m.id, m.role, m.content) for m in listed] == [
        (1, "user", "first"),
        (2, "user", "second"),
    ]
    assert listed[0].metadata == {"slack_ts": "1.0"}
    thread = await store.get_thread(one.id)
    assert (thread.message_count, thread.last_user_id, thread.hwm) == (2, 2, 0)
    with pytest.raises(NotFound):
        await store.add_user_message("thread_missing", "hello")
    with pytest.raises(NotFound):
        await store.list_messages("thread_missing")


async def test_external_id_deduplicates(store: Store) -> None:
    thread = await physics_thread(store)
    first, added = await store.add_user_message(thread.id, "hi", external_id="1700.1")
    again, added_again = await store.add_user_message(thread.id, "hi", external_id="1700.1")
    assert added and not added_again and again.id == first.id
    assert len(await store.list_messages(thread.id)) == 1


async def test_claim_leases_pending_threads_only(store: Store) -> None:
    idle = await physics_thread(store)
    busy = await physics_thread(store)
    await store.add_user_message(busy.id, "question")
    assert (await store.get_thread(idle.id)).pending is False
    [claim] = await store.claim_pending("a", 10, 30)
    assert claim.thread.id == busy.id and claim.thread.last_user_id == 1
    assert [(m.id, m.role, m.content) for m in claim.messages] == [(1, "user", "question")]
    assert await store.claim_pending("b", 10, 30) == []  # leased to a
    assert await store.lease_owners() == ["a"]


async def test_claim_respects_limit_and_age(store: Store) -> None:
    threads = [await physics_thread(store) for _ in range(3)]
    for thread in threads:
        await store.add_user_message(thread.id, "q")
    first = await store.claim_pending("a", 2, 30)
    rest = await store.claim_pending("b", 2, 30)
    assert [c.thread.id for c in first] == [t.id for t in threads[:2]]
    assert [c.thread.id for c in rest] == [threads[2].id]


async def test_expired_lease_is_taken_over(store: Store) -> None:
    thread = await physics_thread(store)
    await store.add_user_message(thread.id, "q")
    await claim_one(store, "a", lease=0.05)
    await asyncio.sleep(0.1)  # a lease is wall-clock time by definition
    assert (await claim_one(store, "b")).id == thread.id
    with pytest.raises(LeaseLost):
        await store.commit_answer(thread.id, "a", 1, "late answer")
    assert not await store.renew_lease(thread.id, "a", 30)
    assert await store.renew_lease(thread.id, "b", 30)


async def test_commit_stores_answer_and_advances_hwm_together(store: Store) -> None:
    thread = await physics_thread(store)
    await store.add_user_message(thread.id, "q1")
    await store.add_user_message(thread.id, "q2")
    await claim_one(store, "a")
    await store.reserve_reply(thread.id, "a", 2, "ts-1")
    reserved = await store.get_thread(thread.id)
    assert (reserved.reply_upto, reserved.reply_ref) == (2, "ts-1")
    answer = await store.commit_answer(thread.id, "a", 2, "both answered", {"answers": "2"})
    assert (answer.id, answer.role, answer.metadata) == (3, "assistant", {"answers": "2"})
    done = await store.get_thread(thread.id)
    assert (done.hwm, done.settled, done.pending, done.reply_ref) == (2, 2, False, None)
    assert await store.claim_pending("a", 10, 30) == []
    assert await store.lease_owners() == []


async def test_question_during_answer_stays_pending(store: Store) -> None:
    thread = await physics_thread(store)
    await store.add_user_message(thread.id, "q1")
    await claim_one(store, "a")
    await store.add_user_message(thread.id, "q2 while answering")
    await store.commit_answer(thread.id, "a", 1, "a1")
    again = await claim_one(store, "a")
    assert (again.hwm, again.last_user_id) == (1, 2)


async def test_lost_lease_writes_nothing(store: Store) -> None:
    thread = await physics_thread(store)
    await store.add_user_message(thread.id, "q")
    await claim_one(store, "a")
    for write in (
        store.commit_answer(thread.id, "b", 1, "not mine"),
        store.reserve_reply(thread.id, "b", 1, "x"),
        store.record_failure(thread.id, "b", 1, "not mine"),
    ):
        with pytest.raises(LeaseLost):
            await write
    assert [m.role for m in await store.list_messages(thread.id)] == ["user"]
    assert (await store.get_thread(thread.id)).hwm == 0


async def test_reservations_made_together_each_keep_to_their_own_lease(store: Store) -> None:
    threads = [await physics_thread(store) for _ in range(3)]
    for thread in threads:
        await store.add_user_message(thread.id, "q")
    assert len(await store.claim_pending("a", 10, 30)) == 3
    results = await asyncio.gather(
        store.reserve_reply(threads[0].id, "a", 1, "ts-0"),
        store.reserve_reply(threads[1].id, "b", 1, "ts-1"),  # not b's
        store.reserve_reply(threads[2].id, "a", 1, "ts-2"),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], LeaseLost)
    refs = [(await store.get_thread(t.id)).reply_ref for t in threads]
    assert refs == ["ts-0", None, "ts-2"]


async def test_answers_committed_together_each_keep_to_their_own_lease(store: Store) -> None:
    threads = [await physics_thread(store) for _ in range(3)]
    for thread in threads:
        await store.add_user_message(thread.id, "q1")
    await store.add_user_message(threads[2].id, "q2")
    assert len(await store.claim_pending("a", 10, 30)) == 3
    results = await asyncio.gather(
        store.commit_answer(threads[0].id, "a", 1, "a0"),
        store.commit_answer(threads[1].id, "b", 1, "not b's"),
        store.commit_answer(threads[2].id, "a", 2, "a2", {"answers": "2"}),
        return_exceptions=True,
    )
    assert isinstance(results[1], LeaseLost)
    assert [(m.id, m.content) for m in results if isinstance(m, Message)] == [(2, "a0"), (3, "a2")]
    contents = [[m.content for m in await store.list_messages(t.id)] for t in threads]
    assert contents == [["q1", "a0"], ["q1"], ["q1", "q2", "a2"]]
    hwms = [(await store.get_thread(t.id)).hwm for t in threads]
    assert hwms == [1, 0, 2]
    assert await store.lease_owners() == ["a"]  # thread 1 is still a's: b could not commit it


async def test_two_attempts_at_one_answer_committed_together_store_one(store: Store) -> None:
    thread = await physics_thread(store)
    await store.add_user_message(thread.id, "q1")
    await claim_one(store, "a")
    first, second = await asyncio.gather(
        store.commit_answer(thread.id, "a", 1, "first"),
        store.commit_answer(thread.id, "a", 1, "second"),
        return_exceptions=True,
    )
    assert isinstance(first, Message) and isinstance(second, LeaseLost)
    stored = [(m.id, m.content) for m in await store.list_messages(thread.id)]
    assert stored == [(1, "q1"), (2, "first")]
    assert (await store.get_thread(thread.id)).message_count == 2


async def test_one_bad_item_fails_alone_in_its_batch(store: Store) -> None:
    taken = await physics_thread(store, key="C1:1.0")
    assistant = await store.get_assistant(taken.assistant_id)
    waiting = [
        await store.add_thread(
            ChatCompletionThread(
                assistant_id=assistant.id, chat_completion_model="m", awaiting_place=True
            ),
            NewMessage(content="q"),
        )
        for _ in range(2)
    ]
    assert len(await store.claim_pending("a", 10, 30)) == 2
    clash, fine = await asyncio.gather(
        store.place_thread(waiting[0].id, "a", {"channel": "C1"}, "C1:1.0"),  # taken
        store.place_thread(waiting[1].id, "a", {"channel": "C2"}, "C2:1.0"),
        return_exceptions=True,
    )
    assert isinstance(clash, Exception) and not isinstance(clash, LeaseLost)
    assert isinstance(fine, ChatCompletionThread) and fine.external_key == "C2:1.0"


async def test_threads_placed_together_each_keep_to_their_own_lease(store: Store) -> None:
    assistant = await store.add_assistant(ChatCompletionPhysicsTutor())
    first = NewMessage(content="q")
    waiting = [
        await store.add_thread(
            ChatCompletionThread(
                assistant_id=assistant.id, chat_completion_model="m", awaiting_place=True
            ),
            first,
        )
        for _ in range(2)
    ]
    assert len(await store.claim_pending("a", 10, 30)) == 2
    mine, theirs = await asyncio.gather(
        store.place_thread(waiting[0].id, "a", {"channel": "C1"}, "C1:1.0"),
        store.place_thread(waiting[1].id, "b", {"channel": "C2"}, "C2:1.0"),
        return_exceptions=True,
    )
    assert isinstance(mine, ChatCompletionThread) and isinstance(theirs, LeaseLost)
    assert (mine.metadata, mine.external_key) == ({"channel": "C1"}, "C1:1.0")
    assert not mine.awaiting_place
    assert mine.pending and (await store.find_thread("C1:1.0")) == mine
    assert (await store.get_thread(waiting[1].id)).awaiting_place


async def test_failure_settles_without_busy_retry_and_retry_reopens(store: Store) -> None:
    thread = await physics_thread(store)
    await store.add_user_message(thread.id, "q")
    assert not await store.retry(thread.id)  # waiting, not failed
    await claim_one(store, "a")
    await store.record_failure(thread.id, "a", 1, "model retired")
    failed = await store.get_thread(thread.id)
    assert (failed.last_error, failed.hwm, failed.pending) == ("model retired", 0, False)
    assert await store.claim_pending("a", 10, 30) == []
    assert [m.content for m in await store.list_messages(thread.id)] == ["q"]  # kept
    assert await store.retry(thread.id)
    reopened = await claim_one(store, "a")
    assert reopened.last_error is None
    await store.commit_answer(thread.id, "a", 1, "answer")
    assert not await store.retry(thread.id)  # nothing left to retry


async def test_new_question_after_failure_is_pending(store: Store) -> None:
    thread = await physics_thread(store)
    await store.add_user_message(thread.id, "q")
    await claim_one(store, "a")
    await store.record_failure(thread.id, "a", 1, "boom")
    await store.add_user_message(thread.id, "q again")
    assert (await claim_one(store, "a")).last_user_id == 2


async def test_release_hands_back_with_reservation(store: Store) -> None:
    thread = await physics_thread(store)
    await store.add_user_message(thread.id, "q")
    await claim_one(store, "a")
    await store.reserve_reply(thread.id, "a", 1, "ts-9")
    await store.release(thread.id, "a")
    taken = await claim_one(store, "b")
    assert (taken.reply_upto, taken.reply_ref) == (1, "ts-9")


async def test_drop_leases_of_dead_looper(store: Store) -> None:
    thread = await physics_thread(store)
    await store.add_user_message(thread.id, "q")
    await claim_one(store, "dead")
    assert await store.drop_leases("dead") == 1
    assert (await claim_one(store, "alive")).id == thread.id


async def test_wakes_at_once_on_new_question(store: Store) -> None:
    thread = await physics_thread(store)
    waiter = asyncio.create_task(store.wait_for_work(30))
    await asyncio.sleep(0)
    await store.add_user_message(thread.id, "q")
    assert await asyncio.wait_for(waiter, 5)


async def test_data_survives_reopen_and_migrations_are_recorded(store_url: str) -> None:
    first = await open_store(store_url)
    thread = await physics_thread(first)
    await first.add_user_message(thread.id, "kept")
    version = await first.schema_version()
    await first.close()
    again = await open_store(store_url)
    assert await again.schema_version() == version >= 1
    assert [m.content for m in await again.list_messages(thread.id)] == ["kept"]
    await again.close()


async def test_newer_schema_is_refused(store_url: str, store: Store) -> None:
    await bump_schema(store)
    await store.close()
    with pytest.raises(SchemaTooNew):
        await open_store(store_url)


async def bump_schema(store: Store) -> None:
    """Pretend a newer tutor migrated the database."""
    async with store.dialect.connection() as db:
        await db.execute(
            "INSERT INTO schema_migrations VALUES (?, ?, ?)", 999, "m999_future", utcnow()
        )


async def test_bindings(store: Store) -> None:
    assert await store.assistant_for("slack:C1") is None
    first = await store.add_assistant(ChatCompletionPhysicsTutor())
    second = await store.add_assistant(BaseAssistant(name="Poet", instructions="Rhyme."))

    async def answering(place: str) -> str | None:
        found = await store.assistant_for(place)
        return found.id if found else None

    assert await answering("slack:C1") == first.id  # unbound: the oldest
    await store.bind("slack:C1", first.id)
    await store.bind("slack:C1", second.id)
    assert await answering("slack:C1") == second.id
    with pytest.raises(NotFound):
        await store.bind("slack:C2", "asst_missing")
    assert await answering("slack:C2") == first.id
    await store.bind("slack:C3", second.id)
    places = ["slack:C1", "slack:C2", "slack:C3", "slack:C1", "slack:C9"]  # read together
    together = await asyncio.gather(*(answering(p) for p in places))
    assert together == [second.id, first.id, second.id, second.id, first.id]


async def test_thread_with_its_first_question_in_one_step(store: Store) -> None:
    assistant = await store.add_assistant(ChatCompletionPhysicsTutor())
    thread = ChatCompletionThread(
        assistant_id=assistant.id,
        chat_completion_model="m",
        metadata={"slack_channel": "C1", "slack_thread_ts": "5.5"},
        external_key="slack:C1:5.5",
    )
    first = NewMessage(content="hi", metadata={"slack_user": "U1"}, external_id="5.5")
    added = await store.add_thread(thread, first)
    assert (added.message_count, added.last_user_id, added.pending) == (1, 1, True)
    with pytest.raises(Conflict):  # the same Slack thread again: nothing half-written
        await store.add_thread(thread.model_copy(update={"id": "thread_other"}), first)
    with pytest.raises(NotFound):
        await store.get_thread("thread_other")
    [message] = await store.list_messages(added.id)
    assert (message.content, message.metadata) == ("hi", {"slack_user": "U1"})


async def test_threads_added_at_once_each_get_their_own_answer(store: Store) -> None:
    """Added together (one transaction), a taken key and an unknown assistant fail alone."""
    assistant = await store.add_assistant(ChatCompletionPhysicsTutor())

    def thread(key: str | None = None, assistant_id: str = assistant.id) -> ChatCompletionThread:
        return ChatCompletionThread(
            assistant_id=assistant_id, chat_completion_model="m", external_key=key
        )

    await store.add_thread(thread("taken"))
    wanted = [
        *(thread(), thread("taken"), thread(assistant_id="asst_nope"), thread("free")),
        thread("free"),  # the same key again in the same batch: the first one has it
    ]
    results = await asyncio.gather(
        *(store.add_thread(t, NewMessage(content=f"q{n}")) for n, t in enumerate(wanted)),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results] == [
        "ChatCompletionThread",
        "Conflict",
        "NotFound",
        "ChatCompletionThread",
        "Conflict",
    ]
    for n in (0, 3):
        [question] = await store.list_messages(wanted[n].id)
        assert (question.id, question.content) == (1, f"q{n}")
    assert len(await store.claim_pending("looper-a", 10, 30)) == 2


async def test_threads_active_since(store: Store) -> None:
    quiet = await physics_thread(store)
    active = await physics_thread(store)
    since = utcnow()
    await store.add_user_message(active.id, "new")
    assert [t.id for t in await store.threads_active_since(since)] == [active.id]
    assert {t.id for t in await store.threads_active_since(quiet.created_at)} == {
        quiet.id,
        active.id,
    }


async def test_export_then_import_loses_nothing(store: Store, tmp_path: Path) -> None:
    thread = await physics_thread(store, "slack:C1:9.9", slack_channel="C1", slack_thread_ts="9.9")
    await store.bind("slack:C1", thread.assistant_id)
    await store.add_user_message(thread.id, "q1", {"slack_ts": "9.91"}, external_id="9.91")
    await claim_one(store, "a")
    await store.commit_answer(thread.id, "a", 1, "a1", {"answers": "1"})
    await store.add_user_message(thread.id, "q2 pending")
    await store.set_rule("slack:user:U1", "deny")
    await Tutor(store, "m").add_material(thread.assistant_id, "notes.md", b"Ohm: V = IR. " * 300)
    snapshot = await store.export_all()
    assert snapshot.access == {"slack:user:U1": "deny"}
    [material] = snapshot.materials
    assert len(material.passages) == 7 and material.content.startswith("Ohm: V = IR.")

    for backend in ("sqlite", "postgres"):  # into either backend
        target = await open_store(new_store_url(backend, tmp_path))
        try:
            await target.import_all(snapshot)
            assert await target.export_all() == snapshot
            moved = await target.get_thread(thread.id)
            assert (moved.hwm, moved.pending, moved.external_key) == (1, True, "slack:C1:9.9")
            again, added = await target.add_user_message(thread.id, "q1", external_id="9.91")
            assert not added and again.id == 1  # dedup ids came along
            with pytest.raises(Conflict):
                await target.import_all(snapshot)
            [found] = await target.search_passages(thread.assistant_id, ["ohm"], 1)
            assert found.material_id == material.id
        finally:
            await target.close()


async def test_an_assistant_and_its_threads_move_to_another_model(store: Store) -> None:
    tutor = await store.add_assistant(ChatCompletionPhysicsTutor())
    other = await store.add_assistant(BaseAssistant(name="Poet", instructions="Rhyme."))
    models = ["gpt-5-mini", "gpt-5-mini", "gpt-5.4"]
    for assistant, model in [(tutor, m) for m in models] + [(other, "gpt-5-mini")]:
        thread = ChatCompletionThread(assistant_id=assistant.id, chat_completion_model=model)
        await store.add_thread(thread)
    assert await store.thread_models() == {"gpt-5-mini": 3, "gpt-5.4": 1}

    assert await store.move_assistant(tutor.id, "gpt-5.4-mini", from_model="gpt-5-mini") == 2
    assert await store.thread_models() == {"gpt-5.4-mini": 2, "gpt-5.4": 1, "gpt-5-mini": 1}
    assert (await store.get_assistant(tutor.id)).model == "gpt-5.4-mini"
    assert (await store.get_assistant(other.id)).model is None  # not its threads either

    assert await store.move_assistant(tutor.id, "gpt-5.5") == 3  # without from: all of them
    assert await store.thread_models() == {"gpt-5.5": 3, "gpt-5-mini": 1}
    with pytest.raises(NotFound):
        await store.move_assistant("asst_missing", "gpt-5.5")


async def test_askers_take_turns_and_each_has_at_most_its_share_leased(store: Store) -> None:
    """Five questions from one asker, then one from another: the other's comes second, not
    sixth, and with two per asker no asker has more than two threads leased, across
    loopers."""
    assistant = await store.add_assistant(ChatCompletionPhysicsTutor())

    async def asked_by(asker: str) -> str:
        thread = ChatCompletionThread(assistant_id=assistant.id, chat_completion_model="m")
        first = NewMessage(content=f"from {asker}", asker=asker)
        return (await store.add_thread(thread, first)).id

    flood = [await asked_by("slack:U1") for _ in range(5)]
    single = await asked_by("slack:U2")
    claimed = await store.claim_pending("looper-a", 3, 30, per_asker=2)
    assert {c.thread.id for c in claimed} == {flood[0], single, flood[1]}
    assert all(c.thread.asker in ("slack:U1", "slack:U2") for c in claimed)
    assert await store.claim_pending("looper-b", 10, 30, per_asker=2) == []  # U1 has two
    await store.commit_answer(flood[0], "looper-a", 1, "answer")
    [next_one] = await store.claim_pending("looper-b", 10, 30, per_asker=2)
    assert next_one.thread.id == flood[2]
    everything = await store.claim_pending("looper-c", 10, 30)  # no share: all the rest
    assert [c.thread.id for c in everything] == flood[3:]


async def test_the_newest_question_names_the_asker(store: Store) -> None:
    thread = await physics_thread(store)
    await store.add_user_message(thread.id, "first", asker="slack:U1")
    await store.add_user_message(thread.id, "second", asker="slack:U2")
    assert (await store.get_thread(thread.id)).asker == "slack:U2"


async def test_a_persons_conversations_newest_first_with_their_first_question(
    store: Store,
) -> None:
    """Every thread in which the person asked, also where someone else asked last; most
    recently active first, at most `limit`."""
    assistant = await store.add_assistant(ChatCompletionPhysicsTutor())

    async def started(asker: str, question: str) -> str:
        thread = ChatCompletionThread(assistant_id=assistant.id, chat_completion_model="m")
        return (await store.add_thread(thread, NewMessage(content=question, asker=asker))).id

    mine = await started("slack:U1", "why is the sky blue?")
    theirs = await started("slack:U2", "what is a photon?")
    await store.add_user_message(theirs, "and a phonon?", asker="slack:U1")
    await store.add_user_message(mine, "and at sunset?", asker="slack:U2")  # U1's still
    await started("slack:U2", "not mine")
    cli_thread = await physics_thread(store)
    await store.add_user_message(cli_thread.id, "no asker")
    listed = await store.threads_asked_by("slack:U1")
    assert [(c.thread.id, c.first_question) for c in listed] == [
        (mine, "why is the sky blue?"),
        (theirs, "what is a photon?"),
    ]
    assert [c.thread.id for c in await store.threads_asked_by("slack:U1", limit=1)] == [mine]
    assert await store.threads_asked_by("slack:U9") == []
    snapshot = await store.export_all()
    assert {m.asker for m in snapshot.messages if m.thread_id == theirs} == {
        "slack:U2",
        "slack:U1",
    }


async def test_bound_places_are_listed(store: Store) -> None:
    assert await store.bindings() == {}
    first = await store.add_assistant(ChatCompletionPhysicsTutor())
    await store.bind("slack:C2", first.id)
    await store.bind("slack:C1", first.id)
    assert await store.bindings() == {"slack:C1": first.id, "slack:C2": first.id}


async def test_access_rules(store: Store) -> None:
    assert await store.rules() == {}
    assert await store.rules_of(["slack:user:U1"]) == [None]
    await store.set_rule("slack:user:U1", "deny")
    await store.set_rule("slack:channel:C1", "allow")
    await store.set_rule("slack:user:U1", "allow")  # the latest rule replaces the earlier
    await store.set_rule("slack:user:U2", "deny")
    assert await store.rules() == {
        "slack:channel:C1": "allow",
        "slack:user:U1": "allow",
        "slack:user:U2": "deny",
    }
    assert await store.rules(["slack:user:U2", "slack:user:U9"]) == {"slack:user:U2": "deny"}
    assert await store.rules([]) == {}
    subjects = ["slack:user:U1", "slack:user:U2", "slack:user:U9", "slack:user:U1"]  # together
    assert await store.rules_of(subjects) == ["allow", "deny", None, "allow"]
    together = await asyncio.gather(store.rules_of(subjects[:2]), store.rules_of(subjects[2:]))
    assert list(together) == [["allow", "deny"], [None, "allow"]]
