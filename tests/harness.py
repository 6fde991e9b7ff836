"""What the tests share: fresh stores on disk and on PostgreSQL, `tutor` as its own process
(`Cli`, `Bot`) with its output read line by line (`Lines`), and a sink that records what the
looper delivers (`RecordingSink`)."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import asyncpg
import pytest

from fakes.slack_server import FakeSlack
from looper.completion import Completer
from looper.sinks import Job, Placed

POSTGRES_ADMIN = os.environ.get(
    "TUTOR_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


CREATED_DATABASES: list[str] = []


def on_postgres_server(*statements: str) -> None:
    """Run statements on the test server's admin database (from sync or async tests)."""

    async def run() -> None:
        admin = await asyncpg.connect(POSTGRES_ADMIN)
        try:
            for statement in statements:
                await admin.execute(statement)
        finally:
            await admin.close()

    with ThreadPoolExecutor(1) as worker:
        worker.submit(asyncio.run, run()).result()


def fresh_postgres_database() -> str:
    """A new, empty database on the test server; its URL. Dropped when the session ends.

    CI sets TUTOR_TEST_POSTGRES and must have a server: there an unreachable one fails the
    tests. Elsewhere, without a server, the PostgreSQL tests are skipped.
    """
    name = f"tutor_test_{uuid.uuid4().hex[:12]}"
    try:
        on_postgres_server(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as exc:
        if "TUTOR_TEST_POSTGRES" in os.environ:
            raise
        pytest.skip(f"no PostgreSQL for the tests at {POSTGRES_ADMIN}: {exc}")
    CREATED_DATABASES.append(name)
    base, _, query = POSTGRES_ADMIN.partition("?")
    return base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")


def new_store_url(backend: str, tmp_path: Path) -> str:
    if backend == "postgres":
        return fresh_postgres_database()
    return f"sqlite:///{tmp_path / f'tutor-{uuid.uuid4().hex[:6]}.db'}"


OPEN_COMPLETERS: list[Completer] = []  # closed after each test (conftest.py)


class Cli:
    """Runs `tutor` as a separate process in an empty folder (so no developer's .env leaks in)."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "bot.cli", *args]

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            env={**self.env, **env},
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def ok(self, *args: str, **env: str) -> str:
        """Run, insist on success, return stdout."""
        done = self.run(*args, **env)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            env={**self.env, **env},
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


class Lines:
    """Reads a process's output line by line on a thread, so a test can await one line."""

    def __init__(self, stream: IO[str]) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def next(self, timeout: float = 15) -> str:
        line = self.queue.get(timeout=timeout)
        if line is None:
            raise EOFError("the process closed its output")
        return line

    def rest(self, timeout: float = 15) -> list[str]:
        """Every line still to come, until the process closes its output."""
        lines: list[str] = []
        while (line := self.queue.get(timeout=timeout)) is not None:
            lines.append(line)
        return lines


class Bot:
    """`tutor run` as its own process against the fake Slack and the fake OpenAI."""

    def __init__(self, cli: Cli, slack: FakeSlack) -> None:
        self.cli = cli
        self.slack = slack
        self.process: subprocess.Popen[str] | None = None
        self.log: Lines | None = None

    def start(self, **env: str) -> Bot:
        made = self.slack.connections_made
        self.launch(**env)
        self.slack.wait_until(lambda: self.slack.connections_made > made)
        return self

    def launch(self, **env: str) -> Bot:
        """Start the process without waiting for it to connect."""
        self.process = self.cli.start("run", **env)
        self.log = Lines(self.process.stderr)  # type: ignore[arg-type]
        return self

    def wait_line(self, fragment: str, timeout: float = 30) -> str:
        """The next line of the process's log that contains `fragment`."""
        assert self.log is not None
        while fragment not in (line := self.log.next(timeout)):
            pass
        return line

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=15)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)


class RecordingReply:
    def __init__(self, sink: RecordingSink, job: Job) -> None:
        self.sink = sink
        self.job = job
        self.ref: str | None = job.resumed_ref or f"ref-{len(sink.opened)}"

    async def append(self, delta: str) -> None:
        pass

    async def restart(self) -> None:
        pass

    async def finish(self, text: str) -> dict[str, str]:
        self.sink.done(self.job.thread.id, text)
        return {"ref": self.ref or ""}

    async def fail(self, error: str) -> str | None:
        self.sink.done(self.job.thread.id, f"ERROR {error}")
        return f"failure-{self.job.upto}"


class RecordingSink:
    """Records what the looper delivers and lets a test await a number of deliveries."""

    def __init__(self) -> None:
        self.opened: list[Job] = []
        self.placed: list[Job] = []
        self.delivered: list[tuple[str, str]] = []
        self.changed = asyncio.Condition()

    async def place(self, job: Job) -> Placed:
        """Places a thread at `recorded:<id>`."""
        self.placed.append(job)
        return Placed({**job.thread.metadata, "placed": "yes"}, f"recorded:{job.thread.id}")

    async def open(self, job: Job) -> RecordingReply:
        reply = RecordingReply(self, job)
        self.opened.append(job)
        return reply

    def done(self, thread_id: str, text: str) -> None:
        self.delivered.append((thread_id, text))

        async def notify() -> None:
            async with self.changed:
                self.changed.notify_all()

        asyncio.get_running_loop().create_task(notify())

    async def wait_for(self, count: int, timeout: float = 10) -> None:
        async with self.changed:
            await asyncio.wait_for(
                self.changed.wait_for(lambda: len(self.delivered) >= count), timeout
            )
