"""Looper benchmark: time to answer N pending threads against a model of fixed latency L,
and the cost of one poll over a store full of idle threads.

    .venv/bin/python -m bench.looper_bench [--latency 1.0] [--sizes 1 100 1000]

The fake OpenAI server runs as its own process (as OpenAI would be), the looper in this one,
on a fresh SQLite file per run. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def start_fake(latency: float) -> tuple[subprocess.Popen[str], str]:
    fake = subprocess.Popen(
        [sys.executable, "-m", "fakes.openai_server", "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert fake.stdout is not None
    return fake, fake.stdout.readline().strip()


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
    start = time.perf_counter()
    run = asyncio.create_task(looper.run())
    await sink.all_done.wait()
    await asyncio.gather(*looper.answering)  # every answer committed, not just delivered
    elapsed = time.perf_counter() - start
    looper.stop()
    await run
    answered = sum(t.hwm == 1 for t in await store.list_threads(n))
    await store.close()
    return {"seconds": elapsed, "answered": answered, "failed": sink.failed}


def add_idle_threads(path: Path, count: int) -> None:
    """Bulk set-up of answered threads, straight into the file (set-up only, not timed)."""
    now = utcnow().isoformat()
    assistant = ChatCompletionPhysicsTutor()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    db.execute(
        "INSERT INTO assistants VALUES (?, ?, ?, ?, ?)",
        (assistant.id, assistant.name, assistant.instructions, None, now),
    )
    db.executemany(
        "INSERT INTO threads (id, assistant_id, chat_completion_model, created_at, last_activity,"
        " message_count, last_user_id, hwm, settled) VALUES (?, ?, 'gpt-5-mini', ?, ?, 2, 1, 1, 1)",
        ((f"thread_idle_{i}", assistant.id, now, now) for i in range(count)),
    )
    db.executemany(
        "INSERT INTO messages VALUES (?, ?, ?, ?, '{}', NULL, ?)",
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
    await asyncio.to_thread(add_idle_threads, folder / "idle.db", idle)
    start = time.perf_counter()
    for _ in range(rounds):
        assert await store.claim_pending("bench", 64, 30) == []
    per_poll = (time.perf_counter() - start) / rounds
    await store.close()
    return per_poll


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--idle", type=int, default=100_000)
    args = parser.parse_args()
    fake, base_url = start_fake(args.latency)
    results: dict[str, object] = {"latency_s": args.latency, "concurrency": args.concurrency}
    try:
        with tempfile.TemporaryDirectory() as folder:
            for n in args.sizes:
                run = await answer_pending(n, args.concurrency, base_url, Path(folder))
                ratio = run["seconds"] / args.latency
                print(
                    f"N={n:>5}: {run['seconds']:.2f} s = {ratio:.2f} x L "
                    f"(answered {run['answered']:.0f}, failed {run['failed']:.0f})",
                    flush=True,
                )
                results[f"pending_{n}_ratio"] = round(ratio, 3)
            per_poll = await poll_cost(args.idle, Path(folder))
            print(f"one poll over {args.idle:,} idle threads: {per_poll * 1000:.3f} ms")
            results["poll_ms"] = round(per_poll * 1000, 4)
    finally:
        fake.terminate()
        fake.wait()
    print(json.dumps(results))


if __name__ == "__main__":
    asyncio.run(main())
