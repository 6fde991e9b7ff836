"""CPU per streamed event, whole process: the looper answering N threads at once.

    .venv/bin/python -m bench.cpu_per_event [--threads 200] [--events 400] [--chars 2000]
        [--gap 0.005] [--latency 0.5] [--no-floor] [--asyncio-loop] [--profile FILE]

The fake OpenAI runs in its own process and streams each ~2,000-character answer as ~400
server-sent events, one per token, `--gap` seconds apart (as a model writes them). This
process runs the looper with the console sink on a fresh SQLite file and reports
`time.process_time()` spent answering divided by the events received, the same for a raw
reader of the same streams (aiohttp and `json.loads` per event, nothing else: the floor),
and how late the event loop woke a 10 ms timer meanwhile (its lag: how long a Socket Mode
acknowledgement sharing the loop would wait). Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from fakes.openai_server import API_KEY, FakeOpenAI
from looper.cli import run_on_fastest_loop
from looper.completion import Completer, make_clients
from looper.core import Tutor
from looper.loop import Looper
from looper.sinks import ConsoleSink
from looper.store import open_store

EXTRA_EVENTS = 3  # the finish chunk, the usage chunk and [DONE]


class Lines(io.StringIO):
    """The console sink's output; `all_in` is set once `expected` lines are printed."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected = expected
        self.count = 0
        self.all_in = asyncio.Event()

    def write(self, text: str) -> int:
        self.count += text.count("\n")
        if self.count >= self.expected:
            self.all_in.set()
        return super().write(text)


def serve(events: int, chars: int, gap: float, latency: float) -> None:
    """The fake model, run as `--serve` in its own process; prints its base URL."""
    fake = FakeOpenAI(latency=latency, chunks=events, answer_chars=chars, chunk_delay=gap)
    fake.start()
    print(fake.base_url, flush=True)
    threading.Event().wait()


def start_fake(args: argparse.Namespace) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "bench.cpu_per_event", "--serve"]
    for name in ("events", "chars", "gap", "latency"):
        command += [f"--{name}", str(getattr(args, name))]
    fake = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert fake.stdout is not None
    return fake, fake.stdout.readline().strip()


class LagProbe:
    """How late the event loop wakes a timer of `interval` seconds, while it runs."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.lags: list[float] = []

    async def run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.lags.append(time.perf_counter() - start - self.interval)

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.lags) or [0.0]
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return {
            "lag_p50_ms": round(statistics.median(ordered) * 1000, 2),
            "lag_p99_ms": round(p99 * 1000, 2),
            "lag_max_ms": round(ordered[-1] * 1000, 2),
        }


async def measured(work: Callable[[], Awaitable[int]]) -> dict[str, float]:
    """CPU and wall time of `work` (which returns the events it read), with the loop's lag."""
    probe = LagProbe()
    probing = asyncio.create_task(probe.run())
    cpu, wall = time.process_time(), time.perf_counter()
    events = await work()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    probing.cancel()
    return {
        "events": events,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "us_per_event": round(cpu / max(1, events) * 1e6, 1),
        **probe.summary(),
    }


async def looper_run(args: argparse.Namespace, base_url: str, folder: Path) -> dict[str, float]:
    store = await open_store(f"sqlite:///{folder / 'looper.db'}")
    tutor = Tutor(store, "gpt-5-mini")
    assistant = await tutor.add_assistant()
    for index in range(args.threads):
        thread = await tutor.add_thread(assistant.id)
        await tutor.ask(f"question {index}", thread.id)
    out = Lines(args.threads)
    clients = make_clients(API_KEY, base_url, 60, args.threads)
    looper = Looper(store, Completer(clients), ConsoleSink(out, out), concurrency=args.threads)

    async def answer_all() -> int:
        running = asyncio.create_task(looper.run())
        await out.all_in.wait()
        looper.stop()
        await running  # once every answer is committed
        events: int = args.threads * (args.events + EXTRA_EVENTS)
        return events

    profile = cProfile.Profile() if args.profile else None
    try:
        if profile is None:
            return await measured(answer_all)
        with profile:
            return await measured(answer_all)
    finally:
        if profile is not None:
            profile.dump_stats(args.profile)
        await store.close()


async def raw_run(args: argparse.Namespace, base_url: str) -> dict[str, float]:
    """The floor: the same streams read with aiohttp and one `json.loads` per event."""
    body = {
        "model": "gpt-5-mini",
        "stream": True,
        "messages": [{"role": "user", "content": "question"}],
    }
    headers = {"Authorization": f"Bearer {API_KEY}"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def read_one() -> int:
            events = 0
            url = f"{base_url}/chat/completions"
            async with session.post(url, json=body) as response:
                async for line in response.content:
                    if line.startswith(b"data: "):
                        events += 1
                        if line[6:].strip() != b"[DONE]":
                            json.loads(line[6:])
            return events

        async def read_all() -> int:
            counts = await asyncio.gather(*(read_one() for _ in range(args.threads)))
            return sum(counts)

        return await measured(read_all)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=200)
    parser.add_argument("--events", type=int, default=400)
    parser.add_argument("--chars", type=int, default=2000)
    parser.add_argument("--gap", type=float, default=0.005, help="seconds between events")
    parser.add_argument("--latency", type=float, default=0.5, help="seconds to the first")
    parser.add_argument("--profile", help="write the looper's cProfile stats to this file")
    parser.add_argument("--no-floor", action="store_true", help="skip the raw reader")
    parser.add_argument("--asyncio-loop", action="store_true", help="not uvloop, to compare")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


async def main(args: argparse.Namespace) -> None:
    fake, base_url = start_fake(args)
    results: dict[str, Any] = {
        "threads": args.threads,
        "events_per_answer": args.events,
        "loop": type(asyncio.get_running_loop()).__module__,
    }
    try:
        if not args.no_floor:
            results["raw_reader"] = await raw_run(args, base_url)
        with tempfile.TemporaryDirectory() as folder:
            results["looper"] = await looper_run(args, base_url, Path(folder))
    finally:
        fake.terminate()
        fake.wait()
    for name in ("raw_reader", "looper"):
        if name in results:
            print(f"{name:>10}: {results[name]}")
    print(json.dumps(results))


if __name__ == "__main__":
    arguments_given = arguments()
    if arguments_given.serve:
        serve(
            arguments_given.events,
            arguments_given.chars,
            arguments_given.gap,
            arguments_given.latency,
        )
    elif arguments_given.asyncio_loop:
        asyncio.run(main(arguments_given))
    else:
        run_on_fastest_loop(main(arguments_given))  # as the `tutor` commands run
