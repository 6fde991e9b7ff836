"""Slack bridge benchmark: the real `tutor run` process against the fake Slack (tiers enforced)
and a fake OpenAI with a fixed latency L.

    .venv/bin/python -m bench.slack_bench [--latency 1.0] [--count 200] [--class-size 30]

Scenarios: COUNT `/tutor ask` at once, one per channel; COUNT top-level mentions, one per
channel; a classroom of CLASS_SIZE `/tutor ask` within 5 s in one channel. Prints numbers;
asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fakes.openai_server import API_KEY
from fakes.slack_server import APP_TOKEN, BOT_TOKEN, BOT_USER, FakeSlack

STUDENT = "U0STUDENT1"
VISIBLE = {"chat.startStream", "assistant.threads.setStatus", "chat.postMessage"}


def start_fake_openai(latency: float, answer_chars: int) -> tuple[subprocess.Popen[str], str]:
    fake = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fakes.openai_server",
            "--latency",
            str(latency),
            "--answer-chars",
            str(answer_chars),
            "--chunks",
            "20",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert fake.stdout is not None
    return fake, fake.stdout.readline().strip()


class Run:
    """A fresh fake Slack, database and `tutor run` process(es) for one scenario."""

    def __init__(
        self,
        openai_url: str,
        folder: Path,
        name: str,
        database_url: str | None = None,
        replicas: int = 1,
    ) -> None:
        self.replicas = replicas
        self.slack = FakeSlack(enforce_tiers=True).start()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TUTOR_", "SLACK_"))}
        env.update(
            TUTOR_DATABASE_URL=database_url or f"sqlite:///{folder / (name + '.db')}",
            OPENAI_API_KEY=API_KEY,
            OPENAI_BASE_URL=openai_url,
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_APP_TOKEN=APP_TOKEN,
            SLACK_API_URL=self.slack.base_url,
            TUTOR_MAX_CONCURRENCY="256",
            TUTOR_REPLICAS=str(replicas),
        )
        self.processes = []
        for index in range(replicas):
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bot.cli", "run"],
                    env=env,
                    cwd=folder,
                    stderr=subprocess.DEVNULL,
                )
            )
            self.slack.wait_connected(index + 1)
        self.warm_up()

    def warm_up(self) -> None:
        """A few questions first: each replica's Bolt checks its token, clients open."""
        channels = [f"C0WARMUP{i:02d}" for i in range(3 * len(self.processes))]
        for channel in channels:
            self.slack.wait_ack(self.slack.slash(STUDENT, channel, "ask warm up"))
        self.wait_answered(channels, timeout=30)
        self.calls_before = len(self.slack.calls)

    def answers(self, channel: str) -> list[dict[str, Any]]:
        return [
            m
            for m in self.slack.messages(channel)
            if (m.get("metadata") or {}).get("event_type") == "tutor_answer"
            and not m.get("streaming")
        ]

    def wait_answered(
        self, channels: list[str], per_channel: int = 1, timeout: float = 600
    ) -> None:
        finished = self.slack.finished
        wanted = len(channels) * per_channel
        self.slack.wait_until(lambda: sum(finished.get(c, 0) for c in channels) >= wanted, timeout)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(timeout=20)
        self.slack.stop()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def report(
    run: Run, started: dict[str, float], envelopes: list[str], latency: float
) -> dict[str, Any]:
    """Numbers for one scenario; `started` maps each channel to when its question went out."""
    calls = run.slack.calls[run.calls_before :]
    first_sign: dict[str, float] = {}
    root_post: dict[str, float] = {}
    for call in calls:
        root_channel = str(call.args.get("channel"))
        if call.method == "chat.postMessage" and not call.args.get("thread_ts"):
            if root_channel in started:
                root_post.setdefault(root_channel, call.at - started[root_channel])
        channel = str(call.args.get("channel") or call.args.get("channel_id") or "")
        threaded = call.method != "chat.postMessage" or call.args.get("thread_ts")
        if channel in started and call.method in VISIBLE and threaded and call.status == 200:
            first_sign.setdefault(channel, call.at - started[channel])
    acks = [run.slack.envelopes[e].ack_latency or 0.0 for e in envelopes]
    finished = max(c.at for c in calls if c.status == 200)
    by_method: dict[str, int] = {}
    for call in calls:
        by_method[call.method] = by_method.get(call.method, 0) + 1
    return {
        "answers": sum(len(run.answers(c)) for c in started),
        "ack_p50_ms": round(statistics.median(acks) * 1000, 1),
        "ack_p99_ms": round(percentile(acks, 0.99) * 1000, 1),
        "first_sign_p50_ms": round(statistics.median(first_sign.values()) * 1000, 1),
        "first_sign_p99_ms": round(percentile(list(first_sign.values()), 0.99) * 1000, 1),
        "root_post_p50_ms": round(statistics.median(root_post.values()) * 1000, 1)
        if root_post
        else None,
        "total_s": round(finished - min(started.values()), 2),
        "total_over_L": round((finished - min(started.values())) / latency, 2),
        "calls_per_answer": round(len(calls) / len(started), 2),
        "rate_limited_429": sum(c.status == 429 for c in calls),
        "calls": by_method,
    }


