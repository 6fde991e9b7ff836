"""A fake OpenAI-compatible server on 127.0.0.1 for the real `openai` client.

`POST /v1/chat/completions`, streaming (SSE) and not. It records every request, and
`faults` (consumed one per request) or standing switches make it misbehave the way the real
service does: 429 with Retry-After, 500, a slow first token, a connection dropped
mid-stream, an answer cut off by the token limit (`finish_reason: length`), context-length
errors (OpenAI's and llama.cpp's wording), retired models and a bad key, and (with
`refuses_images`) a model that takes no image input; `raw_stream` sends server-sent events
byte for byte as a test wrote them (line ends, comments, cuts, errors). Requests are
recorded as sent, content parts and all.
`local_model` plays a local server with a small context window: llama.cpp (its refusal body,
its answers cut at the window, its `GET /props`) or vLLM (its refusal wording, no `/props`).
`hold(before_chunk)` stops every stream at that chunk until `release()`, so a test can act
while answers are in flight without guessing how long they take. Run it in a thread
(`FakeOpenAI().start()`) or as a process: `python -m fakes.openai_server --latency 1` prints
its base URL (`--first-token 1 --events 400 --chars 2000`: the benchmarks' model, ~2,000
characters streamed one token an event, as OpenAI streams).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

API_KEY = "sk-test-fake"
MAX_REQUEST_BYTES = 64 * 1024 * 1024  # room for images as data URLs (aiohttp's default: 1 MB)
CLIENT_CLOSED = 499  # nginx's status for a reader that left before the answer


@dataclass
class Fault:
    """What to do instead of a clean answer, for one request."""

    status: int | None = None  # answer with this HTTP error
    message: str | None = None  # the error's message ("fake fault <status>" if None)
    code: str | None = None  # error.code (e.g. rate_limit_exceeded, context_length_exceeded)
    retry_after: float | None = None  # Retry-After header, seconds
    first_token_delay: float = 0.0  # wait this long before the first chunk
    drop_after_chunks: int | None = None  # close the connection after this many chunks
    cut_off_after_chunks: int | None = None  # end after this many, finish_reason "length"
    llama_style: bool = False  # word a context error like llama.cpp does
    raw_stream: list[bytes] | None = None  # stream these bytes instead, one write each


@dataclass(frozen=True)
class LocalModel:
    """A model on a local server, as far as its context window goes.

    llama.cpp refuses a prompt of `context_size` tokens or more (HTTP 400, type
    `exceed_context_size_error`, with `n_prompt_tokens` and `n_ctx`), does not count the
    requested completion tokens, and ends an answer that reaches the window with
    `finish_reason: length`; `GET /props` reports the window as
    `default_generation_settings.n_ctx`. vLLM refuses when the prompt and
    `max_completion_tokens` together exceed the window, and has no `/props`.
    """

    context_size: int = 1024
    server: Literal["llama.cpp", "vllm"] = "llama.cpp"
    props: bool = True  # llama.cpp's GET /props (False: 404, as behind a proxy of /v1 only)
    # Its tokenizer is not tutor's: it counts one token per this many characters, more
    # tokens than tutor's count of English text (about 4 characters a token).
    chars_per_token: float = 3.0

    def text_tokens(self, text: str) -> int:
        return math.ceil(len(text) / self.chars_per_token)

    def prompt_tokens(self, body: dict[str, Any]) -> int:
        """The prompt with its chat template: a few tokens per message and to prime the reply."""
        messages = body.get("messages", [])
        return 3 + sum(4 + self.text_tokens(text_of(m.get("content"))) for m in messages)

    def refusal(self, body: dict[str, Any]) -> web.Response | None:
        prompt = self.prompt_tokens(body)
        if self.server == "llama.cpp":
            if prompt < self.context_size:
                return None
            return llama_context_error(prompt, self.context_size)
        completion = int(body.get("max_completion_tokens") or 0)
        if prompt + completion <= self.context_size:
            return None
        return vllm_context_error(prompt, completion, self.context_size)

    def answer_room(self, body: dict[str, Any]) -> int:
        """The most characters an answer may have: its token limit, and for llama.cpp what
        is left of the window after the prompt (it stops one token short of the window)."""
        tokens = int(body.get("max_completion_tokens") or 1_000_000)
        if self.server == "llama.cpp":
            tokens = min(tokens, self.context_size - 1 - self.prompt_tokens(body))
        return math.floor(max(tokens, 0) * self.chars_per_token)


@dataclass
class Recorded:
    body: dict[str, Any]
    headers: dict[str, str]
    peer: str = ""  # the client's host:port: the same for requests on one connection
    at: float = field(default_factory=time.monotonic)  # when it arrived
    status: int = 0
    chunks_sent: int = 0
    completed: bool = False


def text_of(content: Any) -> str:
    """A message's text: its content, or the text of its content parts."""
    if isinstance(content, list):
        return "\n\n".join(p.get("text") or "" for p in content if p.get("type") == "text")
    return str(content or "")


