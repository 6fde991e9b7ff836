"""The benchmarks still run: each entry point, tiny (3 answers, a short first token), end to end.

Benchmarks print numbers and assert none; these tests check only that every answer was
answered and a table printed, never how fast. Left out to stay cheap: the classroom scenario
(five seconds of asking) and `bench.replica_bench` (three replicas and PostgreSQL); both are
built from the parts run here, and mypy checks their wiring.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.slack_bench import spread

ROOT = Path(__file__).resolve().parents[1]
TINY = ("--answers", "3", "--first-token", "0.05")


def run_bench(name: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def json_lines(output: str) -> list[dict[str, Any]]:
    """The JSON object each scenario prints, after its name when it has one."""
    lines = [line[line.index("{") :] for line in output.splitlines() if "{" in line]
    return [json.loads(line) for line in lines]


def test_slack_bench_runs_every_scenario_against_its_floor() -> None:
    output = run_bench("slack_bench", *TINY, "--class-size", "0", "--runs", "2")
    results = json_lines(output)
    # asks, mentions, and asks with one more asked while they are answered; twice
    assert [r["answers"] for r in results] == [3, 3, 4, 3, 3, 4]
    at_once = results[:2] + results[3:5]
    assert all(r["floor_s"] > 0 and r["events"] > 0 for r in at_once)
    assert all(r["slack_floor_first_sign_p50_ms"] > 0 for r in results)  # the Slack floor ran
    assert all(r["slack_floor_reading"] >= 3 for r in results)  # and read answers
    late = [results[2], results[5]]
    assert all(r["floor_s"] is None and r["ack_p99_ms"] > 0 for r in late)  # the late ask's
    assert "total/floor" in output and "CPU µs/event" in output and "first sign/floor" in output
    assert "2 runs" in output


def test_several_runs_show_each_number_as_its_range() -> None:
    runs = [
        {"answers": 3, "ack_p99_ms": 40.5, "calls": {"a": 1}, "slack_floor_ack_p99_ms": None},
        {"answers": 3, "ack_p99_ms": 61.0, "calls": {"a": 2}, "slack_floor_ack_p99_ms": 9.0},
        {"answers": 3, "ack_p99_ms": 52.2, "calls": {"a": 3}, "slack_floor_ack_p99_ms": 8.0},
    ]
    assert spread(runs) == {
        "answers": 3,  # the same in every run
        "ack_p99_ms": "40.5–61.0",
        "calls": {"a": 1},  # not a number: the first run's
        "slack_floor_ack_p99_ms": None,  # missing from a run: no range
    }
    assert spread(runs[1:2]) == runs[1]


def test_looper_bench_answers_every_pending_thread() -> None:
    output = run_bench("looper_bench", *TINY, "--idle", "10")
    [result] = json_lines(output)
    assert (result["answered"], result["failed"]) == (3, 0)
    assert result["floor s"] > 0
    assert "one poll over 10 idle threads" in output


def test_fairness_bench_compares_the_flood_with_its_floor() -> None:
    output = run_bench("fairness_bench", *TINY, "--concurrency", "4")
    assert "floor (no flood)" in output and "flood, turns without a cap" in output


def test_materials_bench_times_every_case() -> None:
    output = run_bench("materials_bench", "--pages", "5", "--rounds", "1", "--postgres", "")
    results = json_lines(output)
    assert [r["case"] for r in results] == ["before", "no materials", "5 pages"]
    assert all(r["mean_ms"] >= 0 for r in results)
