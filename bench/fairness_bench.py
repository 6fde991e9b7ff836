"""Fairness benchmark: one person floods the looper while ten others ask one question each.

    .venv/bin/python -m bench.fairness_bench [--first-token 2.0] [--answers 100] [--concurrency 10]

The looper (concurrency C) answers against the fake model in its own process (~2,000-character
answers streamed as ~400 events, the first after L seconds); ANSWERS is the flood's size.
Measured: the ten others' answer latency (stored → delivered), p50, in three runs: without the
flood (the floor), with the flood and askers taking turns with at most 2 answers in flight
each (TUTOR_MAX_PER_USER = 2), and with the flood, turns, but no cap (0). Prints a table;
asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bench.floor import FakeModel, table
from fakes.openai_server import API_KEY
from looper.completion import Completer, make_clients
from looper.core import Tutor
from looper.loop import Looper
from looper.models import NewMessage
from looper.sinks import Job, Placed
from looper.store import open_store

OTHERS = 10


class TimingSink:
    """Notes when each thread's answer is delivered."""

    def __init__(self) -> None:
        self.delivered: dict[str, float] = {}
        self.changed = asyncio.Event()

    async def open(self, job: Job) -> TimedReply:
        return TimedReply(self, job.thread.id)

    async def place(self, job: Job) -> Placed:
        return Placed.where_it_is(job.thread)


class TimedReply:
    def __init__(self, sink: TimingSink, thread_id: str) -> None:
        self.ref: str | None = None
        self.sink = sink
        self.thread_id = thread_id

    async def append(self, delta: str) -> None:
        pass

    async def restart(self) -> None:
        pass

    async def finish(self, text: str) -> dict[str, str]:
        self.sink.delivered[self.thread_id] = time.perf_counter()
        self.sink.changed.set()
        return {}

    async def fail(self, error: str) -> str | None:
        await self.finish(error)
        return None


async def others_latency(
    base_url: str, folder: Path, flood: int, concurrency: int, per_asker: int
) -> float:
    """p50 seconds from storing to delivering for the ten others' questions."""
    store = await open_store(f"sqlite:///{folder / f'fair-{flood}-{per_asker}.db'}")
    tutor = Tutor(store, "gpt-5.4-mini")
    assistant = await tutor.add_assistant()
    sink = TimingSink()
    clients = make_clients(API_KEY, base_url, 60, concurrency)
    looper = Looper(store, Completer(clients), sink, concurrency=concurrency, per_asker=per_asker)
    running = asyncio.create_task(looper.run())

    async def ask(asker: str) -> tuple[str, float]:
        question = NewMessage(content=f"a question from {asker}", asker=asker)
        thread = await tutor.start_thread(assistant, {}, question)
        return thread.id, time.perf_counter()

    for _ in range(flood):
        await ask("flooder")
    asked = dict([await ask(f"student-{n}") for n in range(OTHERS)])
    while not all(thread in sink.delivered for thread in asked):
        sink.changed.clear()
        await sink.changed.wait()
    looper.stop()
    await running
    await store.close()
    return statistics.median(sink.delivered[t] - at for t, at in asked.items())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--first-token", "--latency", type=float, default=2.0)
    parser.add_argument("--answers", "--flood", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    runs = {
        "floor (no flood)": (0, 2),
        "flood, turns (2 per asker)": (args.answers, 2),
        "flood, turns without a cap": (args.answers, 0),
    }
    results: dict[str, float] = {}
    with FakeModel(args.first_token) as model, tempfile.TemporaryDirectory() as folder:
        for name, (flood, per_asker) in runs.items():
            p50 = await others_latency(
                model.base_url, Path(folder), flood, args.concurrency, per_asker
            )
            results[name] = p50
            print(f"{name}: the ten others' p50 {p50:.2f} s", flush=True)
    floor = results["floor (no flood)"]
    print(f"L = {args.first_token} s to the first token; concurrency {args.concurrency}")
    rows = [
        {
            "run": name,
            "the ten others' p50 s": round(p50, 2),
            "over the floor": round(p50 / floor, 2),
        }
        for name, p50 in results.items()
    ]
    print(table(rows))


if __name__ == "__main__":
    asyncio.run(main())
