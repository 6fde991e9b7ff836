"""Health and metrics for operators: `tutor run` with TUTOR_HTTP_PORT, read over HTTP the way
a load balancer and a Prometheus server read it."""

from __future__ import annotations

from datetime import datetime

from looper.models import ChatCompletionPhysicsTutor, ChatCompletionThread
from looper.store import Store


async def test_pending_summary_counts_only_unanswered_questions(store: Store) -> None:
    assistant = await store.add_assistant(ChatCompletionPhysicsTutor())

    async def asked(content: str, thread_id: str | None = None) -> tuple[str, datetime]:
        """Store a question (in a new thread without `thread_id`); its thread and time."""
        if thread_id is None:
            thread = ChatCompletionThread(assistant_id=assistant.id, chat_completion_model="m")
            thread_id = (await store.add_thread(thread)).id
        message, _ = await store.add_user_message(thread_id, content)
        return thread_id, message.created_at

    assert (await store.pending_summary()).model_dump() == {"threads": 0, "oldest_question": None}
    failed, _ = await asked("asked first, failed")
    answered, _ = await asked("answered")
    for claim in await store.claim_pending("looper", 10, 30):
        if claim.thread.id == failed:
            await store.record_failure(failed, "looper", 1, "OpenAI failed")
        else:
            await store.commit_answer(answered, "looper", 1, "an answer")
    _, oldest = await asked("waiting, in a thread of its own")
    await asked("waiting, under an answer", answered)
    summary = await store.pending_summary()
    assert (summary.threads, summary.oldest_question) == (2, oldest)
