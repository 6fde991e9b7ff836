"""Slack bridge benchmark: the real `tutor run` process against the fake Slack (tiers enforced)
and the fake model in its own process (answers of ~2,000 characters streamed as ~400 events,
the first after L seconds).

    .venv/bin/python -m bench.slack_bench [--first-token 1.0] [--answers 200] [--class-size 30]
        [--runs 1]

Scenarios: ANSWERS `/tutor ask` at once, one per channel; ANSWERS top-level mentions, one per
channel; ANSWERS asks at once and, while their answers stream, ANSWERS/20 more over a second
(the ack and first sign are then the late asks'); a classroom of CLASS_SIZE `/tutor ask`
within 5 s in one channel (0: skipped). After each, the floor: a raw reader of the same number
of streams from the same fake model, doing nothing else (`bench.floor`). After the bursts, the
Slack floor too: the least a bot could do for the same questions (acknowledge, then "is
thinking…", then read the answer from the same fake model and post it; `bench.slack_floor`)
in a fresh process against a fresh fake Slack; its ack and first-sign latencies are the fake
Slack's and this machine's share of tutor's. Prints a table
(and each row as JSON); asserts nothing.
"""

from __future__ import annotations

import argparse
import functools
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

from bench.floor import FakeModel, Floor, cpu_us_per_event, measure_floor, process_cpu, table
from bench.slack_floor import start_slack_floor
from fakes.openai_server import API_KEY
from fakes.slack_server import APP_TOKEN, BOT_TOKEN, BOT_USER, Call, FakeSlack
from looper.cli import fastest_loop

STUDENT = "U0STUDENT1"
VISIBLE = {"chat.startStream", "assistant.threads.setStatus", "chat.postMessage"}
Send = Callable[[FakeSlack, str], str]  # one question into a channel; its envelope id
Scenario = Callable[[], dict[str, Any]]  # one run of a scenario, measured: its numbers
Asked = tuple[dict[str, float], list[str]]  # when each channel's question went out; envelopes


def poll_until(check: Callable[[], bool], timeout: float) -> None:
    """Until `check()` holds, looking every 10 ms. Not the fake's `wait_until`, which wakes
    this thread at every change: under a burst that is thousands of wake-ups, each taking
    the GIL from the fake Slack beside it and adding to every latency it measures."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("not answered in time")
        time.sleep(0.01)


def fake_slack() -> FakeSlack:
    """A fake Slack with Slack's tiers enforced, on the fastest event loop: real Slack takes
    none of this machine, so its fake should take as little as it can."""
    return FakeSlack(enforce_tiers=True, new_loop=fastest_loop()).start()


class Fresh:
    """A fresh fake Slack (tiers enforced) with an app answering it: tutor or the Slack floor."""

    slack: FakeSlack
    calls_before = 0  # the Web API calls made before the scenario's questions

    def wait_answered(
        self, channels: list[str], per_channel: int = 1, timeout: float = 600
    ) -> None:
        raise NotImplementedError

    def warm_up(self, count: int) -> None:
        """A few questions first, so that the app's connections are open; then count calls."""
        channels = [f"C0WARMUP{i:02d}" for i in range(count)]
        for channel in channels:
            self.slack.wait_ack(self.slack.slash(STUDENT, channel, "ask warm up"))
        self.wait_answered(channels, timeout=30)
        self.calls_before = len(self.slack.calls)


class Run(Fresh):
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
        self.slack = fake_slack()
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
        self.warm_up(3 * replicas)  # each replica's Bolt checks its token, clients open
        self.cpu_before = self.cpu()

    def cpu(self) -> float:
        """CPU seconds the tutor process(es) have used so far, every thread included."""
        return sum(process_cpu(process.pid) for process in self.processes)

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
        poll_until(lambda: sum(finished.get(c, 0) for c in channels) >= wanted, timeout)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(timeout=20)
        self.slack.stop()


class FloorRun(Fresh):
    """A fresh fake Slack and the Slack floor (`bench.slack_floor`) in its own process, told
    to stop after the first sign of `questions` questions (warm-up ones besides), reading
    each answer from the fake model at `model_url`."""

    WARM_UPS = 3

    def __init__(self, questions: int, model_url: str) -> None:
        self.slack = fake_slack()
        self.process = start_slack_floor(self.slack.base_url, self.WARM_UPS + questions, model_url)
        self.asked = 0  # questions waited for so far: one "is thinking…" each
        try:
            self.slack.wait_connected()
            self.warm_up(self.WARM_UPS)
        except BaseException:
            self.stop()
            raise

    def wait_answered(self, channels: list[str], per_channel: int = 1, timeout: float = 60) -> None:
        """Until "is thinking…" shows under each question (all the floor does), or it stops."""
        self.asked += len(channels) * per_channel
        shown = self.slack.statuses
        poll_until(
            lambda: len(shown) >= self.asked or self.process.poll() is not None, min(timeout, 60)
        )
        if len(shown) < self.asked:
            raise RuntimeError(f"the Slack floor stopped early ({self.process.returncode})")

    def stop(self) -> dict[str, Any]:
        """Its own account, once it has stopped (told to, when it has not by itself)."""
        try:
            printed = ended(self.process)
        finally:
            self.slack.stop()
        return dict(json.loads(printed)) if self.process.returncode == 0 else {}


