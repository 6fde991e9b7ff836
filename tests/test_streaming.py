"""Reading a completion's server-sent events ourselves: framing, usage and errors, over real
HTTP from the fake OpenAI, and the decoder fed every way a stream can be cut."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from fakes.openai_server import FakeOpenAI, Fault
from looper.completion import CompletionFailed
from looper.models import Usage
from looper.sse import EventDecoder
from tests.test_completion import CHAT, Recorder, completer

pytestmark = pytest.mark.usefixtures("close_completers")


def chunk(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


USAGE = {
    "choices": [],
    "usage": {
        "prompt_tokens": 30,
        "completion_tokens": 4,
        "total_tokens": 34,
        "prompt_tokens_details": {"cached_tokens": 12},
    },
}


def event(data: dict[str, Any], end: bytes = b"\n") -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False).encode() + end + end


# Every framing the standard allows, in one stream: CRLF and CR line ends, comments, named
# events with ids, data split over several lines, a field without a space, non-ASCII text.
TRICKY = b"".join(
    [
        b": keep-alive comment\r\n\r\n",
        b"event: message\r\nid: 1\r\n" + event(chunk("Gr\u00fc\u00df "), b"\r\n")[:-2] + b"\r\n",
        b'data:{"choices": [{"index": 0,\n',
        b'data: "delta": {"content": "dich, "}, "finish_reason": null}]}\n\n',
        event(chunk("\u5b87\u5b99 "), b"\r"),
        b"retry: 1000\n" + event(chunk("\U0001f30c")),
        event(chunk(finish="stop")),
        event(USAGE),
        b"data: [DONE]\n\n",
    ]
)
TRICKY_TEXT = "Gr\u00fc\u00df dich, \u5b87\u5b99 \U0001f30c"


def cut(stream: bytes, *at: int) -> list[bytes]:
    edges = [0, *sorted(at), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(edges)]


def decoded(pieces: list[bytes]) -> list[bytes]:
    decoder = EventDecoder()
    return [data for piece in pieces for data in decoder.feed(piece)]


def test_the_decoder_finds_the_same_events_however_the_stream_is_cut() -> None:
    whole = decoded([TRICKY])
    texts = [json.loads(d) for d in whole[:-1]]
    assert len(whole) == 7 and whole[-1] == b"[DONE]"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in texts[:-1]) == (TRICKY_TEXT)
    for at in range(1, len(TRICKY)):
        assert decoded(cut(TRICKY, at)) == whole, f"cut at byte {at}"
    assert decoded([TRICKY[i : i + 1] for i in range(len(TRICKY))]) == whole


def test_the_decoder_drops_events_without_data_and_an_unfinished_last_one() -> None:
    stream = b"event: ping\n\n:comment\n\nid: 7\n\ndata\n\ndata: half"
    assert decoded([stream]) == [b""]  # a bare `data` line is an event with empty data


async def test_tricky_framing_over_http_cut_across_reads(fake_openai: FakeOpenAI) -> None:
    crlf = TRICKY.index(b"\r\n") + 1  # between CR and LF
    multibyte = TRICKY.index("\u00fc".encode()) + 1  # inside a two-byte character
    emoji = TRICKY.index("\U0001f30c".encode()) + 2  # inside a four-byte character
    fake_openai.chunk_delay = 0.01  # so that the pieces tend to arrive in separate reads
    fake_openai.add_faults(Fault(raw_stream=cut(TRICKY, crlf, multibyte, 60, 61, emoji)))
    target = Recorder()
    answer = await completer(fake_openai).complete("gpt-5-mini", CHAT, target)
    assert answer.text == TRICKY_TEXT == "".join(target.deltas)
    assert answer.cut_off is None
    assert answer.usage == Usage(30, 4, cached_tokens=12)


async def test_usage_without_details_and_a_length_finish(fake_openai: FakeOpenAI) -> None:
    usage = {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}
    stream = [event(chunk("Half")), event(chunk(" done", "length")), event(usage)]
    fake_openai.add_faults(Fault(raw_stream=[*stream, b"data: [DONE]\n\n"]))
    answer = await completer(fake_openai).complete("gpt-5-mini", CHAT, Recorder())
    assert (answer.text, answer.cut_off) == ("Half done", "length")
    assert answer.usage == Usage(9, 2, cached_tokens=0)


async def test_a_stream_that_ends_without_done_keeps_its_answer(fake_openai: FakeOpenAI) -> None:
    fake_openai.add_faults(Fault(raw_stream=[event(chunk("All")), event(chunk(" here", "stop"))]))
    answer = await completer(fake_openai).complete("gpt-5-mini", CHAT, Recorder())
    assert answer.text == "All here" and answer.usage is not None and answer.usage.counted
    assert len(fake_openai.requests) == 1


async def test_an_error_event_mid_stream_fails_with_its_message(fake_openai: FakeOpenAI) -> None:
    error = {"error": {"message": "The model is overloaded", "type": "server_error"}}
    stream = [event(chunk("Partial")), b"event: error\n" + event(error)]
    fake_openai.add_faults(Fault(raw_stream=stream))
    with pytest.raises(CompletionFailed, match="OpenAI failed: The model is overloaded"):
        await completer(fake_openai).complete("gpt-5-mini", CHAT, Recorder())
    assert len(fake_openai.requests) == 1  # the client does not retry it either


async def test_an_error_event_without_a_message_is_still_worded(fake_openai: FakeOpenAI) -> None:
    fake_openai.add_faults(Fault(raw_stream=[event({"error": {"code": "x"}})]))
    with pytest.raises(CompletionFailed, match="An error occurred during streaming"):
        await completer(fake_openai).complete("gpt-5-mini", CHAT, Recorder())


async def test_an_event_that_is_not_json_fails_in_one_line(fake_openai: FakeOpenAI) -> None:
    stream = [event(chunk("Partial")), b"data: {not json\n\n", event(chunk(" rest", "stop"))]
    fake_openai.add_faults(Fault(raw_stream=stream))
    with pytest.raises(CompletionFailed, match=r"^OpenAI failed: .*not JSON \('\{not json'\)$"):
        await completer(fake_openai).complete("gpt-5-mini", CHAT, Recorder())
    assert len(fake_openai.requests) == 1  # a server that sends it once would send it again


async def test_only_comments_and_done_is_an_empty_answer(fake_openai: FakeOpenAI) -> None:
    fake_openai.add_faults(Fault(raw_stream=[b": nothing yet\n\n", b"data: [DONE]\n\n"]))
    with pytest.raises(CompletionFailed, match="empty answer"):
        await completer(fake_openai).complete("gpt-5-mini", CHAT, Recorder())


async def test_the_connection_is_reused_after_done(fake_openai: FakeOpenAI) -> None:
    late_end = [event(chunk("Yes", "stop")), b"data: [DONE]\n\n", b": the body ends later\n\n"]
    fake_openai.chunk_delay = 0.02
    fake_openai.add_faults(*[Fault(raw_stream=late_end)] * 3)
    ask = completer(fake_openai)
    for _ in range(3):
        assert (await ask.complete("gpt-5-mini", CHAT, Recorder())).text == "Yes"
    assert len(fake_openai.requests) == 3
    assert len({r.peer for r in fake_openai.requests}) == 1
    await ask.close()


async def test_a_stream_stalled_half_way_times_out_and_is_retried(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.hold(before_chunk=2)
    ask = completer(fake_openai, timeout=0.3, attempts=2)
    try:
        with pytest.raises(CompletionFailed, match=r"after 2 tries \(last error: timed out\)"):
            await ask.complete("gpt-5-mini", CHAT, Recorder())
    finally:
        fake_openai.release()
        await ask.close()
    assert len(fake_openai.requests) == 2 and fake_openai.requests[0].chunks_sent == 2