def images_in(body: dict[str, Any]) -> list[str]:
    """The image URLs of a request's content parts."""
    return [
        part["image_url"]["url"]
        for m in body.get("messages", [])
        if isinstance(m.get("content"), list)
        for part in m["content"]
        if part.get("type") == "image_url"
    ]


def default_answer(body: dict[str, Any]) -> str:
    users = [text_of(m["content"]) for m in body.get("messages", []) if m.get("role") == "user"]
    return f"An answer to: {users[-1] if users else ''}"


@dataclass
class FakeOpenAI:
    latency: float = 0.0  # seconds before the first token of every answer
    chunks: int = 4  # pieces an answer streams in
    chunk_delay: float = 0.0  # seconds between pieces
    answer_chars: int = 0  # pad answers to this length (0: as written)
    answer: Callable[[dict[str, Any]], str] = default_answer
    faults: deque[Fault] = field(default_factory=deque)
    retired_models: set[str] = field(default_factory=lambda: {"gpt-3.5-turbo"})
    context_limit_chars: int | None = None  # a prompt longer than this is "too long"
    # How that refusal is worded: "openai", "llama.cpp", or "vague" (states no numbers).
    context_error_style: str = "openai"
    local_model: LocalModel | None = None
    props_requests: int = 0  # GET /props asked
    reports_usage: bool = True  # send the usage chunk when asked (some servers never do)
    cached_tokens: int = 0  # prompt tokens to report as served from the cache
    # A model that takes no images refuses image parts, worded as "openai" (a model without
    # vision) or "llama.cpp" (a server without a multimodal projector); None: takes them.
    refuses_images: Literal["openai", "llama.cpp"] | None = None
    requests: list[Recorded] = field(default_factory=list)
    in_flight: int = 0
    held_at: int | None = None  # streams wait before this chunk until `release()`
    max_in_flight: int = 0  # the most requests answered at once
    base_url: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._started = threading.Event()
        self._gate = asyncio.Event()  # shut while streams are held
        self._gate.set()

    # control from the test thread
    def hold(self, before_chunk: int = 0) -> None:
        """Streams stop before sending piece `before_chunk` of their answer until `release()`."""
        self._on_loop(self._gate.clear)
        self.held_at = before_chunk

    def release(self) -> None:
        self.held_at = None
        self._on_loop(self._gate.set)

    def _on_loop(self, action: Callable[[], None]) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(action)

    def add_faults(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def wait_requests(self, count: int, timeout: float = 10.0, completed: bool = False) -> None:
        """Block until `count` requests arrived (or finished answering, with `completed`)."""

        def enough() -> bool:
            seen = [r for r in self.requests if r.completed or not completed]
            return len(seen) >= count

        with self._changed:
            if not self._changed.wait_for(enough, timeout):
                raise TimeoutError(f"{len(self.requests)} requests, wanted {count}")

    def wait_streaming(self, index: int, timeout: float = 10.0) -> None:
        """Block until request `index` has streamed at least one piece of its answer."""

        def started() -> bool:
            return len(self.requests) > index and self.requests[index].chunks_sent > 0

        with self._changed:
            if not self._changed.wait_for(started, timeout):
                raise TimeoutError(f"request {index} did not start streaming")

    def _sent_chunk(self, recorded: Recorded) -> None:
        with self._changed:
            recorded.chunks_sent += 1
            self._changed.notify_all()

    def _record(self, recorded: Recorded) -> None:
        with self._changed:
            self.requests.append(recorded)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._changed.notify_all()

    def _complete(self, recorded: Recorded, status: int) -> None:
        with self._changed:
            self.in_flight -= 1
            recorded.status = status
            recorded.completed = True
            self._changed.notify_all()

    def _next_fault(self) -> Fault:
        with self._lock:
            return self.faults.popleft() if self.faults else Fault()

    # the HTTP side
    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_get("/props", self._props)
        return app

    async def _props(self, request: web.Request) -> web.Response:
        with self._lock:
            self.props_requests += 1
        local = self.local_model
        if local is None or local.server != "llama.cpp" or not local.props:
            message = f"Invalid URL (GET {request.path})"
            return error(404, message, "invalid_request_error", None)
        return web.json_response(llama_props(local))

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        host, port = request.transport.get_extra_info("peername") if request.transport else ("", 0)
        recorded = Recorded(body=body, headers=dict(request.headers), peer=f"{host}:{port}")
        self._record(recorded)
        try:
            response = await self._respond(request, body, self._next_fault(), recorded)
        except ConnectionResetError:  # the reader went away; aiohttp ends the rest quietly
            response = web.Response(status=recorded.status or CLIENT_CLOSED)
        self._complete(recorded, response.status)
        return response

    async def _respond(
        self, request: web.Request, body: dict[str, Any], fault: Fault, recorded: Recorded
    ) -> web.StreamResponse:
        problem = self._problem(request, body, fault)
        if problem is not None:
            return problem
        text = self.answer(body)
        if self.answer_chars and len(text) < self.answer_chars:
            text = (text + " " + "lorem ipsum " * self.answer_chars)[: self.answer_chars]
        await asyncio.sleep(self.latency + fault.first_token_delay)
        finish = "stop"
        if self.local_model and len(text) > self.local_model.answer_room(body):
            text, finish = text[: self.local_model.answer_room(body)], "length"
        if fault.cut_off_after_chunks is not None:
            text = "".join(split(text, self.chunks)[: fault.cut_off_after_chunks])
            finish = "length"
        if not body.get("stream"):
            return web.json_response(completion(body, text, finish))
        if fault.raw_stream is not None:
            return await self._stream_raw(request, fault.raw_stream, recorded)
        return await self._stream(request, body, text, fault, recorded, finish)

    def _problem(
        self, request: web.Request, body: dict[str, Any], fault: Fault
    ) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return error(
                401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
            )
        model = body.get("model", "")
        if model in self.retired_models:
            return error(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            )
        if "max_tokens" in body:
            return error(
                400,
                "Unsupported parameter: 'max_tokens' is not supported with this "
                "model. Use 'max_completion_tokens' instead.",
                "invalid_request_error",
                "unsupported_parameter",
            )
        if body.get("temperature", 1) != 1:
            return error(
                400,
                "Unsupported value: 'temperature' does not support "
                f"{body['temperature']} with this model.",
                "invalid_request_error",
                "unsupported_value",
            )
        if fault.status == 400 and fault.code == "context_length_exceeded":
            return context_error(body, "llama.cpp" if fault.llama_style else "openai")
        if fault.status is not None:
            return error(
                fault.status,
                fault.message or f"fake fault {fault.status}",
                "server_error",
                fault.code,
                retry_after=fault.retry_after,
            )
        if self.refuses_images and images_in(body):
            return image_refusal(self.refuses_images)
        size = sum(len(text_of(m.get("content"))) for m in body.get("messages", []))
        if self.context_limit_chars is not None and size > self.context_limit_chars:
            return context_error(body, self.context_error_style, self.context_limit_chars)
        return self.local_model.refusal(body) if self.local_model else None

    async def _start_stream(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        """Send a stream's headers; its status is known from then on (the client may have
        read the whole stream before the handler returns)."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        with self._lock:
            recorded.status = response.status
        return response

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        text: str,
        fault: Fault,
        recorded: Recorded,
        finish: str,
    ) -> web.StreamResponse:
        response = await self._start_stream(request, recorded)
        pieces = split(text, self.chunks)
        for index, piece in enumerate(pieces):
            if index == self.held_at:
                await self._gate.wait()
            if fault.drop_after_chunks is not None and index >= fault.drop_after_chunks:
                assert request.transport is not None
                request.transport.close()  # mid-stream, no [DONE]
                return response
            if index and self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            await response.write(sse(chunk(body, {"content": piece}, None)))
            self._sent_chunk(recorded)
        await response.write(sse(chunk(body, {}, finish)))
        if self.reports_usage and (body.get("stream_options") or {}).get("include_usage"):
            await response.write(sse(usage_chunk(body, len(pieces), self.cached_tokens)))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _stream_raw(
        self, request: web.Request, pieces: list[bytes], recorded: Recorded
    ) -> web.StreamResponse:
        """Server-sent events exactly as a test wrote them, cut where it cut them."""
        response = await self._start_stream(request, recorded)
        for index, piece in enumerate(pieces):
            if index and self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            await response.write(piece)
            self._sent_chunk(recorded)
        await response.write_eof()
        return response

    # running it
    def start(self, port: int = 0) -> FakeOpenAI:
        thread = threading.Thread(target=self._serve, args=(port,), daemon=True)
        thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the fake OpenAI server did not start")
        return self

    def _serve(self, port: int) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        loop.run_until_complete(self._open(port))
        self._started.set()
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup() if self._runner else asyncio.sleep(0))
        loop.close()

    async def _open(self, port: int) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, backlog=4096)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}/v1"

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)


def split(text: str, pieces: int) -> list[str]:
    size = max(1, -(-len(text) // max(1, pieces)))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def sse(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


def chunk(body: dict[str, Any], delta: dict[str, str], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def usage_chunk(body: dict[str, Any], pieces: int, cached: int = 0) -> dict[str, Any]:
    """The last chunk OpenAI streams when asked to `include_usage`: no choices, the usage.
    A word counts as a prompt token here, a streamed piece as a completion token."""
    words = sum(len(text_of(m.get("content")).split()) for m in body.get("messages", []))
    usage = {
        "prompt_tokens": words,
        "completion_tokens": pieces,
        "total_tokens": words + pieces,
        "prompt_tokens_details": {"cached_tokens": min(cached, words), "audio_tokens": 0},
    }
    return {**chunk(body, {}, None), "choices": [], "usage": usage}


def completion(body: dict[str, Any], text: str, finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", ""),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def error(
    status: int,
    message: str,
    kind: str,
    code: str | None,
    retry_after: float | None = None,
) -> web.Response:
    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
    payload = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return web.json_response(payload, status=status, headers=headers)


def context_error(body: dict[str, Any], style: str, window: int = 4096) -> web.Response:
    """A refusal for length from a server that counts a character as a token."""
    size = sum(len(text_of(m.get("content"))) for m in body.get("messages", []))
    if style == "llama.cpp":
        return llama_context_error(size, window)
    if style == "vague":
        message = "The prompt is too long for this model's context window."
        return error(400, message, "invalid_request_error", None)
    message = (
        f"This model's maximum context length is {window} tokens. However, your messages "
        f"resulted in {size} tokens. Please reduce the length of the messages."
    )
    return error(400, message, "invalid_request_error", "context_length_exceeded")


def image_refusal(style: str) -> web.Response:
    """How a model without image input refuses image parts: OpenAI's 400 for a model without
    vision, or llama-server's without a multimodal projector: thrown while it parses the
    messages (`oaicompat_chat_params_parse`), a runtime error it answers as a 500."""
    if style == "llama.cpp":
        message = (
            "image input is not supported - hint: if this is unexpected, you may need to "
            "provide the mmproj"
        )
        payload = {"code": 500, "message": message, "type": "server_error"}
        return web.json_response({"error": payload}, status=500)
    message = "Invalid content type. image_url is only supported by certain models."
    return error(400, message, "invalid_request_error", None)


def llama_context_error(prompt_tokens: int, n_ctx: int) -> web.Response:
    """llama-server's refusal (server-context.cpp; server_task_result_error::to_json)."""
    message = (
        f"request ({prompt_tokens} tokens) exceeds the available context size "
        f"({n_ctx} tokens), try increasing it"
    )
    payload = {
        "code": 400,
        "message": message,
        "type": "exceed_context_size_error",
        "n_prompt_tokens": prompt_tokens,
        "n_ctx": n_ctx,
    }
    return web.json_response({"error": payload}, status=400)


def vllm_context_error(prompt_tokens: int, completion_tokens: int, window: int) -> web.Response:
    """vLLM's refusal: its ErrorResponse object, at the top level of the body."""
    message = (
        f"This model's maximum context length is {window} tokens. However, you requested "
        f"{prompt_tokens + completion_tokens} tokens ({prompt_tokens} in the messages, "
        f"{completion_tokens} in the completion). Please reduce the length of the messages "
        "or completion."
    )
    payload = {
        "object": "error",
        "message": message,
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }
    return web.json_response(payload, status=400)


def llama_props(local: LocalModel) -> dict[str, Any]:
    """What llama-server's GET /props reports (the window is the per-slot `n_ctx`)."""
    return {
        "default_generation_settings": {"n_ctx": local.context_size, "params": {}},
        "total_slots": 1,
        "model_path": "models/fake-local-model.gguf",
        "chat_template": "",
        "build_info": "fake",
        "is_sleeping": False,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", "--first-token", type=float, default=0.0)
    parser.add_argument("--chunks", "--events", type=int, default=4)
    parser.add_argument("--answer-chars", "--chars", type=int, default=0)
    args = parser.parse_args()
    fake = FakeOpenAI(latency=args.latency, chunks=args.chunks, answer_chars=args.answer_chars)
    fake.start(args.port)
    print(fake.base_url, flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
