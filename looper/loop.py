"""The looper: finds threads with unanswered questions and answers them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from dataclasses import replace
from datetime import datetime

from looper import metrics
from looper.budgets import Budget, Budgets, Defaults, Standing
from looper.completion import Completer, CompletionFailed, make_clients
from looper.context import system_prompt, to_chat, unanswered
from looper.materials import DEFAULT_TOKENS, Reference
from looper.models import BaseAssistant, Claim, Usage, UsageRecord
from looper.outage import Outage
from looper.prices import Prices
from looper.settings import Settings
from looper.sinks import PLACING, Job, PlaceRefused, Reply, Sink
from looper.store import LeaseLost, Store, StoreUnavailable
from looper.urgency import Urgency

log = logging.getLogger(__name__)


def looper_id() -> str:
    """host/pid/nonce: unique per process, and tells a restarted looper which leases are dead."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"


def is_dead_here(owner: str) -> bool:
    """True for a looper of this host whose process is gone."""
    host, _, rest = owner.partition("/")
    pid = rest.partition("/")[0]
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Looper:
    """Answers pending threads concurrently, each thread one answer at a time, in order.

    A thread is pending when its newest user message is past `settled`. The looper leases it,
    builds the context from everything the thread holds (so two quick questions get one
    answer), streams the completion into the sink and commits the answer with the `hwm`.
    """

    def __init__(
        self,
        store: Store,
        completer: Completer,
        sink: Sink,
        *,
        concurrency: int = 64,
        per_asker: int = 0,
        poll_interval: float = 1.0,
        lease_seconds: float = 30.0,
        grace_seconds: float = 5.0,
        owner: str | None = None,
        budgets: Budgets | None = None,
        prices: Prices | None = None,
        assistant_seconds: float = 5.0,
        materials_tokens: int = DEFAULT_TOKENS,
    ) -> None:
        self.store = store
        self.completer = completer
        self.urgency = completer.urgency  # the same: streams step aside for first signs
        self.sink = sink
        self.concurrency = concurrency
        self.per_asker = per_asker  # answers in flight per asker, across loopers (0: any)
        self.poll_interval = poll_interval
        self.lease_seconds = lease_seconds
        self.grace_seconds = grace_seconds
        self.owner = owner or looper_id()
        self.budgets = budgets or Budgets(store, Defaults())
        self.prices = prices or Prices()
        self.answering: set[asyncio.Task[None]] = set()
        self.outage = Outage(poll_interval)  # failed claims since the last that worked
        self.assistant_seconds = assistant_seconds
        self.reference = Reference(store, materials_tokens)
        self.assistants: dict[str, tuple[BaseAssistant, float]] = {}  # with when it was read
        self._stopping = False

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        store: Store,
        api_key: str,
        sink: Sink,
        urgency: Urgency | None = None,
    ) -> Looper:
        """`urgency`: the front end's too, when it shares the event loop."""
        clients = make_clients(
            api_key,
            settings.openai_base_url,
            settings.tutor_request_timeout,
            settings.tutor_max_concurrency,
        )
        completer = Completer(
            clients,
            max_completion_tokens=settings.tutor_max_completion_tokens,
            attempts=settings.tutor_retry_attempts,
            base_delay=settings.tutor_retry_base_delay,
            context_tokens=settings.tutor_context_tokens,
            urgency=urgency,
        )
        return cls(
            store,
            completer,
            sink,
            concurrency=settings.tutor_max_concurrency,
            per_asker=settings.tutor_max_per_user,
            poll_interval=settings.tutor_poll_interval,
            lease_seconds=settings.tutor_lease_seconds,
            budgets=Budgets(store, settings.budget_defaults()),
            prices=settings.prices(),
            assistant_seconds=settings.tutor_assistant_seconds,
            materials_tokens=settings.tutor_materials_tokens,
        )

    def stop(self) -> None:
        """Take no new work; `run` returns once the answers in flight are done or handed back."""
        self._stopping = True
        self.store.notify_work()

    async def run(self) -> None:
        await self.drop_dead_leases()
        while not self._stopping:
            try:
                await self.tick()
                wait = self.outage.succeeded()
            except Exception as exc:
                wait = self.outage.failed(exc)
            await self.store.wait_for_work(wait)
        await self.drain()
        await self.completer.close()

    async def tick(self) -> int:
        """Claim as many pending threads as there are free slots and start answering them."""
        free = self.concurrency - len(self.answering)
        if free <= 0:
            return 0
        if not await self.store.claimable():  # most wake-ups: an answer done, a slot free
            return 0
        with self.urgency:  # a question waits for its first sign of work
            claims = await self.store.claim_pending(
                self.owner, free, self.lease_seconds, self.per_asker
            )
        for claim in claims:
            task = asyncio.create_task(self.answer(claim), name=f"answer {claim.thread.id}")
            self.answering.add(task)
            task.add_done_callback(self._slot_freed)
        return len(claims)

    def _slot_freed(self, task: asyncio.Task[None]) -> None:
        self.answering.discard(task)
        if not self.outage.failures:  # in an outage, the looper keeps its backoff
            self.store.notify_work()  # the free slot may take a thread that waits for one

    async def drain(self) -> None:
        if not self.answering:
            return
        _, late = await asyncio.wait(self.answering, timeout=self.grace_seconds)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    async def drop_dead_leases(self) -> None:
        for owner in await self.store.lease_owners():
            if is_dead_here(owner):
                dropped = await self.store.drop_leases(owner)
                log.info("took back %d thread(s) from dead looper %s", dropped, owner)

    async def answer(self, claim: Claim) -> None:
        thread_id = claim.thread.id
        keeper = asyncio.create_task(self._keep_lease(thread_id, asyncio.current_task()))
        try:
            await self._answer(claim)
        except asyncio.CancelledError:
            await asyncio.shield(self.store.release(thread_id, self.owner))
            raise
        except LeaseLost:
            log.warning("lost the lease on %s; another looper answers it", thread_id)
        except StoreUnavailable as exc:  # the lease runs out; the answer is written again
            log.warning("could not store the answer to %s (%s); answering it again", thread_id, exc)
        except Exception as exc:
            log.exception("answering %s failed", thread_id)
            with contextlib.suppress(LeaseLost):
                await self.store.record_failure(
                    thread_id, self.owner, claim.thread.last_user_id, f"Something broke: {exc}"
                )
                metrics.FAILURES.inc()
        finally:
            keeper.cancel()

    async def _answer(self, claim: Claim) -> None:
        with self.urgency:  # the first sign of work: the asker is waiting for it
            opened = await self._open(claim)
        if opened is None:
            return
        job, reply, standing = opened
        thread = job.thread
        chat = to_chat(await self._system_prompt(job), job.messages)
        try:
            answer = await self.completer.complete(thread.chat_completion_model, chat, reply)
        except CompletionFailed as failure:
            shown = await reply.fail(str(failure))
            await self.store.record_failure(thread.id, self.owner, job.upto, str(failure), shown)
            metrics.FAILURES.inc()
            return
        used = self._usage(job, answer.usage, standing.at)
        note = standing.note(used.prompt_tokens + used.completion_tokens, used.cost_usd)
        await self.urgency.turn()  # the answer is written: its delivery can wait a moment
        delivered = await reply.finish(answer.delivered + note)
        marks = {**delivered, **answer.marks, "answers": str(job.upto)}
        await self.store.commit_answer(thread.id, self.owner, job.upto, answer.text, marks, used)
        metrics.answer_committed(job.messages, job.upto)
        if used.cost_usd:
            metrics.COST.labels(used.model).inc(used.cost_usd)

    async def _open(self, claim: Claim) -> tuple[Job, Reply, Standing] | None:
        """The thread placed and its reply opened: the first sign of work. None when there
        is nothing to answer (not placed) or nothing to spend (a budget is used up: told)."""
        job = await self._job(claim)
        if job.thread.awaiting_place:
            placed = await self._place(job)
            if placed is None or not placed.thread.pending:
                return None
            job = placed
        thread = job.thread
        standing = await self.budgets.standing(thread.asker, thread.place)
        reply = await self.sink.open(job)
        if reply.ref is not None and (reply.ref, job.upto) != (thread.reply_ref, thread.reply_upto):
            await job.reserve(reply.ref)
        if spent := standing.spent:
            await self._refuse(job, reply, spent, standing.at)
            return None
        return job, reply, standing

    async def _system_prompt(self, job: Job) -> str:
        """The assistant's instructions and style, and what of its materials the questions
        need: at most a quarter of the prompt's room, so that a small window still holds
        the thread (the trimmer keeps the system message whole, so it counts them)."""
        question = unanswered(job.messages, job.thread.hwm)
        room = await self.completer.prompt_room(job.thread.chat_completion_model)
        reference = await self.reference.for_question(job.assistant.id, question, room // 4)
        return system_prompt(job.assistant, reference)

    def _usage(self, job: Job, usage: Usage | None, at: datetime) -> UsageRecord:
        """The ledger's record of an answer (of a refusal, without `usage`)."""
        thread = job.thread
        model = thread.chat_completion_model
        taken = usage or Usage(0, 0)
        return UsageRecord(
            thread_id=thread.id,
            message_id=job.upto,
            at=at,
            assistant_id=thread.assistant_id,
            model=model,
            asker=thread.asker,
            place=thread.place,
            prompt_tokens=taken.prompt_tokens,
            completion_tokens=taken.completion_tokens,
            cached_tokens=taken.cached_tokens,
            counted=taken.counted,
            cost_usd=self.prices.cost(model, taken) if usage else None,
        )

    async def _refuse(self, job: Job, reply: Reply, spent: Budget, at: datetime) -> None:
        """A budget is used up: tell the asker, and keep the question (a retry asks it)."""
        why = spent.refusal(at)
        shown = await reply.fail(why)
        refusal = self._usage(job, None, at).model_copy(update={"refused": spent.kind})
        await self.store.record_failure(job.thread.id, self.owner, job.upto, why, shown, refusal)
        metrics.BUDGET_REFUSALS.labels(spent.kind).inc()

    async def _job(self, claim: Claim) -> Job:
        thread = claim.thread
        upto = max((m.id for m in claim.messages if m.role == "user"), default=thread.hwm)

        async def reserve(ref: str | None) -> None:
            await self.store.reserve_reply(thread.id, self.owner, upto, ref)

        assistant = await self._assistant(thread.assistant_id)
        return Job(thread, assistant, claim.messages, upto, reserve)

    async def _place(self, job: Job) -> Job | None:
        """Have the sink place a thread stored before it had a place; exactly once: the
        reservation tells a later attempt to look for the place this one may have made."""
        thread = job.thread
        if thread.reply_ref != PLACING:
            await job.reserve(PLACING)
        try:
            placed = await self.sink.place(job)
        except PlaceRefused as refused:
            await self.store.abandon_place(thread.id, self.owner, job.upto, str(refused))
            metrics.FAILURES.inc()
            return None
        except Exception as exc:  # the lease runs out, and the thread is tried again then
            log.warning("could not place %s yet (%s); trying again later", thread.id, exc)
            return None
        stored = await self.store.place_thread(
            thread.id, self.owner, placed.metadata, placed.external_key
        )
        if not stored.pending:
            await self.store.release(thread.id, self.owner)
        return replace(job, thread=stored, sign_shown=placed.sign_shown)

    async def _assistant(self, assistant_id: str) -> BaseAssistant:
        """An assistant read at most `assistant_seconds` ago: an edit (made through any
        replica) reaches every looper that soon, and a busy looper reads each assistant a
        few times a minute rather than once an answer."""
        now = time.monotonic()
        cached = self.assistants.get(assistant_id)
        if cached is None or now - cached[1] >= self.assistant_seconds:
            cached = (await self.store.get_assistant(assistant_id), now)
            self.assistants[assistant_id] = cached
        return cached[0]

    async def _keep_lease(self, thread_id: str, task: asyncio.Task[None] | None) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                renewed = await self.store.renew_lease(thread_id, self.owner, self.lease_seconds)
            except StoreUnavailable:
                continue  # the next renewal may work
            if not renewed:
                log.warning("lease on %s expired while answering; stopping", thread_id)
                if task is not None:
                    task.cancel()
                return
