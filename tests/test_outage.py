"""A `tutor looper` on PostgreSQL while its database goes away and comes back: a line each
way, no tracebacks, and the question in flight answered once the database is back."""

from __future__ import annotations

import time
from pathlib import Path

from fakes.openai_server import FakeOpenAI
from tests.harness import Cli, Lines, new_store_url, on_postgres_server
from tests.test_cli import seed_thread, stop


def database_name(url: str) -> str:
    return url.partition("?")[0].rsplit("/", 1)[1]


def take_away(name: str) -> None:
    """Refuse new connections (which stops even a superuser) and end the open ones."""
    on_postgres_server(
        f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false',
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
    )


def bring_back(name: str) -> None:
    on_postgres_server(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def read_until(log: Lines, seen: list[str], words: str) -> None:
    """Read the log into `seen` until a line has `words` (a log full of other lines, such
    as a traceback a second, fails too)."""
    deadline = time.monotonic() + 30
    while not any(words in line for line in seen):
        assert time.monotonic() < deadline, f"no {words!r} in the log: {seen[-3:]}"
        seen.append(log.next(timeout=30))


def test_a_looper_outlives_a_postgresql_outage(
    cli: Cli, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    url = new_store_url("postgres", tmp_path)
    cli.env.update(TUTOR_DATABASE_URL=url, TUTOR_LEASE_SECONDS="3")
    thread_id = seed_thread(cli)
    fake_openai.hold()
    looper = cli.start("looper")
    log, output = Lines(looper.stderr), Lines(looper.stdout)  # type: ignore[arg-type]
    seen = [log.next()]
    try:
        cli.ok("ask", "asked before the outage")
        fake_openai.wait_requests(1)  # its answer is being written
        take_away(database_name(url))
        read_until(log, seen, "the store went away")
        fake_openai.release()  # the answer is done while the database is away
        answer = f"[{thread_id}] assistant: An answer to: asked before the outage"
        assert output.next() == answer
        read_until(log, seen, f"could not store the answer to {thread_id}")
        bring_back(database_name(url))
        read_until(log, seen, "the store is back")
        assert output.next() == answer  # written again, once its lease ran out
    finally:
        bring_back(database_name(url))
        assert stop(looper) == 0
    seen.extend(iter_rest(log))
    assert not [line for line in seen if "Traceback" in line or line.startswith(" ")], seen
    assert sum("went away" in line for line in seen) == 1
    assert sum("is back" in line for line in seen) == 1
    assert cli.ok("messages") == (
        "user: asked before the outage\nassistant: An answer to: asked before the outage\n"
    )


def iter_rest(log: Lines) -> list[str]:
    rest: list[str] = []
    try:
        while True:
            rest.append(log.next(timeout=5))
    except EOFError:
        return rest
