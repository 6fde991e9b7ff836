"""The `tutor` CLI as separate processes: the seed's flow, crash safety and bad input."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from fakes.openai_server import FakeOpenAI, Fault
from looper.store.migrations import MIGRATIONS
from tests.harness import Cli, Lines, new_store_url

PHYSICS = (
    "You are an acclaimed Physics Tutor for a top rated high school in the Bay Area of "
    "California, USA."
)
SEED_QUESTIONS = ["How did the universe begin?", "what models?", "what experiments?"]


def last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


def seed_thread(cli: Cli) -> str:
    assistant_id = last_line(cli.ok("assistant", "add"))
    return last_line(cli.ok("thread", "add", "--assistant-id", assistant_id))


def stop(process: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM) -> int:
    process.send_signal(sig)
    return process.wait(timeout=10)


def test_seed_flow_with_a_separate_looper(cli: Cli, fake_openai: FakeOpenAI) -> None:
    thread_id = seed_thread(cli)
    assert thread_id.startswith("thread_")
    looper = cli.start("looper")
    output = Lines(looper.stdout)  # type: ignore[arg-type]
    try:
        for question in SEED_QUESTIONS:
            assert "asked in" in cli.ok("ask", question)
            assert output.next() == f"[{thread_id}] assistant: An answer to: {question}"
    finally:
        assert stop(looper) == 0

    sent = [r.body["messages"] for r in fake_openai.requests]
    assert len(sent) == 3
    history: list[dict[str, str]] = [{"role": "system", "content": PHYSICS}]
    for question, messages in zip(SEED_QUESTIONS, sent, strict=True):
        history.append({"role": "user", "content": question})
        assert messages == history
        history.append({"role": "assistant", "content": f"An answer to: {question}"})

    lines = cli.ok("messages").splitlines()
    assert lines == [f"{m['role']}: {m['content']}" for m in history[1:]]
    assert [line.split(":")[0] for line in lines] == ["user", "assistant"] * 3


def test_an_answer_cut_off_says_so_and_continue_carries_on(
    cli: Cli, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    thread_id = seed_thread(cli)
    fake_openai.add_faults(Fault(cut_off_after_chunks=2))
    looper = cli.start("looper")
    output = Lines(looper.stdout)  # type: ignore[arg-type]
    try:
        cli.ok("ask", "How did the universe begin?")
        cut = output.next().removeprefix(f"[{thread_id}] assistant: ")
        assert "An answer to: How did the universe begin?".startswith(cut) and cut
        assert [output.next(), output.next()] == ["", "_(cut off: ask “continue” for the rest)_"]
        assert "cut off" in cli.run("messages").stderr
        cli.ok("ask", "continue")
        assert output.next() == f"[{thread_id}] assistant: An answer to: continue"
    finally:
        assert stop(looper) == 0
    assert fake_openai.requests[1].body["messages"][1:] == [
        {"role": "user", "content": "How did the universe begin?"},
        {"role": "assistant", "content": cut},  # as the model wrote it, without the note
        {"role": "user", "content": "continue"},
    ]
    shown = cli.run("messages")
    assert shown.stdout.splitlines()[1] == f"assistant: {cut}" and shown.stderr == ""
    with sqlite3.connect(tmp_path / "cli.db") as db:
        marks = db.execute("SELECT metadata FROM messages WHERE role = 'assistant' ORDER BY id")
        assert [json.loads(row[0]).get("cut_off") for row in marks] == ["length", None]


@pytest.mark.parametrize("when", ["mid-stream", "after-stream"])
def test_sigkill_and_restart_stores_exactly_one_answer(
    cli: Cli, fake_openai: FakeOpenAI, when: str
) -> None:
    fake_openai.chunks = 20
    fake_openai.chunk_delay = 0.05 if when == "mid-stream" else 0
    thread_id = seed_thread(cli)
    cli.ok("ask", "How did the universe begin?")
    looper = cli.start("looper")
    if when == "mid-stream":
        fake_openai.wait_streaming(0)
    else:
        fake_openai.wait_requests(1, completed=True)
    looper.kill()
    looper.wait(timeout=10)

    restarted = cli.start("looper")
    try:
        if when == "mid-stream" or not answered(cli):
            assert Lines(restarted.stdout).next().startswith(f"[{thread_id}] assistant:")  # type: ignore[arg-type]
    finally:
        assert stop(restarted) == 0
    roles = [line.split(":")[0] for line in cli.ok("messages").splitlines()]
    assert roles == ["user", "assistant"]


def answered(cli: Cli) -> bool:
    return "assistant:" in cli.ok("messages")


def test_looper_stops_cleanly_on_sigint(cli: Cli) -> None:
    seed_thread(cli)
    looper = cli.start("looper")
    Lines(looper.stderr).next()  # type: ignore[arg-type]  # the start-up line: it is running
    assert stop(looper, signal.SIGINT) == 0


def test_failed_answer_is_reported_and_can_be_retried(cli: Cli) -> None:
    assistant_id = last_line(cli.ok("assistant", "add"))
    cli.ok("thread", "add", "--assistant-id", assistant_id, "--model", "gpt-3.5-turbo")
    cli.ok("ask", "How did the universe begin?")
    looper = cli.start("looper")
    errors = Lines(looper.stderr)  # type: ignore[arg-type]
    try:
        assert errors.next().startswith("looper ")
        assert "`gpt-3.5-turbo` is retired or unknown" in errors.next()
    finally:
        assert stop(looper) == 0
    shown = cli.run("messages")
    assert shown.stdout == "user: How did the universe begin?\n"
    assert "tutor retry" in shown.stderr
    assert cli.ok("thread", "ls").count("error:") == 1
    assert "answer it again" in cli.ok("retry")


NOT_UTF8 = os.fsdecode(b"caf\xe9")  # passed to the process as the bytes themselves
UTF8_LOCALE = {"LC_ALL": "C.UTF-8"}  # so that the process reads its arguments as UTF-8
BAD_INPUTS = {
    "empty question": (["ask", "  "], {}, "the question is empty"),
    "question too long": (
        ["ask", "why? " * 5],
        {"TUTOR_MAX_QUESTION_CHARS": "20"},
        "the question is 25 characters long; the limit is 20",
    ),
    "unknown thread": (["ask", "hi", "--thread-id", "thread_nope"], {}, "no thread 'thread_nope'"),
    "unknown thread messages": (["messages", "--thread-id", "nope"], {}, "no thread 'nope'"),
    "unknown assistant": (["thread", "add", "--assistant-id", "asst_nope"], {}, "no assistant"),
    "assistant without instructions": (["assistant", "add", "--name", "X"], {}, "instructions"),
    "no api key": (["looper"], {"OPENAI_API_KEY": ""}, "OPENAI_API_KEY is not set"),
    "unknown scheme": (["thread", "ls"], {"TUTOR_DATABASE_URL": "mysql://db/x"}, "not usable"),
    "missing folder": (
        ["thread", "ls"],
        {"TUTOR_DATABASE_URL": "sqlite:////no/such/dir/t.db"},
        "no directory",
    ),
    "database is a folder": (
        ["thread", "ls"],
        {"TUTOR_DATABASE_URL": "sqlite:////tmp"},
        "cannot open the database '/tmp'",
    ),
    "a device, not a file": (
        ["thread", "ls"],
        {"TUTOR_DATABASE_URL": "sqlite:////dev/null"},
        "cannot open the database '/dev/null': it is not a regular file",
    ),
    "in-memory store": (["assistant", "add"], {"TUTOR_DATABASE_URL": "sqlite://"}, "names no file"),
    "in-memory store, three slashes": (
        ["assistant", "add"],
        {"TUTOR_DATABASE_URL": "sqlite:///"},
        "names no file",
    ),
    "bad setting": (["thread", "ls"], {"TUTOR_MAX_CONCURRENCY": "many"}, "TUTOR_MAX_CONCURRENCY"),
    "setting not UTF-8": (
        ["thread", "ls"],
        {"TUTOR_MODEL": NOT_UTF8, **UTF8_LOCALE},
        "TUTOR_MODEL is invalid: not UTF-8 text",
    ),
    "question not UTF-8": (
        ["ask", NOT_UTF8],
        UTF8_LOCALE,
        "QUESTION is not UTF-8 text (byte 0xe9)",
    ),
    "thread id not UTF-8": (
        ["ask", "hi", "--thread-id", NOT_UTF8],
        UTF8_LOCALE,
        "--thread-id is not UTF-8 text (byte 0xe9)",
    ),
    "name not UTF-8": (
        ["assistant", "add", "--name", NOT_UTF8, "--instructions", "Answer."],
        UTF8_LOCALE,
        "--name is not UTF-8 text (byte 0xe9)",
    ),
    "nothing to retry": (["retry"], {}, "nothing to retry"),
    "move an unknown assistant": (
        ["assistant", "move", "Nobody", "--model", "gpt-5.4"],
        {},
        "no assistant 'Nobody' (assistants: Physics Tutor)",
    ),
    "move to no model": (
        ["assistant", "move", "Physics Tutor", "--model", " "],
        {},
        "the model name is empty",
    ),
    "edit with a bad icon": (
        ["assistant", "edit", "Physics Tutor", "--icon", "telescope"],
        {},
        "'telescope' is not an icon: use an emoji like :telescope: or an http(s) image URL",
    ),
    "edit with five prompts": (
        ["assistant", "edit", "Physics Tutor", *[f"--prompt=p{n}" for n in range(5)]],
        {},
        "5 prompts: an assistant has at most 4",
    ),
    "edit with an empty prompt": (
        ["assistant", "edit", "Physics Tutor", "--prompt", "ok", "--prompt", " "],
        {},
        "a prompt is empty",
    ),
    "edit nothing": (["assistant", "edit", "Physics Tutor"], {}, "nothing to change"),
    "edit to an empty name": (
        ["assistant", "edit", "Physics Tutor", "--name", " ", "--icon", ":star:"],
        {},
        "the name is empty",
    ),
    "feedback since when": (["feedback", "--since", "soon"], {}, "'soon' is not a duration"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_is_one_line_on_stderr_and_loses_nothing(cli: Cli, case: str) -> None:
    args, env, message = BAD_INPUTS[case]
    seed_thread(cli)
    cli.ok("ask", "kept question")
    done = cli.run(*args, **env)
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("tutor: "), done.stderr
    assert message in done.stderr
    assert cli.ok("messages") == "user: kept question\n"
    assert len(cli.ok("assistant", "ls").splitlines()) == 1


@pytest.mark.parametrize("command", [["thread", "ls"], ["run"]])
def test_an_env_file_that_is_not_utf8_is_one_line(cli: Cli, command: list[str]) -> None:
    env_file = cli.cwd / ".env"
    env_file.write_bytes(b"OPENAI_API_KEY=sk-x\n# caf\xe9 au lait\n")
    done = cli.run(*command)
    assert done.returncode == 1
    assert done.stderr == "tutor: .env is not UTF-8 text (byte 0xe9 on line 2): save it as UTF-8\n"


def test_models_openai_will_shut_down_are_named_at_start_and_threads_can_move(
    cli: Cli, fake_openai: FakeOpenAI
) -> None:
    cli.ok("assistant", "add", "--name", "Poet", "--instructions", "Rhyme.", "--model", "gpt-4o")
    tutor = last_line(cli.ok("assistant", "add"))
    old = last_line(cli.ok("thread", "add", "--assistant-id", tutor, TUTOR_MODEL="gpt-5-mini"))
    cli.ok("thread", "add", "--assistant-id", tutor, "--model", "gpt-5.4")
    warned = start_warnings(cli, TUTOR_MODEL="gpt-5-mini")
    assert sorted(warned) == ["gpt-4o (assistant 'Poet')", "gpt-5-mini (TUTOR_MODEL, 1 thread)"]
    assert (
        "at OpenAI on 2026-12-11: move to gpt-5.4-mini"
        in warned["gpt-5-mini (TUTOR_MODEL, 1 thread)"]
    )
    assert "at OpenAI on 2027-01-14: move to gpt-5.4 " in warned["gpt-4o (assistant 'Poet')"]
    assert sorted(start_warnings(cli)) == ["gpt-4o (assistant 'Poet')", "gpt-5-mini (1 thread)"]

    moved = cli.ok(
        "assistant", "move", "physics tutor", "--model", "gpt-5.4-mini", "--from", "gpt-5-mini"
    )
    assert moved == "moved assistant 'Physics Tutor' and 1 of its threads to gpt-5.4-mini\n"
    assert sorted(start_warnings(cli)) == ["gpt-4o (assistant 'Poet')"]
    assert [line.split("\t")[2] for line in cli.ok("thread", "ls").splitlines()] == [
        "gpt-5.4",
        "gpt-5.4-mini",
    ]
    assert "\tPhysics Tutor\t:atom_symbol:\tgpt-5.4-mini\t" in cli.ok("assistant", "ls")
    looper = cli.start("looper")
    try:
        cli.ok("ask", "still here?", "--thread-id", old)
        assert Lines(looper.stdout).next().endswith("An answer to: still here?")  # type: ignore[arg-type]
    finally:
        assert stop(looper) == 0
    assert fake_openai.requests[-1].body["model"] == "gpt-5.4-mini"


def start_warnings(cli: Cli, **env: str) -> dict[str, str]:
    """What a starting `tutor looper` warns of, by model and what uses it."""
    looper = cli.start("looper", **env)
    log = Lines(looper.stderr)  # type: ignore[arg-type]
    assert log.next().startswith("looper ")
    assert stop(looper) == 0
    lines = []
    with contextlib.suppress(EOFError):
        while True:
            lines.append(log.next())
    assert all(line.startswith("tutor: warning: ") for line in lines), lines
    return {line[16:].partition(") ")[0] + ")": line for line in lines}


def test_no_thread_yet(cli: Cli) -> None:
    done = cli.run("ask", "hello")
    assert done.returncode == 1 and "tutor thread add" in done.stderr


def test_a_file_that_is_not_a_database(cli: Cli, tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    done = cli.run("thread", "ls", TUTOR_DATABASE_URL=f"sqlite:///{junk}")
    assert done.returncode == 1 and "cannot open the database" in done.stderr
    assert junk.read_bytes() == b"this is not sqlite" * 100


def test_move_a_sqlite_store_into_postgresql(cli: Cli, tmp_path: Path) -> None:
    thread_id = seed_thread(cli)
    cli.ok("ask", "How did the universe begin?")
    dump = tmp_path / "dump.json"
    cli.ok("export", str(dump))
    target = new_store_url("postgres", tmp_path)
    migrated = cli.ok("migrate", **{"TUTOR_DATABASE_URL": target})
    assert f"schema version {len(MIGRATIONS)}" in migrated
    assert "imported 1 threads, 1 messages" in cli.ok(
        "import", str(dump), TUTOR_DATABASE_URL=target
    )
    moved = cli.ok("messages", "--thread-id", thread_id, TUTOR_DATABASE_URL=target)
    assert moved == "user: How did the universe begin?\n"
    again = cli.run("import", str(dump), TUTOR_DATABASE_URL=target)
    assert again.returncode == 1 and "not empty" in again.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "is not a tutor export" in cli.run("import", str(bad)).stderr
    bad.write_bytes(b'{"assistants": ["caf\xe9"]}')
    assert cli.run("import", str(bad)).stderr.endswith("byte 0xe9 is not UTF-8\n")


def test_refuses_a_schema_newer_than_it_knows(cli: Cli, tmp_path: Path) -> None:
    seed_thread(cli)
    database = cli.env["TUTOR_DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(database) as db:
        db.execute("INSERT INTO schema_migrations VALUES (99, 'm099_future', 'later')")
    for command in (["thread", "ls"], ["looper"], ["migrate"]):
        done = cli.run(*command)
        assert done.returncode == 1 and "newer than this tutor knows" in done.stderr


def test_assistant_edit_changes_what_is_given(cli: Cli) -> None:
    seed_thread(cli)
    said = cli.ok(
        "assistant", "edit", "physics tutor", "--name", "Sky Guide", "--icon", ":telescope:",
        "--prompt", "Why is the sky blue?", "--prompt", "What is a star?",
    )  # fmt: skip
    assert said.startswith("edited assistant 'Sky Guide' (asst_")
    moved = cli.ok("assistant", "edit", "Sky Guide", "--model", "gpt-5.4")
    assert "moved 1 of its threads to gpt-5.4" in moved
    [listed] = cli.ok("assistant", "ls").splitlines()
    assert "\tSky Guide\t:telescope:\tgpt-5.4\t" in listed and "Physics Tutor" in listed
    assert cli.ok("feedback") == "no feedback since 7d\n"
