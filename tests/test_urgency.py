"""Acknowledgements and first signs of work before reading streams: the `Urgency` gate, a
real completion stream (over HTTP from the fake OpenAI) that steps aside for it, and Socket
Mode frames counted as urgent from when they are read."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import WSMessage, WSMsgType
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from bot.socket import FramesRead, TutorSocketHandler
from fakes.openai_server import FakeOpenAI
from looper.urgency import Urgency
from tests.test_completion import CHAT, Recorder, completer

pytestmark = pytest.mark.usefixtures("close_completers")


def runs_through(turn: object) -> bool:
    """Whether awaiting `turn` (a coroutine) would finish without suspending."""
    try:
        turn.send(None)  # type: ignore[attr-defined]
    except StopIteration:
        return True
    turn.close()  # type: ignore[attr-defined]
    return False


async def test_readers_wait_only_while_urgent_work_is_under_way() -> None:
    urgency = Urgency(max_wait=60)
    assert runs_through(urgency.turn())
    with urgency:
        with urgency:  # two at once: the readers wait for both
            waiting = asyncio.create_task(urgency.turn())
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert not waiting.done()
    await asyncio.wait_for(waiting, 5)
    assert urgency.under_way == 0 and runs_through(urgency.turn())


async def test_readers_wait_again_when_urgent_work_is_handed_over_in_one_step() -> None:
    urgency = Urgency(max_wait=60)
    urgency.begin()
    waiting = asyncio.create_task(urgency.turn())
    await asyncio.sleep(0)
    urgency.end()  # a frame read ends, as its envelope's own work begins
    urgency.begin()
    for _ in range(3):
        await asyncio.sleep(0)
    assert not waiting.done()
    urgency.end()
    await asyncio.wait_for(waiting, 5)


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_urgent_work_holds_readers_within_a_budget_earned_back_over_time() -> None:
    clock = Clock()
    urgency = Urgency(max_wait=0.05, clock=clock)
    with urgency:
        assert not runs_through(urgency.turn())  # held, within the budget
        clock.now += 0.05
        assert runs_through(urgency.turn())  # let go while still under way
    with urgency:  # more right after: the budget is spent, no wait
        assert runs_through(urgency.turn())
    clock.now += urgency.max_wait / urgency.share / 2  # half of it earned back meanwhile
    with urgency:
        assert not runs_through(urgency.turn())
        clock.now += urgency.max_wait / 2
        assert runs_through(urgency.turn())


class Watched(Recorder):
    """A Recorder that notes whether urgent work was under way at each delta."""

    def __init__(self, urgency: Urgency) -> None:
        super().__init__()
        self.urgency = urgency
        self.while_urgent: list[str] = []
        self.first = asyncio.Event()

    async def append(self, delta: str) -> None:
        await super().append(delta)
        if self.urgency.under_way:
            self.while_urgent.append(delta)
        self.first.set()


async def test_a_stream_reads_nothing_while_urgent_work_is_under_way(
    fake_openai: FakeOpenAI,
) -> None:
    made = completer(fake_openai)
    made.urgency.max_wait = 60  # only the end of the urgent work lets the stream go on
    target = Watched(made.urgency)
    fake_openai.hold(before_chunk=1)
    answering = asyncio.create_task(made.complete("gpt-5-mini", CHAT, target))
    await asyncio.wait_for(target.first.wait(), 10)
    with made.urgency:
        fake_openai.release()
        # the rest is sent (and reaches this process) while the urgent work goes on
        await asyncio.to_thread(fake_openai.wait_requests, 1, 10, True)
        await asyncio.sleep(0.05)
        assert len(target.deltas) == 1
    answer = await asyncio.wait_for(answering, 10)
    assert answer.text == "An answer to: How did the universe begin?"
    assert "".join(target.deltas) == answer.text and not target.while_urgent


async def test_a_stream_goes_on_under_urgent_work_that_never_ends(
    fake_openai: FakeOpenAI,
) -> None:
    made = completer(fake_openai)
    made.urgency.max_wait = 0.05
    target = Recorder()
    with made.urgency:
        answer = await asyncio.wait_for(made.complete("gpt-5-mini", CHAT, target), 10)
    assert "".join(target.deltas) == answer.text and answer.text.startswith("An answer")


def frame(body: dict[str, Any]) -> WSMessage:
    return WSMessage(WSMsgType.TEXT, json.dumps(body), None)


def message_event(**event: str) -> WSMessage:
    payload = {"event": {"type": "message", "text": "hi", "ts": "2.0", **event}}
    return frame({"type": "events_api", "envelope_id": "e2", "payload": payload})


COMMAND = frame({"type": "slash_commands", "envelope_id": "e1", "payload": {"text": "ask hi"}})


async def test_a_frame_is_urgent_from_when_it_is_read_until_it_is_handled() -> None:
    urgency = Urgency(max_wait=0.05)
    frames = FramesRead(urgency)
    await frames.read(COMMAND)
    await frames.read(message_event(channel_type="channel", thread_ts="1.0"))  # a reply
    assert urgency.under_way == 2
    frames.handled()
    assert urgency.under_way == 1
    frames.handled()
    frames.handled()  # a request whose frame was not counted: nothing to end
    assert urgency.under_way == 0


async def test_chatter_and_hellos_are_not_urgent() -> None:
    urgency = Urgency(max_wait=0.05)
    frames = FramesRead(urgency)
    await frames.read(message_event(channel_type="channel"))  # top-level chatter
    await frames.read(message_event(channel_type="channel", thread_ts="1.0", bot_id="B1"))
    await frames.read(message_event(channel_type="im", bot_id="B1"))  # an answer in a DM
    await frames.read(frame({"type": "hello", "num_connections": 1}))
    await frames.read(WSMessage(WSMsgType.TEXT, "not JSON", None))
    assert urgency.under_way == 0 and not frames.expiries


async def test_a_frame_never_handled_stops_being_urgent_after_max_wait() -> None:
    urgency = Urgency(max_wait=0.05)
    frames = FramesRead(urgency)
    await frames.read(COMMAND)
    assert urgency.under_way == 1
    await asyncio.sleep(urgency.max_wait * 2)  # a timer due after the frame's expiry
    assert urgency.under_way == 0 and not frames.expiries
    frames.handled()
    assert urgency.under_way == 0


def recording_app(dispatched: list[dict[str, Any]]) -> AsyncApp:
    """A Bolt app that records each request it runs, before its authorization."""

    async def record(body: dict[str, Any]) -> BoltResponse:
        dispatched.append(body)
        return BoltResponse(status=200, body="")

    return AsyncApp(token="xoxb-unused", before_authorize=record)


async def test_chatter_and_bot_messages_are_acknowledged_without_running_the_app() -> None:
    dispatched: list[dict[str, Any]] = []
    handler = TutorSocketHandler(
        recording_app(dispatched), recording_app(dispatched), "xapp-unused", Urgency()
    )
    acked: list[str] = []

    async def send(response: dict[str, Any] | SocketModeResponse) -> None:
        assert isinstance(response, SocketModeResponse)
        acked.append(response.envelope_id)

    handler.client.send_socket_mode_response = send  # type: ignore[method-assign]
    question = message_event(channel_type="channel", thread_ts="1.0", user="U1")
    for envelope in (
        message_event(channel_type="channel"),  # top-level chatter
        message_event(channel_type="channel", thread_ts="1.0", bot_id="B1"),  # a root's echo
        message_event(channel_type="im", bot_id="B1"),  # an answer in a DM
        question,
    ):
        request = SocketModeRequest.from_dict(json.loads(envelope.data))
        assert request is not None
        await handler.handle(handler.client, request)
    await handler.client.close()  # type: ignore[no-untyped-call]
    assert acked == ["e2"] * 4
    assert [body["event"] for body in dispatched] == [json.loads(question.data)["payload"]["event"]]