def fan_out(
    run: Run, count: int, latency: float, send: Callable[[FakeSlack, str], str]
) -> dict[str, Any]:
    channels = [f"C0BENCH{i:03d}" for i in range(count)]
    for channel in channels:
        run.slack.add_channel(channel)
        run.slack.add_user(student_in(channel))  # one person a channel: nobody waits a turn
    started: dict[str, float] = {}
    envelopes = []
    for channel in channels:
        started[channel] = time.monotonic()
        envelopes.append(send(run.slack, channel))
    run.wait_answered(channels)
    return report(run, started, envelopes, latency)


def student_in(channel: str) -> str:
    return "U0" + channel.removeprefix("C0")


def ask(slack: FakeSlack, channel: str) -> str:
    return slack.slash(student_in(channel), channel, f"ask question for {channel}")


def mention(slack: FakeSlack, channel: str) -> str:
    text = f"<@{BOT_USER}> question for {channel}"
    ts = slack.user_says(student_in(channel), channel, text, deliver=False)
    [message] = [m for m in slack.messages(channel) if m["ts"] == ts]
    slack.deliver_message_events(channel, message)
    return list(slack.envelopes)[-1]  # the app_mention envelope


def classroom(run: Run, size: int, latency: float) -> dict[str, Any]:
    channel = "C0CLASSRM1"
    run.slack.add_channel(channel)
    started = {channel: time.monotonic()}
    envelopes = []
    for index in range(size):
        run.slack.add_user(f"U0KID{index:04d}")
        envelopes.append(run.slack.slash(f"U0KID{index:04d}", channel, f"ask question {index}"))
        time.sleep(5 / size)  # a class asks over five seconds, not in one instant
    run.wait_answered([channel], per_channel=size)
    result = report(run, started, envelopes, latency)
    result["calls_per_answer"] = round(sum(result["calls"].values()) / size, 2)
    # The floor Slack allows: every root and every answer not streamed is a post in this one
    # channel (1 a second after a burst of 3); at most 20 answers can be streamed (Tier 2).
    result["floor_s"] = round(classroom_floor(size, latency), 1)
    return result


def classroom_floor(size: int, latency: float) -> float:
    """The least time Slack's limits allow for `size` answers in one channel.

    Every root message and every answer not streamed is a post in this channel (1 a second
    after a burst of 3); streams need Tier 2 starts and stops (20 at once, 20 more a minute).
    """
    total = 5 + latency
    for _ in range(50):  # fixed point: more time allows more streams, fewer posts
        streams = min(size, 20 + 20 * total / 60)
        total = max(5 + latency, size + (size - streams) - 3 + latency)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--class-size", type=int, default=30)
    parser.add_argument("--answer-chars", type=int, default=2000)
    args = parser.parse_args()
    openai, url = start_fake_openai(args.latency, args.answer_chars)
    results: dict[str, Any] = {"latency_s": args.latency}
    try:
        with tempfile.TemporaryDirectory() as folder:
            scenarios: list[tuple[str, Callable[[Run], dict[str, Any]]]] = [
                ("asks", lambda run: fan_out(run, args.count, args.latency, ask)),
                ("mentions", lambda run: fan_out(run, args.count, args.latency, mention)),
                ("classroom", lambda run: classroom(run, args.class_size, args.latency)),
            ]
            for name, scenario in scenarios:
                run = Run(url, Path(folder), name)
                try:
                    results[name] = scenario(run)
                finally:
                    run.stop()
                print(name, json.dumps(results[name]), flush=True)
    finally:
        openai.terminate()
        openai.wait()


if __name__ == "__main__":
    main()
