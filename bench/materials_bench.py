"""Materials benchmark: what course materials add to building an answer's context.

    .venv/bin/python -m bench.materials_bench [--pages 200] [--rounds 5] [--postgres URL]

For 30 questions over a generated 200-page course (`bench/course.py`), on SQLite and on
PostgreSQL, times what the looper does before it calls the model: the system message (the
instructions, and the materials' passages the question needs, within TUTOR_MATERIALS_TOKENS),
the chat, and the trimmer. "before" is tutor without materials (the instructions alone, no
query); "no materials" an assistant without any (one query finds none); "200 pages" the
course's assistant. Prints a table and each row as JSON; asserts nothing (target: ≤ 20 ms
added per question).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from bench.course import Question, course, question_set
from looper.context import fit, system_prompt, to_chat
from looper.core import Tutor
from looper.materials import DEFAULT_TOKENS, Reference
from looper.models import BaseAssistant, Message
from looper.store import Store, open_store
from looper.tokens import TokenCounter, context_window

MODEL = "gpt-5-mini"
BUDGET = context_window(MODEL) - 4096  # the prompt's room beside the answer's tokens
INSTRUCTIONS = "You are a patient geography tutor for a secondary school."


async def build_context(
    reference: Reference | None, assistant: BaseAssistant, question: str
) -> int:
    """The looper's context for one question; the system message's length."""
    found = await reference.for_question(assistant.id, question) if reference else ""
    asked = Message(id=1, thread_id="bench", role="user", content=question)
    chat = fit(to_chat(system_prompt(assistant, found), [asked]), BUDGET, TokenCounter(MODEL))
    return len(chat[0]["content"])


async def timed(
    work: Callable[[str], Awaitable[int]], questions: list[Question], rounds: int
) -> dict[str, float]:
    """Each question `rounds` times: milliseconds per question (p50, p95, mean)."""
    for question in questions[:3]:  # warm caches and connections
        await work(question.text)
    took: list[float] = []
    for _ in range(rounds):
        for question in questions:
            start = time.perf_counter()
            await work(question.text)
            took.append((time.perf_counter() - start) * 1000)
    took.sort()
    return {
        "p50_ms": round(statistics.median(took), 3),
        "p95_ms": round(took[int(len(took) * 0.95) - 1], 3),
        "mean_ms": round(statistics.fmean(took), 3),
    }


async def measure(store: Store, pages: int, rounds: int) -> dict[str, dict[str, float]]:
    made = course(pages)
    questions = question_set(made)
    tutor = Tutor(store, MODEL)
    plain = await tutor.add_assistant("Plain", INSTRUCTIONS)
    taught = await tutor.add_assistant("Geography", INSTRUCTIONS)
    await tutor.add_material(taught.id, "course.md", made.text.encode())
    reference = Reference(store, DEFAULT_TOKENS)
    return {
        "before": await timed(lambda q: build_context(None, plain, q), questions, rounds),
        "no materials": await timed(
            lambda q: build_context(reference, plain, q), questions, rounds
        ),
        f"{pages} pages": await timed(
            lambda q: build_context(reference, taught, q), questions, rounds
        ),
    }


async def on_sqlite(pages: int, rounds: int) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as folder:
        store = await open_store(f"sqlite:///{Path(folder) / 'bench.db'}")
        try:
            return await measure(store, pages, rounds)
        finally:
            await store.close()


async def on_postgres(admin_url: str, pages: int, rounds: int) -> dict[str, dict[str, float]]:
    name = f"tutor_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        base, _, query = admin_url.partition("?")
        url = base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")
        store = await open_store(url)
        try:
            return await measure(store, pages, rounds)
        finally:
            await store.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def report(backend: str, rows: dict[str, dict[str, float]]) -> None:
    before = rows["before"]
    for label, row in rows.items():
        added = round(row["mean_ms"] - before["mean_ms"], 3)
        print(
            f"| {backend} | {label} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | "
            f"{row['mean_ms']:.2f} | {added:+.2f} |"
        )
    for label, row in rows.items():
        print(json.dumps({"backend": backend, "case": label, **row}))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--postgres",
        default="postgresql:///postgres?host=/var/run/postgresql",
        help="an admin URL to make a scratch database on; empty: SQLite only",
    )
    args = parser.parse_args()
    print(f"context building per question, 30 questions over {args.pages} pages, x{args.rounds}")
    print("| backend | case | p50 ms | p95 ms | mean ms | added (mean) ms |")
    print("|---|---|---|---|---|---|")
    report("SQLite", await on_sqlite(args.pages, args.rounds))
    if args.postgres:
        report("PostgreSQL", await on_postgres(args.postgres, args.pages, args.rounds))


if __name__ == "__main__":
    asyncio.run(main())
