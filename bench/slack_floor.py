"""The Slack floor: the least a Slack bot could do for a burst of questions, in a fresh process.

    .venv/bin/python -m bench.slack_floor API_URL QUESTIONS [--model URL] [--timeout 120]

connects to Socket Mode as an app does (`apps.connections.open` with the app token, then the
WebSocket it names), acknowledges each envelope as soon as it arrives, and only then shows the
first sign of work with raw aiohttp calls: for `/tutor ask …` a root message in the channel
and "is thinking…" under it; for an `app_mention`, "is thinking…" under the mention. Then,
with `--model`, it reads the question's answer from that fake model as the raw reader does
(`bench.floor`) and posts it in the thread in one message, so that questions asked while
earlier answers stream meet the least load a bot answering them could put on this machine.
Every other envelope is only acknowledged. It exits after the first sign of QUESTIONS
questions, on SIGTERM, or after the timeout, printing what it did as JSON. `bench.slack_bench`
runs it against a fresh fake Slack after tutor's run (`start_slack_floor`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.floor import ROOT, read_stream
from bot.formatting import THINKING
from fakes.slack_server import APP_TOKEN, BOT_TOKEN
from looper.cli import run_on_fastest_loop

CALL_TIMEOUT = aiohttp.ClientTimeout(total=30)
CLOSE_TIMEOUT = aiohttp.ClientWSTimeout(ws_close=5)
Thread = tuple[str, str]  # channel, thread ts


@dataclass(frozen=True)
class Model:
    """The fake model, read on a session of its own (no limit on connections, as tutor's
    OpenAI clients have none that a burst reaches)."""

    session: aiohttp.ClientSession
    base_url: str


class SlackFloor:
    """One app connection: acknowledges every envelope at once, then shows its first sign of
    work and, with a model, posts its answer."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        api_url: str,
        questions: int,
        model: Model | None = None,
    ) -> None:
        self.session = session
        self.api_url = api_url
        self.questions = questions
        self.model = model
        self.shown = 0  # questions whose first sign of work Slack accepted
        self.failed = 0  # questions where a call failed
        self.reading = 0  # answers whose stream it began to read
        self.finished = asyncio.Event()  # every question handled, or told to stop
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, method: str, token: str = BOT_TOKEN, **args: str) -> dict[str, Any]:
        """One Web API call, form-encoded, the token as Bearer; Slack's answer."""
        headers = {"Authorization": f"Bearer {token}"}
        async with self.session.post(
            self.api_url + method, data=args, headers=headers, timeout=CALL_TIMEOUT
        ) as reply:
            answer: dict[str, Any] = await reply.json()
        return answer

    async def listen(self) -> None:
        """Connect to Socket Mode and acknowledge envelopes until the connection closes."""
        opened = await self.call("apps.connections.open", APP_TOKEN)
        async with self.session.ws_connect(opened["url"], timeout=CLOSE_TIMEOUT) as socket:
            async for message in socket:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                body = json.loads(message.data)
                if "envelope_id" in body:
                    await socket.send_json({"envelope_id": body["envelope_id"]})
                    self.start(body)

    def start(self, body: dict[str, Any]) -> None:
        """The first sign of work for an envelope that asks something, in its own task."""
        sign = self.first_sign(body)
        if sign is None:
            return
        task = asyncio.create_task(sign)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def first_sign(self, body: dict[str, Any]) -> Coroutine[Any, Any, None] | None:
        """The coroutine showing an envelope's first sign of work (and then its answer); None
        when it asks nothing."""
        payload = body["payload"]
        if body["type"] == "slash_commands" and payload["text"].startswith("ask"):
            return self.handled(self.ask(payload["channel_id"]))
        event = payload.get("event") or {}
        if body["type"] == "events_api" and event.get("type") == "app_mention":
            return self.handled(self.thinking(event["channel"], event["ts"]))
        return None

    async def ask(self, channel: str) -> Thread | None:
        """A root message for the command, then "is thinking…" under it."""
        root = await self.call("chat.postMessage", channel=channel, text="A question")
        return await self.thinking(channel, root["ts"]) if root.get("ok") else None

    async def thinking(self, channel: str, thread_ts: str) -> Thread | None:
        """ "is thinking…" under a thread; the thread, when Slack took it."""
        answer = await self.call(
            "assistant.threads.setStatus", channel_id=channel, thread_ts=thread_ts, status=THINKING
        )
        return (channel, thread_ts) if answer.get("ok") else None

    async def handled(self, sign: Awaitable[Thread | None]) -> None:
        """Count a question's first sign, shown or failed (finished after the last); then
        answer it, with a model."""
        try:
            thread = await sign
        except (aiohttp.ClientError, TimeoutError):
            thread = None
        self.shown += thread is not None
        self.failed += thread is None
        if self.shown + self.failed >= self.questions:
            self.finished.set()
        elif thread is not None and self.model is not None:
            self.reading += 1
            await self.answer(thread, self.model)

    async def answer(self, thread: Thread, model: Model) -> None:
        """The answer read from the model, then posted in the thread: load, so a failure
        (the model or Slack gone as the benchmark stops) only ends it."""
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            _, text = await read_stream(model.session, model.base_url, self.reading)
            channel, thread_ts = thread
            await self.call("chat.postMessage", channel=channel, thread_ts=thread_ts, text=text)

    async def close(self) -> None:
        """Cancel first signs and answers still under way."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def serve(
    api_url: str, questions: int, timeout: float, model_url: str | None = None
) -> dict[str, int]:
    """Serve until every question's first sign, SIGTERM or `timeout`; what was done."""
    limits = aiohttp.TCPConnector(limit=100, limit_per_host=100)
    async with (
        aiohttp.ClientSession(connector=limits) as session,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as streams,
    ):
        model = Model(streams, model_url) if model_url else None
        floor = SlackFloor(session, api_url, questions, model)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, floor.finished.set)
        listening = asyncio.create_task(floor.listen())
        finished = asyncio.create_task(floor.finished.wait())
        await asyncio.wait({listening, finished}, timeout=timeout, return_when="FIRST_COMPLETED")
        for task in (listening, finished):
            task.cancel()
        [listened, _] = await asyncio.gather(listening, finished, return_exceptions=True)
        await floor.close()
        if isinstance(listened, Exception):
            raise RuntimeError("the app connection failed") from listened
    return {
        "questions": questions,
        "shown": floor.shown,
        "failed": floor.failed,
        "reading": floor.reading,
    }


def start_slack_floor(
    api_url: str, questions: int, model_url: str | None = None, timeout: float = 120
) -> subprocess.Popen[str]:
    """This floor in a fresh process, against the fake Slack at `api_url` (and the fake
    model at `model_url`, when given)."""
    model = ["--model", model_url] if model_url else []
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.slack_floor",
            api_url,
            str(questions),
            *model,
            "--timeout",
            f"{timeout}",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("api_url")
    parser.add_argument("questions", type=int)
    parser.add_argument("--model", help="the fake model's base URL, to read each answer from")
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    done = run_on_fastest_loop(serve(args.api_url, args.questions, args.timeout, args.model))
    print(json.dumps(done), flush=True)


if __name__ == "__main__":
    main()