def ended(process: subprocess.Popen[str]) -> str:
    """What a process printed, once it has exited: by itself, on SIGTERM, or killed."""
    stops: tuple[Callable[[], None] | None, ...] = (None, process.terminate, process.kill)
    for stop in stops:
        if stop is not None:
            stop()
        try:
            return process.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:
            continue
    return process.communicate()[0]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def milliseconds(seconds: float) -> float:
    return round(seconds * 1000, 1)


def first_signs(calls: list[Call], started: dict[str, float]) -> list[float]:
    """From each question out to the first threaded visible call in its channel Slack took."""
    first_sign: dict[str, float] = {}
    for call in calls:
        channel = str(call.args.get("channel") or call.args.get("channel_id") or "")
        threaded = call.method != "chat.postMessage" or call.args.get("thread_ts")
        if channel in started and call.method in VISIBLE and threaded and call.status == 200:
            first_sign.setdefault(channel, call.at - started[channel])
    return list(first_sign.values())


def latencies(run: Fresh, started: dict[str, float], envelopes: list[str]) -> dict[str, float]:
    """Ack (as the fake Slack measures it) and first-sign latencies of one burst."""
    acks = [run.slack.envelopes[e].ack_latency or 0.0 for e in envelopes]
    signs = first_signs(run.slack.calls[run.calls_before :], started)
    return {
        "ack_p50_ms": milliseconds(statistics.median(acks)),
        "ack_p99_ms": milliseconds(percentile(acks, 0.99)),
        "first_sign_p50_ms": milliseconds(statistics.median(signs)),
        "first_sign_p99_ms": milliseconds(percentile(signs, 0.99)),
    }


def report(run: Run, started: dict[str, float], envelopes: list[str]) -> dict[str, Any]:
    """Numbers for one scenario; `started` maps each channel to when its question went out."""
    cpu_seconds = run.cpu() - run.cpu_before
    calls = run.slack.calls[run.calls_before :]
    root_post: dict[str, float] = {}
    for call in calls:
        root_channel = str(call.args.get("channel"))
        if call.method == "chat.postMessage" and not call.args.get("thread_ts"):
            if root_channel in started:
                root_post.setdefault(root_channel, call.at - started[root_channel])
    finished = max(c.at for c in calls if c.status == 200)
    by_method: dict[str, int] = {}
    for call in calls:
        by_method[call.method] = by_method.get(call.method, 0) + 1
    answers = sum(len(run.answers(c)) for c in started)
    return {
        "answers": answers,
        **latencies(run, started, envelopes),
        "root_post_p50_ms": milliseconds(statistics.median(root_post.values()))
        if root_post
        else None,
        "total_s": round(finished - min(started.values()), 2),
        "calls_per_answer": round(len(calls) / max(1, answers), 2),
        "rate_limited_429": sum(c.status == 429 for c in calls),
        "tutor_cpu_s": round(cpu_seconds, 2),
        "calls": by_method,
    }


def against(result: dict[str, Any], floor: Floor, floor_s: float | None) -> dict[str, Any]:
    """The result with its floor (measured in the same run) and the ratios to it; no total
    over the floor where there is no `floor_s` (questions asked over time, not at once).

    CPU per event: the tutor process's CPU over the events its answers streamed (as many a
    stream as the floor's reader counted)."""
    events = result["answers"] * floor.events_per_answer
    return {
        **result,
        "floor_s": round(floor_s, 2) if floor_s else None,
        "total_over_floor": round(result["total_s"] / floor_s, 2) if floor_s else None,
        "events": round(events),
        "cpu_us_per_event": round(cpu_us_per_event(result["tutor_cpu_s"], events), 1),
        "floor_cpu_us_per_event": round(floor.cpu_us_per_event, 1),
    }


def burst(run: Fresh, count: int, send: Send) -> Asked:
    """`count` questions at once, one a channel, until answered."""
    channels = new_channels(run.slack, count, "C0BENCH")
    asked = send_each(run.slack, channels, send)
    run.wait_answered(channels)
    return asked


