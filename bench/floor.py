"""What every benchmark measures against: the fake model in its own process, and the floor, a
raw reader of the same streams doing nothing else, measured in the same run.

    .venv/bin/python -m bench.floor BASE_URL ANSWERS

reads ANSWERS concurrent streams from a running fake model (aiohttp, one `json.loads` per
server-sent event) in a fresh process and prints what it took as JSON. Benchmarks call
`measure_floor`, which does that, before or after tutor's run against the same fake process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from fakes.openai_server import API_KEY

EVENTS = 400  # an answer streams one token an event, as OpenAI streams
CHARS = 2000
MODEL = "gpt-5-mini"
ROOT = Path(__file__).resolve().parents[1]  # where `python -m bench…` and `fakes…` run


class FakeModel:
    """`python -m fakes.openai_server` in its own process: answers of `chars` characters
    streamed as `events` server-sent events, after `first_token` seconds."""

    def __init__(self, first_token: float, events: int = EVENTS, chars: int = CHARS) -> None:
        self.first_token = first_token
        self.events = events
        self.chars = chars
        self.base_url = ""
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> FakeModel:
        self._process = subprocess.Popen(
            [
                *(sys.executable, "-m", "fakes.openai_server"),
                *("--first-token", str(self.first_token)),
                *("--events", str(self.events)),
                *("--chars", str(self.chars)),
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self._process.stdout is not None
        self.base_url = self._process.stdout.readline().strip()  # printed once it listens
        if not self.base_url:
            raise RuntimeError("the fake model did not start")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait()


@dataclass(frozen=True)
class Floor:
    """How long `answers` concurrent streams take to read with nothing else to do."""

    answers: int
    seconds: float
    events: int  # server-sent events read, all streams (the usage chunk included, not [DONE])
    cpu_seconds: float  # the reader's own CPU

    @property
    def events_per_answer(self) -> float:
        return self.events / max(1, self.answers)

    @property
    def cpu_us_per_event(self) -> float:
        return cpu_us_per_event(self.cpu_seconds, self.events)


def measure_floor(base_url: str, answers: int) -> Floor:
    """Read `answers` streams at once from the fake model, in a fresh process."""
    printed = subprocess.run(
        [sys.executable, "-m", "bench.floor", base_url, str(answers)],
        check=True,
        capture_output=True,
        cwd=ROOT,
        text=True,
    ).stdout
    return Floor(**json.loads(printed))


async def read_streams(base_url: str, answers: int) -> Floor:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        cpu, start = time.process_time(), time.perf_counter()
        read = await asyncio.gather(*(read_stream(session, base_url, n) for n in range(answers)))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return Floor(answers, seconds, sum(events for events, _ in read), cpu)


async def read_stream(session: aiohttp.ClientSession, base_url: str, index: int) -> tuple[int, str]:
    """One streamed answer, each event parsed and its text kept: the events read, the text."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"question {index}"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"Authorization": f"Bearer {API_KEY}"}
    events, text = 0, []
    async with session.post(f"{base_url}/chat/completions", json=body, headers=headers) as reply:
        reply.raise_for_status()
        async for line in reply.content:
            if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                continue
            chunk = json.loads(line[6:])
            events += 1
            for choice in chunk["choices"]:
                text.append(choice["delta"].get("content") or "")
    return events, "".join(text)


def process_cpu(pid: int) -> float:
    """CPU seconds (user and system) a process has used so far, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_us_per_event(cpu_seconds: float, events: float) -> float:
    return cpu_seconds / max(1.0, events) * 1e6


def table(rows: list[dict[str, Any]]) -> str:
    """Rows of equal keys as an aligned text table, the keys as its header; a column no row
    has a number for ("-" in each) is left out."""
    headers = [h for h in rows[0] if any(row[h] != "-" for row in rows)]
    cells = [headers, *([str(row[h]) for h in headers] for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("base_url")
    parser.add_argument("answers", type=int)
    args = parser.parse_args()
    floor = asyncio.run(read_streams(args.base_url, args.answers))
    print(json.dumps(asdict(floor)))


if __name__ == "__main__":
    main()
