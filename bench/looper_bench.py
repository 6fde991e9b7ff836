"""Looper benchmark: time to answer N pending threads through the engine alone (looper, store
and a sink that does nothing Slack-like), against its floor; and the cost of one poll over a
store full of idle threads.

    .venv/bin/python -m bench.looper_bench [--first-token 1.0] [--answers 1 100 1000]

The fake model runs as its own process (as OpenAI would be: ~2,000-character answers streamed
as ~400 events, the first after L seconds), the looper in this one, on a fresh SQLite file per
run. After each run, the floor: a raw reader of as many streams from the same fake model,
doing nothing else. CPU per event is this process's CPU while answering (the store, the
looper, the client; setting up the pending threads is not counted). Prints a table; asserts
nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
import time
from pathlib import Path

from bench.floor import FakeModel, cpu_us_per_event, measure_floor, table
from fakes.openai_server import API_KEY
from looper.completion import Completer, make_clients
from looper.core import Tutor
from looper.loop import Looper
from looper.models import ChatCompletionPhysicsTutor, utcnow
from looper.sinks import Job, Placed
from looper.store import open_store


class CountingSink:
    """Counts finished answers and wakes the benchmark when all are in."""

    def __init__(self, expected: int) -> None:
        self.ref: str | None = None
        self.expected = expected
        self.finished = 0
        self.failed = 0
        self.all_done = asyncio.Event()

    async def open(self, job: Job) -> CountingSink:
        return self

    async def place(self, job: Job) -> Placed:
        return Placed.where_it_is(job.thread)

    async def append(self, delta: str) -> None:
        pass

    async def restart(self) -> None:
        pass

    async def finish(self, text: str) -> dict[str, str]:
        self._count()
        return {}

    async def fail(self, error: str) -> str | None:
        self.failed += 1
        self._count()
        return None

    def _count(self) -> None:
        self.finished += 1
        if self.finished >= self.expected:
            self.all_done.set()


async def answer_pending(n: int, concurrency: int, base_url: str, folder: Path) -> dict[str, float]:
    store = await open_store(f"sqlite:///{folder / f'pending-{n}.db'}")
    tutor = Tutor(store, "gpt-5-mini")
    assistant = await tutor.add_assistant()
    for index in range(n):
        thread = await tutor.add_thread(assistant.id)
        await tutor.ask(f"question {index}", thread.id)
    sink = CountingSink(n)
    clients = make_clients(API_KEY, base_url, 60, concurrency)
    looper = Looper(store, Completer(clients), sink, concurrency=concurrency, poll_interval=1)
    cpu, start = time.process_time(), time.perf_counter()
    run = asyncio.create_task(looper.run())
    await sink.all_done.wait()
    await asyncio.gather(*looper.answering)  # every answer committed, not just delivered
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    looper.stop()
    await run
    answered = sum(t.hwm == 1 for t in await store.list_threads(n))
    await store.close()
    return {"seconds": elapsed, "answered": answered, "failed": sink.failed, "cpu_s": cpu}


def add_idle_threads(path: Path, count: int) -> None:
    """Bulk set-up of answered threads, straight into the file (set-up only, not timed)."""
    now = utcnow().isoformat()
    assistant = ChatCompletionPhysicsTutor()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    db.execute(
        "INSERT INTO assistants (id, name, instructions, created_at) VALUES (?, ?, ?, ?)",
        (assistant.id, assistant.name, assistant.instructions, now),
    )
    db.executemany(
        "INSERT INTO threads (id, assistant_id, chat_completion_model, created_at, last_activity,"
        " message_count, last_user_id, hwm, settled) VALUES (?, ?, 'gpt-5-mini', ?, ?, 2, 1, 1, 1)",
        ((f"thread_idle_{i}", assistant.id, now, now) for i in range(count)),
    )
    db.executemany(
        "INSERT INTO messages (thread_id, id, role, content, created_at) VALUES (?, ?, ?, ?, ?)",
        (
            row
            for i in range(count)
            for row in (
                (f"thread_idle_{i}", 1, "user", "an old question", now),
                (f"thread_idle_{i}", 2, "assistant", "an old answer", now),
            )
        ),
    )
    db.execute("COMMIT")
    db.close()


async def poll_cost(idle: int, folder: Path, rounds: int = 500) -> float:
    store = await open_store(f"sqlite:///{folder / 'idle.db'}")
    try:
        await asyncio.to_thread(add_idle_threads, folder / "idle.db", idle)
        start = time.perf_counter()
        for _ in range(rounds):
            assert await store.claim_pending("bench", 64, 30) == []
        return (time.perf_counter() - start) / rounds
    finally:
        await store.close()


async def pending_row(
    n: int, concurrency: int, model: FakeModel, folder: Path
) -> dict[str, object]:
    run = await answer_pending(n, concurrency, model.base_url, folder)
    floor = await asyncio.to_thread(measure_floor, model.base_url, n)
    events = n * floor.events_per_answer
    return {
        "pending threads": n,
        "answered": run["answered"],
        "failed": run["failed"],
        "total s": round(run["seconds"], 2),
        "floor s": round(floor.seconds, 2),
        "total/floor": round(run["seconds"] / floor.seconds, 2),
        "total/L": round(run["seconds"] / model.first_token, 2),
        "CPU µs/event": round(cpu_us_per_event(run["cpu_s"], events), 1),
        "floor CPU µs/event": round(floor.cpu_us_per_event, 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--first-token", "--latency", type=float, default=1.0)
    parser.add_argument("--answers", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--idle", type=int, default=100_000)
    args = parser.parse_args()
    rows = []
    with FakeModel(args.first_token) as model, tempfile.TemporaryDirectory() as folder:
        for n in args.answers:
            rows.append(await pending_row(n, args.concurrency, model, Path(folder)))
            print(json.dumps(rows[-1]), flush=True)
        per_poll = await poll_cost(args.idle, Path(folder))
    print(f"L = {args.first_token} s to the first token; concurrency {args.concurrency}")
    print(table(rows))
    print(f"one poll over {args.idle:,} idle threads: {per_poll * 1000:.3f} ms")


if __name__ == "__main__":
    asyncio.run(main())