def burst_then_late(run: Fresh, count: int, latency: float) -> tuple[Asked, Asked]:
    """`count` asks at once; then, while their answers stream (from `latency` + 0.3 s on),
    `late_asks(count)` more over a second, each in a channel of its own; until all are
    answered. Every question, and the late ones alone."""
    channels = new_channels(run.slack, count, "C0BENCH")
    late_channels = new_channels(run.slack, late_asks(count), "C0LATE")
    started, envelopes = send_each(run.slack, channels, ask)
    time.sleep(latency + 0.3)  # the first tokens arrive about now
    late = send_each(run.slack, late_channels, ask, every=1 / len(late_channels))
    run.wait_answered(channels + late_channels)
    late_started, late_envelopes = late
    return ({**started, **late_started}, envelopes + late_envelopes), late


def late_asks(count: int) -> int:
    return max(1, count // 20)


def new_channels(slack: FakeSlack, count: int, prefix: str) -> list[str]:
    """`count` channels, each with its own asker (so that nobody waits a turn)."""
    channels = [f"{prefix}{i:03d}" for i in range(count)]
    for channel in channels:
        slack.add_channel(channel)
        slack.add_user(student_in(channel))
    return channels


def send_each(slack: FakeSlack, channels: list[str], send: Send, every: float = 0.0) -> Asked:
    """One question into each channel: at once, or `every` seconds apart."""
    started: dict[str, float] = {}
    envelopes = []
    for channel in channels:
        started[channel] = time.monotonic()
        envelopes.append(send(slack, channel))
        if every:
            time.sleep(every)
    return started, envelopes


def fan_out(run: Run, count: int, send: Send) -> dict[str, Any]:
    return report(run, *burst(run, count, send))


def asks_while_answering(run: Run, count: int, latency: float) -> dict[str, Any]:
    """The whole run's numbers, but the ack and first sign of the late asks alone, and how
    many of them went out before the burst's last answer was delivered."""
    everything, (late_started, late_envelopes) = burst_then_late(run, count, latency)
    last_answer = max(c.at for c in run.slack.calls if c.args.get("channel") not in late_started)
    return {
        **report(run, *everything),
        **latencies(run, late_started, late_envelopes),
        "late_while_answering": sum(at < last_answer for at in late_started.values()),
    }


def measure_slack_floor(
    model_url: str, questions: int, play: Callable[[Fresh], Asked]
) -> dict[str, Any]:
    """The Slack floor's latencies for the same `questions` (`slack_floor_…`), as `play` asks
    them and picks those to time, their answers streamed from `model_url`; none when it
    failed."""
    try:
        floor = FloorRun(questions, model_url)
    except (RuntimeError, TimeoutError) as error:
        print(f"the Slack floor did not start: {error}", file=sys.stderr)
        return {}
    numbers: dict[str, Any] = {}
    try:
        numbers = latencies(floor, *play(floor))
    except (RuntimeError, TimeoutError, statistics.StatisticsError) as error:
        print(f"the Slack floor failed: {error}", file=sys.stderr)
    finally:
        done = floor.stop()
        numbers["failed"] = done.get("failed")  # first signs Slack refused
        numbers["reading"] = done.get("reading")  # answers it began to read
    return {f"slack_floor_{key}": value for key, value in numbers.items()}


def against_slack_floor(result: dict[str, Any], floor: dict[str, Any]) -> dict[str, Any]:
    """The result with the Slack floor's latencies and the ratios to them."""
    return {
        **result,
        **floor,
        "ack_p99_over_floor": ratio(result["ack_p99_ms"], floor.get("slack_floor_ack_p99_ms")),
        "first_sign_over_floor": ratio(
            result["first_sign_p50_ms"], floor.get("slack_floor_first_sign_p50_ms")
        ),
    }


def ratio(value: float, floor: float | None) -> float | None:
    return round(value / floor, 2) if floor else None


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


def classroom(run: Run, size: int) -> dict[str, Any]:
    channel = "C0CLASSRM1"
    run.slack.add_channel(channel)
    started = {channel: time.monotonic()}
    envelopes = []
    for index in range(size):
        run.slack.add_user(f"U0KID{index:04d}")
        envelopes.append(run.slack.slash(f"U0KID{index:04d}", channel, f"ask question {index}"))
        time.sleep(5 / size)  # a class asks over five seconds, not in one instant
    run.wait_answered([channel], per_channel=size)
    return report(run, started, envelopes)


def classroom_floor(size: int, latency: float) -> float:
    """The least time Slack's limits allow for `size` answers in one channel.

    Every root message and every answer not streamed is a post in this channel (1 a second
    after a burst of 3); streams need Tier 2 starts and stops (20 at once, 20 more a minute).
    """
    asking = 5 * (size - 1) / size  # the last question goes out this long after the first
    total = asking + latency
    for _ in range(50):  # fixed point: more time allows more streams, fewer posts
        streams = min(size, 20 + 20 * total / 60)
        total = max(asking + latency, size + (size - streams) - 3 + latency)
    return total


ROW = {
    "scenario": "scenario",
    "answers": "answers",
    "total_s": "total s",
    "floor_s": "floor s",
    "total_over_floor": "total/floor",
    "ack_p50_ms": "ack p50 ms",
    "ack_p99_ms": "ack p99 ms",
    "slack_floor_ack_p50_ms": "floor ack p50 ms",
    "slack_floor_ack_p99_ms": "floor ack p99 ms",
    "ack_p99_over_floor": "ack p99/floor",
    "first_sign_p50_ms": "first sign p50 ms",
    "slack_floor_first_sign_p50_ms": "floor first sign p50 ms",
    "first_sign_over_floor": "first sign/floor",
    "late_while_answering": "late asks while answering",
    "calls_per_answer": "calls/answer",
    "rate_limited_429": "429s",
    "cpu_us_per_event": "CPU µs/event",
    "floor_cpu_us_per_event": "floor CPU µs/event",
}


def spread(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs of one scenario as one result: each number as its range over the runs
    ("low–high"), or as is where every run measured the same; other values as the first run's."""
    merged = dict(results[0])
    for key in merged:
        values = [r.get(key) for r in results]
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(numbers) == len(results):
            low, high = min(numbers), max(numbers)
            merged[key] = low if low == high else f"{low}–{high}"
    return merged


def row(name: str, result: dict[str, Any]) -> dict[str, Any]:
    """One line of the printed table ("-" where a scenario has no such number)."""
    values = {"scenario": name, **result}
    return {title: "-" if values.get(key) is None else values[key] for key, title in ROW.items()}


def measure(
    model: FakeModel,
    folder: Path,
    name: str,
    scenario: Callable[[Run], dict[str, Any]],
    floor_s: Callable[[Floor], float | None] | None = None,
    database_url: str | None = None,
    replicas: int = 1,
    slack: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """tutor's run of one scenario, then the floor for as many streams from the same model,
    then the Slack floor (`slack`) where given."""
    run = Run(model.base_url, folder, name.replace(" ", "_"), database_url, replicas)
    try:
        result = scenario(run)
    finally:
        run.stop()
    floor = measure_floor(model.base_url, result["answers"])
    measured = against(result, floor, floor_s(floor) if floor_s else floor.seconds)
    if slack is not None:
        measured = against_slack_floor(measured, slack())
    print(name, json.dumps(measured), flush=True)
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--first-token", "--latency", type=float, default=1.0)
    parser.add_argument("--answers", type=int, default=200)
    parser.add_argument("--class-size", type=int, default=30)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    latency, size = args.first_token, args.class_size
    results: dict[str, list[dict[str, Any]]] = {}
    with FakeModel(latency) as model, tempfile.TemporaryDirectory() as folder:
        for index in range(args.runs):
            databases = Path(folder) / f"run{index}"  # every run on fresh databases
            databases.mkdir()
            scenarios = burst_scenarios(model, databases, args.answers, latency)
            if size:
                scenarios["classroom"] = classroom_scenario(model, databases, size, latency)
            for name, scenario in scenarios.items():
                results.setdefault(name, []).append(scenario())
    print(f"L = {latency} s to the first token" + (f"; {args.runs} runs" if args.runs > 1 else ""))
    print(table([row(name, spread(runs)) for name, runs in results.items()]))


def burst_scenarios(
    model: FakeModel, folder: Path, answers: int, latency: float
) -> dict[str, Scenario]:
    """`answers` asks at once and `answers` mentions at once, each with its Slack floor; and
    asks at once with more asked while their answers stream."""
    sends: dict[str, Send] = {"asks": ask, "mentions": mention}
    scenarios: dict[str, Scenario] = {
        name: functools.partial(
            measure,
            model,
            folder,
            name,
            functools.partial(fan_out, count=answers, send=send),
            slack=functools.partial(
                measure_slack_floor,
                model.base_url,
                answers,
                functools.partial(burst, count=answers, send=send),
            ),
        )
        for name, send in sends.items()
    }
    late = functools.partial(burst_then_late, count=answers, latency=latency)
    scenarios["asks while answering"] = functools.partial(
        measure,
        model,
        folder,
        "asks while answering",
        functools.partial(asks_while_answering, count=answers, latency=latency),
        lambda floor: None,  # asked over time: no total floor
        slack=functools.partial(
            measure_slack_floor,
            model.base_url,
            answers + late_asks(answers),
            lambda run: late(run)[1],
        ),
    )
    return scenarios


def classroom_scenario(model: FakeModel, folder: Path, size: int, latency: float) -> Scenario:
    """The classroom; its floor is Slack's limits (one channel), far above the model's."""
    slack_floor = classroom_floor(size, latency)
    return functools.partial(
        measure,
        model,
        folder,
        "classroom",
        lambda run: classroom(run, size),
        lambda floor: max(floor.seconds, slack_floor),
    )


if __name__ == "__main__":
    main()
