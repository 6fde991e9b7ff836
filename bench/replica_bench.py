"""Replica benchmark: the bridge workload (ANSWERS `/tutor ask` at once, the fake model in its
own process, each run against its floor) on 1 replica (SQLite), 1 replica (PostgreSQL) and
3 replicas (PostgreSQL); and how soon a question stored by one process starts being answered
by another (PostgreSQL NOTIFY against SQLite polling).

    .venv/bin/python -m bench.replica_bench [--postgres URL] [--first-token 1.0] [--answers 200]

Needs a PostgreSQL server (default: the Unix socket); each run uses fresh databases and
drops them. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

from bench.floor import FakeModel, table
from bench.slack_bench import ask, fan_out, measure, percentile, row
from fakes.openai_server import API_KEY, FakeOpenAI
from looper.core import Tutor
from looper.store import open_store


class Databases:
    """Fresh PostgreSQL databases for one benchmark run, dropped at the end."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.names: list[str] = []

    async def _run(self, statement: str) -> None:
        admin = await asyncpg.connect(self.admin_url)
        try:
            await admin.execute(statement)
        finally:
            await admin.close()

    def new(self) -> str:
        name = f"tutor_bench_{uuid.uuid4().hex[:10]}"
        asyncio.run(self._run(f'CREATE DATABASE "{name}"'))
        self.names.append(name)
        base, _, query = self.admin_url.partition("?")
        return base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")

    def drop_all(self) -> None:
        for name in self.names:
            asyncio.run(self._run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def wake_latency(url: str, folder: Path, questions: int = 50) -> dict[str, float]:
    """Store questions from this process; a `tutor looper` process answers them. Latency:
    from the question's commit to its completion request reaching the (fake) model."""
    fake = FakeOpenAI().start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUTOR_", "OPENAI_"))}
    env.update(
        TUTOR_DATABASE_URL=url,
        OPENAI_API_KEY=API_KEY,
        OPENAI_BASE_URL=fake.base_url,
        TUTOR_POLL_INTERVAL="1.0",
    )
    store = await open_store(url)
    tutor = Tutor(store, "gpt-5-mini")
    assistant = await tutor.add_assistant()
    threads = [await tutor.add_thread(assistant.id) for _ in range(questions)]
    looper = subprocess.Popen(  # noqa: ASYNC220 (a benchmark, started once)
        [sys.executable, "-m", "bot.cli", "looper"],
        env=env,
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert looper.stderr is not None
    looper.stderr.readline()  # "looper … on …": it is running
    latencies = []
    try:
        for index, thread in enumerate(threads):
            # Ask at a random moment against the poll timer, once the last answer is in.
            await asyncio.sleep(random.uniform(0.05, 1.0))
            await tutor.ask(f"question {index}", thread.id)
            stored = time.monotonic()
            await asyncio.to_thread(fake.wait_requests, index + 1, 10.0, True)
            latencies.append(fake.requests[index].at - stored)
    finally:
        looper.terminate()
        looper.wait(timeout=20)
        await store.close()
        fake.stop()
    return {
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default="postgresql:///postgres?host=/var/run/postgresql")
    parser.add_argument("--first-token", "--latency", type=float, default=1.0)
    parser.add_argument("--answers", type=int, default=200)
    parser.add_argument("--questions", type=int, default=50, help="for the wake-up latency")
    args = parser.parse_args()
    databases = Databases(args.postgres)
    rows, wakes = [], []
    try:
        with FakeModel(args.first_token) as model, tempfile.TemporaryDirectory() as folder:
            for name, database, replicas in (
                ("1 replica, SQLite", None, 1),
                ("1 replica, PostgreSQL", databases.new(), 1),
                ("3 replicas, PostgreSQL", databases.new(), 3),
            ):
                scenario = lambda run: fan_out(run, args.answers, ask)  # noqa: E731
                result = measure(model, Path(folder), name, scenario, None, database, replicas)
                rows.append(row(name, result))
            for name, database in (
                ("PostgreSQL NOTIFY", databases.new()),
                ("SQLite polling every 1 s", f"sqlite:///{Path(folder) / 'wake.db'}"),
            ):
                wake = asyncio.run(wake_latency(database, Path(folder), args.questions))
                wakes.append({"stored by one process, started by another": name, **wake})
                print(name, json.dumps(wake), flush=True)
    finally:
        databases.drop_all()
    print(f"L = {args.first_token} s to the first token")
    print(table(rows))
    print(table(wakes))


if __name__ == "__main__":
    main()
