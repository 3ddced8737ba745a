"""A fake LLM provider that speaks the real wire formats, for trying the relay without a
provider key, for the tests and for the benchmarks.

    python examples/fake_upstream.py --port 9999

It serves, as OpenAI and Anthropic do (JSON, or server-sent events when `"stream": true`):

    POST /v1/chat/completions       OpenAI chat: chunks, `data: [DONE]`, the usage chunk with
                                    `choices: []` when `stream_options.include_usage` is set,
                                    tool calls streamed as deltas, `system_fingerprint`
    POST /v1/embeddings             OpenAI embeddings (`float` or `base64`)
    POST /v1/responses              OpenAI Responses: `response.created` ... `response.completed`
    POST /v1/messages               Anthropic Messages: `message_start`, `content_block_*`,
                                    `ping`, `message_delta` (cumulative usage), `message_stop`
    POST /v1/messages/count_tokens  Anthropic token counting
    GET  /v1/models                 OpenAI's list, or Anthropic's when `anthropic-version` is sent

and as Google's Gemini API does, under `/v1beta` and `/v1` (the key as `x-goog-api-key` or
`?key=`; none: Google's 403):

    POST .../models/{model}:generateContent
    POST .../models/{model}:streamGenerateContent   `?alt=sse`: events ending in `\r\n\r\n`;
                                    without it one JSON array of the same chunks; usage on
                                    every chunk, the whole of it on the last one
    POST .../models/{model}:countTokens, :embedContent, :batchEmbedContents
    GET  .../models, .../models/{model}

The answer is "Hello from the fake upstream! How can I help?", one output token per word
(fewer when the request's `max_tokens` / `max_completion_tokens` / `max_output_tokens` /
`generationConfig.maxOutputTokens` cuts it: `finish_reason: length`); input tokens default
to the request body's size / 8.

**Scripting a request's behaviour** (faults, usage), as a `Scenario` (fields below), either
  - per request, in an `X-Fake-Scenario` header holding the scenario as JSON (direct tests), or
  - queued: `POST /_control/script` with `{"scenario": {...}, "path": "/v1/messages",
    "times": 1}` (path optional: any path); the next matching requests take it, first queued
    first. This is the way through a relay, which does not forward unknown headers.
`GET /_control/requests` lists every request received (method, path, query, headers, body);
`GET /_control/stats` counts requests and cancellations (a client that left mid-answer);
`POST /_control/reset` forgets both and the queue. Control paths are not recorded.
In Python, `FakeUpstream` holds the same state and `serve_in_thread()` runs it on a free port.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import dataclasses
import re
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

ANSWER = "Hello from the fake upstream! How can I help?"
THINKING = "The user greets me; a short friendly answer will do."
TOOL_NAME = "get_weather"
TOOL_ARGUMENTS = '{"location": "Paris, France", "unit": "celsius"}'
FINGERPRINT = "fp_fake0upstream"
CONTROL_PREFIX = "/_control"


@dataclass
class Scenario:
    """What one request gets. Event counts include every SSE event written (pings too)."""

    status: int | None = None  # answer this status before any byte, with the format's error body
    retry_after: int | None = None  # with `status`: a Retry-After header
    first_byte_delay: float = 0.0  # seconds before the status line
    text: str = ANSWER
    input_tokens: int | None = None  # uncached input; default: body size / 8
    output_tokens: int | None = None  # default: words delivered (+ tool arguments, reasoning)
    reasoning_tokens: int = 0  # part of output, as every provider reports them
    cache_read: int = 0
    cache_write_5m: int = 0  # Anthropic only (OpenAI reports no cache writes)
    cache_write_1h: int = 0
    usage: str = "normal"  # normal | none (no usage at all) | wrong (negative numbers)
    tool_call: bool = False  # answer with one tool call instead of text
    tool_name: str = TOOL_NAME  # the tool it calls (an agent's own: "Bash", "shell"...)
    tool_arguments: str = TOOL_ARGUMENTS  # its arguments, JSON text
    reset_after: int | None = None  # events, then the TCP connection is reset
    stall_after: int | None = None  # events, then silence until the client leaves
    error_after: int | None = None  # events, then the format's in-stream error event, then end
    trickle: float | None = None  # seconds between bytes of the stream
    duration: float | None = None  # spread the events evenly over this many seconds
    zero_input_in_start: bool = (
        False  # Anthropic: message_start says 0 input, message_delta the truth
    )
    no_terminal: bool = False  # end without the terminal event ([DONE], message_stop, response.*)
    endless_event_after: int | None = None  # events, then one event that never ends (16 MiB)
    terminal: str = "completed"  # Responses: completed | incomplete | failed
    # Benchmarks: each event's JSON data starts with "x_sent", this process's monotonic clock
    # when the event was written (a client on the same machine reads the transit time).
    stamp: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Scenario:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown scenario fields: {sorted(unknown)}")
        return cls(**data)


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)

    def json(self) -> Any:
        return orjson.loads(self.body)

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body.decode("utf-8", "replace"),
        }


@dataclass
class FakeUpstream:
    """The state behind the server: scripted scenarios, requests seen, cancellations."""

    requests: list[RecordedRequest] = field(default_factory=list)
    cancellations: int = 0
    completed_streams: int = 0
    _queue: deque[tuple[str | None, Scenario]] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def script(
        self,
        scenario: Scenario | None = None,
        *,
        path: str | None = None,
        times: int = 1,
        **fields: Any,
    ) -> None:
        """Queue `scenario` (or one built from `fields`) for the next `times` requests to `path`."""
        chosen = scenario or Scenario(**fields)
        with self._lock:
            self._queue.extend((path, chosen) for _ in range(times))

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.cancellations = 0
            self.completed_streams = 0

    def take(self, path: str) -> Scenario | None:
        with self._lock:
            for index, (wanted, scenario) in enumerate(self._queue):
                if wanted is None or wanted == path:
                    del self._queue[index]
                    return scenario
        return None

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in list(self.requests) if r.path == path]

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app[UPSTREAM_KEY] = self
        app.router.add_post("/v1/chat/completions", chat_completions)
        app.router.add_post("/v1/embeddings", embeddings)
        app.router.add_post("/v1/responses", responses)
        app.router.add_post("/v1/messages", messages)
        app.router.add_post("/v1/messages/count_tokens", count_tokens)
        app.router.add_get("/v1/models", models)
        for version in ("/v1beta", "/v1"):
            app.router.add_post(version + "/models/{target:.+}", gemini_call)
            app.router.add_get(version + "/models/{target:.+}", gemini_model)
        app.router.add_get("/v1beta/models", gemini_models)
        app.router.add_post(CONTROL_PREFIX + "/script", control_script)
        app.router.add_get(CONTROL_PREFIX + "/requests", control_requests)
        app.router.add_get(CONTROL_PREFIX + "/stats", control_stats)
        app.router.add_post(CONTROL_PREFIX + "/reset", control_reset)
        return app


UPSTREAM_KEY = web.AppKey("upstream", FakeUpstream)


# ---------------------------------------------------------------- one request's facts


@dataclass
class Call:
    """A request, read once: its body, its scenario and the answer's token counts."""

    body: dict[str, Any]
    scenario: Scenario
    words: list[str]
    truncated: bool
    input_tokens: int

    @property
    def output_tokens(self) -> int:
        if self.scenario.output_tokens is not None:
            return self.scenario.output_tokens
        extra = len(_pieces(self.scenario.tool_arguments)) if self.scenario.tool_call else 0
        return len(self.words) + extra + self.scenario.reasoning_tokens

    @property
    def stream(self) -> bool:
        return self.body.get("stream") is True

    @property
    def model(self) -> str:
        return str(self.body.get("model") or "fake-model")


def _pieces(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text)


async def _read_call(request: web.Request) -> Call:
    upstream = request.app[UPSTREAM_KEY]
    raw = await request.read()
    upstream.requests.append(
        RecordedRequest(
            request.method, request.path, request.query_string, list(request.headers.items()), raw
        )
    )
    header = request.headers.get("X-Fake-Scenario")
    try:
        scenario = (
            Scenario.from_json(orjson.loads(header)) if header else upstream.take(request.path)
        )
    except (TypeError, ValueError) as error:  # a test's typo: say so, plainly
        raise web.HTTPBadRequest(text=f"X-Fake-Scenario: {error}") from error
    scenario = scenario or Scenario()
    body = orjson.loads(raw) if raw else {}
    generation = body.get("generationConfig") if isinstance(body, dict) else None
    cap = (
        body.get("max_completion_tokens")
        or body.get("max_tokens")
        or body.get("max_output_tokens")
        or (generation.get("maxOutputTokens") if isinstance(generation, dict) else None)
    )
    words = _pieces(scenario.text)
    truncated = isinstance(cap, int) and 0 < cap < len(words)
    if truncated:
        words = words[:cap]
    given = scenario.input_tokens
    return Call(
        body, scenario, words, truncated, given if given is not None else max(1, len(raw) // 8)
    )


def _id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value)


# ---------------------------------------------------------------- errors before any byte

_OPENAI_ERRORS = {
    400: (
        "invalid_request_error",
        None,
        "Invalid request: the fake upstream was told to refuse it.",
    ),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again in 1s.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
_ANTHROPIC_ERRORS = {
    400: ("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"),
    401: ("authentication_error", "invalid x-api-key"),
    404: ("not_found_error", "model: not found"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


def error_response(status: int, anthropic: bool, retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    if anthropic:
        kind, message = _ANTHROPIC_ERRORS.get(status, ("api_error", "Internal server error"))
        body = {
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": _id("req_"),
        }
    else:
        kind, code, message = _OPENAI_ERRORS.get(status, _OPENAI_ERRORS[500])
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    reason = "Overloaded" if status == 529 else None  # a status unknown to http.HTTPStatus
    return web.Response(
        status=status,
        reason=reason,
        body=_dumps(body),
        content_type="application/json",
        headers=headers,
    )


def _openai_stream_error() -> bytes:
    error = {
        "message": "The server had an error while processing your request.",
        "type": "server_error",
    }
    return b"data: " + _dumps({"error": {**error, "param": None, "code": None}}) + b"\n\n"


def _anthropic_stream_error() -> bytes:
    return _sse(
        "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + _dumps(data) + b"\n\n"


# ---------------------------------------------------------------- streaming with faults


async def _stream(
    request: web.Request,
    call: Call,
    events: list[bytes],
    error_event: bytes,
    content_type: str = "text/event-stream; charset=utf-8",
) -> web.StreamResponse:
    """Write `events` as the scenario says; count a client that leaves before the end."""
    upstream = request.app[UPSTREAM_KEY]
    scenario = call.scenario
    if scenario.no_terminal:
        events = events[:-1]
    response = web.StreamResponse(headers={"Content-Type": content_type})
    response.headers["Cache-Control"] = "no-cache"
    try:
        await response.prepare(request)
        pause = scenario.duration / max(1, len(events)) if scenario.duration else 0.0
        for count, event in enumerate(events):
            if count == scenario.reset_after:
                _reset(request)
                return response
            if count == scenario.stall_after:
                await asyncio.sleep(3600)
            if count == scenario.endless_event_after:
                await response.write(b"data: ")
                for _ in range(256):  # 16 MiB of one event's data, with no end of line
                    await response.write(b"x" * 65536)
                break
            if count == scenario.error_after:
                await response.write(error_event)
                break
            if scenario.stamp:
                event = event.replace(b"data: {", b'data: {"x_sent":%.6f,' % time.monotonic(), 1)
            await _write(response, event, scenario.trickle)
            if pause:
                await asyncio.sleep(pause)
        await response.write_eof()
        upstream.completed_streams += 1
    except asyncio.CancelledError:
        upstream.cancellations += 1
        raise
    except ConnectionError:  # the client left between two writes
        upstream.cancellations += 1
    return response


async def _write(response: web.StreamResponse, event: bytes, trickle: float | None) -> None:
    if not trickle:
        await response.write(event)
        return
    for index in range(len(event)):
        await response.write(event[index : index + 1])
        await asyncio.sleep(trickle)


def _reset(request: web.Request) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a crashed upstream or a proxy would."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def _before_answer(
    request: web.Request, anthropic: bool, *, gemini: bool = False
) -> Call | web.Response:
    call = await _read_call(request)
    if gemini and not _gemini_key(request):
        return gemini_error_response(403)
    if call.scenario.first_byte_delay:
        try:
            await asyncio.sleep(call.scenario.first_byte_delay)
        except asyncio.CancelledError:
            request.app[UPSTREAM_KEY].cancellations += 1
            raise
    if call.scenario.status is not None:
        if gemini:
            return gemini_error_response(call.scenario.status, call.scenario.retry_after)
        return error_response(call.scenario.status, anthropic, call.scenario.retry_after)
    return call


# ---------------------------------------------------------------- OpenAI chat completions


def _chat_usage(call: Call) -> dict[str, Any] | None:
    s = call.scenario
    if s.usage == "none":
        return None
    if s.usage == "wrong":
        return {"prompt_tokens": -5, "completion_tokens": -1, "total_tokens": -6}
    prompt = call.input_tokens + s.cache_read
    return {
        "prompt_tokens": prompt,
        "completion_tokens": call.output_tokens,
        "total_tokens": prompt + call.output_tokens,
        "prompt_tokens_details": {"cached_tokens": s.cache_read, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": s.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _finish_reason(call: Call) -> str:
    return "length" if call.truncated else "tool_calls" if call.scenario.tool_call else "stop"


def _tool_call(name: str, arguments: str) -> dict[str, Any]:
    return {
        "id": _id("call_"),
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


async def chat_completions(request: web.Request) -> web.StreamResponse:
    call = await _before_answer(request, anthropic=False)
    if isinstance(call, web.Response):
        return call
    head = {"id": _id("chatcmpl-"), "created": int(time.time()), "model": call.model}
    if not call.stream:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(call.words),
            "refusal": None,
        }
        if call.scenario.tool_call:
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [_tool_call(call.scenario.tool_name, call.scenario.tool_arguments)],
            }
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": _finish_reason(call),
        }
        body = {
            "object": "chat.completion",
            **head,
            "choices": [choice],
            "usage": _chat_usage(call),
        }
        if body["usage"] is None:
            del body["usage"]
        body.update(service_tier="default", system_fingerprint=FINGERPRINT)
        return web.Response(body=_dumps(body), content_type="application/json")
    return await _stream(request, call, _chat_events(call, head), _openai_stream_error())


def _chat_events(call: Call, head: dict[str, Any]) -> list[bytes]:
    include_usage = (call.body.get("stream_options") or {}).get("include_usage") is True
    chunk_head = {**head, "object": "chat.completion.chunk", "system_fingerprint": FINGERPRINT}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        data: dict[str, Any] = {**chunk_head, "choices": [choice]}
        if include_usage:
            data["usage"] = None
        return b"data: " + _dumps(data) + b"\n\n"

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    if call.scenario.tool_call:
        first = {"index": 0, **_tool_call(call.scenario.tool_name, "")}
        events.append(chunk({"tool_calls": [first]}))
        for piece in _pieces(call.scenario.tool_arguments):
            events.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
    else:
        events.extend(chunk({"content": word}) for word in call.words)
    events.append(chunk({}, _finish_reason(call)))
    usage = _chat_usage(call)
    if include_usage and usage is not None:
        events.append(b"data: " + _dumps({**chunk_head, "choices": [], "usage": usage}) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


# ---------------------------------------------------------------- OpenAI embeddings


async def embeddings(request: web.Request) -> web.StreamResponse:
    call = await _before_answer(request, anthropic=False)
    if isinstance(call, web.Response):
        return call
    texts = call.body.get("input")
    inputs = (
        [texts] if isinstance(texts, str) or (texts and isinstance(texts[0], int)) else texts or []
    )
    dimensions = call.body.get("dimensions") or 8
    as_base64 = call.body.get("encoding_format") == "base64"
    data = []
    for index, _ in enumerate(inputs):
        vector = [round(((index + 1) * (d + 1)) % 7 / 7 - 0.5, 6) for d in range(dimensions)]
        encoded: Any = (
            base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            if as_base64
            else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = (
        call.scenario.input_tokens if call.scenario.input_tokens is not None else len(inputs) * 4
    )
    body: dict[str, Any] = {"object": "list", "data": data, "model": call.model}
    if call.scenario.usage == "normal":
        body["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    elif call.scenario.usage == "wrong":
        body["usage"] = {"prompt_tokens": -1, "total_tokens": -1}
    return web.Response(body=_dumps(body), content_type="application/json")


# ---------------------------------------------------------------- models


def _record(request: web.Request, body: bytes = b"") -> None:
    """Record a request that takes no scenario (a listing)."""
    request.app[UPSTREAM_KEY].requests.append(
        RecordedRequest(
            request.method, request.path, request.query_string, list(request.headers.items()), body
        )
    )


async def models(request: web.Request) -> web.Response:
    if _gemini_key(request):  # google-genai lists its models at /v1/models too
        return await gemini_models(request)
    _record(request)
    names = ["fake-gpt", "fake-embedding", "claude-fake"]
    if "anthropic-version" in request.headers:
        data = [
            {
                "type": "model",
                "id": n,
                "display_name": n.title(),
                "created_at": "2025-01-01T00:00:00Z",
            }
            for n in names
        ]
        body = {"data": data, "has_more": False, "first_id": names[0], "last_id": names[-1]}
    else:
        data = [
            {"id": n, "object": "model", "created": 1735689600, "owned_by": "fake"} for n in names
        ]
        body = {"object": "list", "data": data}
    return web.Response(body=_dumps(body), content_type="application/json")


# ---------------------------------------------------------------- Anthropic messages


def _anthropic_usage(call: Call, at_start: bool) -> dict[str, Any]:
    s = call.scenario
    if s.usage == "wrong":
        return {"input_tokens": -1, "output_tokens": -1}
    zero = at_start and s.zero_input_in_start
    usage: dict[str, Any] = {
        "input_tokens": 0 if zero else call.input_tokens,
        "cache_creation_input_tokens": 0 if zero else s.cache_write_5m + s.cache_write_1h,
        "cache_read_input_tokens": 0 if zero else s.cache_read,
    }
    if at_start:
        usage["cache_creation"] = {
            "ephemeral_5m_input_tokens": 0 if zero else s.cache_write_5m,
            "ephemeral_1h_input_tokens": 0 if zero else s.cache_write_1h,
        }
        usage.update(output_tokens=1, service_tier="standard")
    else:
        usage["output_tokens"] = call.output_tokens
    return usage


def _stop_reason(call: Call) -> str:
    return "max_tokens" if call.truncated else "tool_use" if call.scenario.tool_call else "end_turn"


async def messages(request: web.Request) -> web.StreamResponse:
    call = await _before_answer(request, anthropic=True)
    if isinstance(call, web.Response):
        return call
    message_id = _id("msg_")
    if not call.stream:
        content: list[dict[str, Any]] = []
        if call.scenario.reasoning_tokens:
            content.append({"type": "thinking", "thinking": THINKING, "signature": "c2lnbmF0dXJl"})
        if call.scenario.tool_call:
            tool = {"type": "tool_use", "id": _id("toolu_"), "name": call.scenario.tool_name}
            content.append({**tool, "input": orjson.loads(call.scenario.tool_arguments)})
        else:
            content.append({"type": "text", "text": "".join(call.words)})
        usage = _anthropic_usage(call, at_start=True) | {"output_tokens": call.output_tokens}
        body = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": call.model,
            "content": content,
            "stop_reason": _stop_reason(call),
            "stop_sequence": None,
            "usage": usage,
        }
        if call.scenario.usage == "none":
            del body["usage"]
        return web.Response(body=_dumps(body), content_type="application/json")
    return await _stream(
        request, call, _messages_events(call, message_id), _anthropic_stream_error()
    )


def _messages_events(call: Call, message_id: str) -> list[bytes]:
    start = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": call.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    if call.scenario.usage != "none":
        start["usage"] = _anthropic_usage(call, at_start=True)
    events = [_sse("message_start", {"type": "message_start", "message": start})]
    index = 0
    if call.scenario.reasoning_tokens:
        events += _block(
            index, {"type": "thinking", "thinking": ""}, "thinking_delta", "thinking", THINKING
        )
        events.insert(-1, _delta(index, {"type": "signature_delta", "signature": "c2lnbmF0dXJl"}))
        index += 1
    if call.scenario.tool_call:
        tool = call.scenario.tool_name
        block = {"type": "tool_use", "id": _id("toolu_"), "name": tool, "input": {}}
        arguments = call.scenario.tool_arguments
        events += _block(index, block, "input_json_delta", "partial_json", arguments)
    else:
        events += _block(
            index, {"type": "text", "text": ""}, "text_delta", "text", "".join(call.words)
        )
    events.insert(2, _sse("ping", {"type": "ping"}))
    delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": _stop_reason(call), "stop_sequence": None},
    }
    if call.scenario.usage != "none":
        delta["usage"] = _anthropic_usage(call, at_start=False)
    events.append(_sse("message_delta", delta))
    events.append(_sse("message_stop", {"type": "message_stop"}))
    return events


def _delta(index: int, delta: dict[str, Any]) -> bytes:
    return _sse(
        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    )


def _block(index: int, block: dict[str, Any], kind: str, key: str, text: str) -> list[bytes]:
    events = [
        _sse(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": block},
        )
    ]
    events += [_delta(index, {"type": kind, key: piece}) for piece in _pieces(text)]
    events.append(_sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events


async def count_tokens(request: web.Request) -> web.StreamResponse:
    call = await _before_answer(request, anthropic=True)
    if isinstance(call, web.Response):
        return call
    return web.Response(
        body=_dumps({"input_tokens": call.input_tokens}), content_type="application/json"
    )


# ---------------------------------------------------------------- OpenAI Responses


def _responses_usage(call: Call) -> dict[str, Any] | None:
    s = call.scenario
    if s.usage == "none":
        return None
    if s.usage == "wrong":
        return {"input_tokens": -1, "output_tokens": -1, "total_tokens": -2}
    total_in = call.input_tokens + s.cache_read
    return {
        "input_tokens": total_in,
        # OpenAI reports no cache writes; its SDKs' types require the field (0).
        "input_tokens_details": {"cached_tokens": s.cache_read, "cache_write_tokens": 0},
        "output_tokens": call.output_tokens,
        "output_tokens_details": {"reasoning_tokens": s.reasoning_tokens},
        "total_tokens": total_in + call.output_tokens,
    }


def _response_object(
    call: Call, response_id: str, status: str, output: list[Any], usage: Any
) -> dict[str, Any]:
    incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
    error = (
        {"code": "server_error", "message": "The model failed to finish."}
        if status == "failed"
        else None
    )
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": call.body.get("instructions"),
        "max_output_tokens": call.body.get("max_output_tokens"),
        "model": call.model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": call.body.get("tools") or [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


def _responses_item(call: Call, item_id: str, done: bool) -> dict[str, Any]:
    status = "completed" if done else "in_progress"
    if call.scenario.tool_call:
        arguments = call.scenario.tool_arguments if done else ""
        call_id = "call_" + item_id[3:]
        return {
            "id": item_id,
            "type": "function_call",
            "status": status,
            "arguments": arguments,
            "call_id": call_id,
            "name": call.scenario.tool_name,
        }
    content = (
        [{"type": "output_text", "annotations": [], "logprobs": [], "text": "".join(call.words)}]
        if done
        else []
    )
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "content": content,
        "role": "assistant",
    }


def _terminal_status(call: Call) -> str:
    return "incomplete" if call.truncated else call.scenario.terminal


async def responses(request: web.Request) -> web.StreamResponse:
    call = await _before_answer(request, anthropic=False)
    if isinstance(call, web.Response):
        return call
    response_id = _id("resp_")
    item_id = ("fc_" if call.scenario.tool_call else "msg_") + uuid.uuid4().hex[:24]
    if not call.stream:
        output = [_responses_item(call, item_id, done=True)]
        body = _response_object(
            call, response_id, _terminal_status(call), output, _responses_usage(call)
        )
        return web.Response(body=_dumps(body), content_type="application/json")
    return await _stream(
        request, call, _responses_events(call, response_id, item_id), _responses_stream_error()
    )


def _responses_stream_error() -> bytes:
    error = {
        "type": "error",
        "code": "server_error",
        "message": "The server had an error.",
        "param": None,
    }
    return _sse("error", {**error, "sequence_number": 0})


def _responses_events(call: Call, response_id: str, item_id: str) -> list[bytes]:
    sequence = iter(range(1 << 30))
    events: list[bytes] = []

    def emit(kind: str, **data: Any) -> None:
        events.append(_sse(kind, {"type": kind, "sequence_number": next(sequence), **data}))

    emit("response.created", response=_response_object(call, response_id, "in_progress", [], None))
    emit(
        "response.in_progress",
        response=_response_object(call, response_id, "in_progress", [], None),
    )
    emit(
        "response.output_item.added",
        output_index=0,
        item=_responses_item(call, item_id, done=False),
    )
    if call.scenario.tool_call:
        for piece in _pieces(call.scenario.tool_arguments):
            emit(
                "response.function_call_arguments.delta",
                item_id=item_id,
                output_index=0,
                delta=piece,
            )
        emit(
            "response.function_call_arguments.done",
            item_id=item_id,
            output_index=0,
            arguments=call.scenario.tool_arguments,
        )
    else:
        part = {"item_id": item_id, "output_index": 0, "content_index": 0}
        emit(
            "response.content_part.added",
            **part,
            part={"type": "output_text", "annotations": [], "text": ""},
        )
        for word in call.words:
            emit("response.output_text.delta", **part, delta=word, logprobs=[])
        text = "".join(call.words)
        emit("response.output_text.done", **part, text=text, logprobs=[])
        emit(
            "response.content_part.done",
            **part,
            part={"type": "output_text", "annotations": [], "text": text},
        )
    item = _responses_item(call, item_id, done=True)
    emit("response.output_item.done", output_index=0, item=item)
    status = _terminal_status(call)
    final = _response_object(call, response_id, status, [item], _responses_usage(call))
    emit(f"response.{status}", response=final)
    return events


# ---------------------------------------------------------------- Google Gemini

# Google's messages for the statuses its API answers (google.rpc.Code names).
_GEMINI_ERRORS = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: (
        "PERMISSION_DENIED",
        "Method doesn't allow unregistered callers (callers without established identity). "
        "Please use API Key or other form of API consumer identity to call this API.",
    ),
    404: ("NOT_FOUND", "models/unknown is not found for API version v1beta."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    500: ("INTERNAL", "An internal error has occurred. Please retry or report it."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
}
THOUGHT_SIGNATURE = base64.b64encode(b"fake-thought-signature").decode()
GEMINI_MODELS = ("gemini-fake", "gemini-embedding-fake")


def _gemini_key(request: web.Request) -> bool:
    return bool(request.headers.get("x-goog-api-key") or request.query.get("key"))


def _gemini_error(status: int) -> dict[str, Any]:
    name, message = _GEMINI_ERRORS.get(status, _GEMINI_ERRORS[500])
    return {"error": {"code": status, "message": message, "status": name}}


def gemini_error_response(status: int, retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return web.Response(
        status=status,
        body=_dumps(_gemini_error(status)),
        content_type="application/json",
        headers=headers,
    )


async def gemini_call(request: web.Request) -> web.StreamResponse:
    """`models/{model}:{method}`, for each method Google serves there."""
    model, _, method = request.match_info["target"].rpartition(":")
    answer = _GEMINI_METHODS.get(method)
    if answer is None or not model:
        _record(request, await request.read())
        return gemini_error_response(404)
    return await answer(request, model)


def _gemini_usage(call: Call, final: bool) -> dict[str, Any] | None:
    s = call.scenario
    if s.usage == "none":
        return None
    if s.usage == "wrong":
        return {"promptTokenCount": -1, "candidatesTokenCount": -1, "totalTokenCount": -2}
    prompt = call.input_tokens + s.cache_read
    usage: dict[str, Any] = {
        "promptTokenCount": prompt,
        "totalTokenCount": prompt,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }
    if s.cache_read:
        usage["cachedContentTokenCount"] = s.cache_read
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": s.cache_read}]
    if final:
        usage["candidatesTokenCount"] = max(0, call.output_tokens - s.reasoning_tokens)
        if s.reasoning_tokens:
            usage["thoughtsTokenCount"] = s.reasoning_tokens
        usage["totalTokenCount"] = prompt + call.output_tokens
    return usage


def _gemini_pieces(call: Call) -> list[dict[str, Any]]:
    """The answer's parts, one per streamed chunk: thoughts when asked for, then a function
    call (with its thought signature, as Gemini 2.5 and 3 send them) or the words."""
    config = call.body.get("generationConfig") or {}
    thinking = config.get("thinkingConfig") or {}
    pieces: list[dict[str, Any]] = []
    # google-genai writes the fields inside its config objects in snake_case (Google's
    # servers read both spellings).
    if call.scenario.reasoning_tokens and (
        thinking.get("includeThoughts") or thinking.get("include_thoughts")
    ):
        pieces.append({"text": THINKING, "thought": True})
    if call.scenario.tool_call:
        function = {
            "name": call.scenario.tool_name,
            "args": orjson.loads(call.scenario.tool_arguments),
        }
        pieces.append({"functionCall": function, "thoughtSignature": THOUGHT_SIGNATURE})
    else:
        pieces.extend({"text": word} for word in call.words)
    return pieces


def _gemini_chunk(
    call: Call, response_id: str, parts: list[dict[str, Any]], *, final: bool
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if final:
        candidate["finishReason"] = "MAX_TOKENS" if call.truncated else "STOP"
    chunk: dict[str, Any] = {"candidates": [candidate]}
    usage = _gemini_usage(call, final)
    if usage is not None:
        chunk["usageMetadata"] = usage
    chunk.update(modelVersion=call.model, responseId=response_id)
    return chunk


def _joined(pieces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A whole answer's parts: the streamed text pieces joined, as Google answers them."""
    parts: list[dict[str, Any]] = []
    for piece in pieces:
        plain = set(piece) == {"text"}
        if plain and parts and set(parts[-1]) == {"text"}:
            parts[-1] = {"text": parts[-1]["text"] + piece["text"]}
        else:
            parts.append(dict(piece))
    return parts


async def _gemini_generate(request: web.Request, model: str) -> web.StreamResponse:
    call = await _before_answer(request, anthropic=False, gemini=True)
    if isinstance(call, web.Response):
        return call
    call.body["model"] = model
    chunk = _gemini_chunk(call, _id(""), _joined(_gemini_pieces(call)), final=True)
    return web.Response(body=_dumps(chunk), content_type="application/json")


async def _gemini_stream(request: web.Request, model: str) -> web.StreamResponse:
    call = await _before_answer(request, anthropic=False, gemini=True)
    if isinstance(call, web.Response):
        return call
    call.body["model"] = model
    response_id = _id("")
    pieces = _gemini_pieces(call) or [{"text": ""}]
    chunks = [
        _dumps(_gemini_chunk(call, response_id, [piece], final=index == len(pieces) - 1))
        for index, piece in enumerate(pieces)
    ]
    error = _dumps(_gemini_error(500))
    if request.query.get("alt") == "sse":
        events = [b"data: " + chunk + b"\r\n\r\n" for chunk in chunks]
        return await _stream(request, call, events, b"data: " + error + b"\r\n\r\n")
    # Google's JSON array: `[`, the chunks separated by `,\r\n`, `]` (with the last chunk).
    events = [(b"[" if i == 0 else b",\r\n") + chunk for i, chunk in enumerate(chunks)]
    events[-1] += b"]"
    return await _stream(request, call, events, b",\r\n" + error + b"]", "application/json")


async def _gemini_count(request: web.Request, _model: str) -> web.StreamResponse:
    call = await _before_answer(request, anthropic=False, gemini=True)
    if isinstance(call, web.Response):
        return call
    details = [{"modality": "TEXT", "tokenCount": call.input_tokens}]
    body = {"totalTokens": call.input_tokens, "promptTokensDetails": details}
    return web.Response(body=_dumps(body), content_type="application/json")


def _vector(index: int, dimensions: int) -> list[float]:
    return [round(((index + 1) * (d + 1)) % 7 / 7 - 0.5, 6) for d in range(dimensions)]


async def _gemini_embed(request: web.Request, _model: str) -> web.StreamResponse:
    call = await _before_answer(request, anthropic=False, gemini=True)
    if isinstance(call, web.Response):
        return call
    dimensions = call.body.get("outputDimensionality") or 8
    body = {"embedding": {"values": _vector(0, dimensions)}}
    return web.Response(body=_dumps(body), content_type="application/json")


async def _gemini_batch_embed(request: web.Request, _model: str) -> web.StreamResponse:
    call = await _before_answer(request, anthropic=False, gemini=True)
    if isinstance(call, web.Response):
        return call
    requests = call.body.get("requests") or []
    embeddings = [
        {"values": _vector(index, item.get("outputDimensionality") or 8)}
        for index, item in enumerate(requests)
    ]
    return web.Response(body=_dumps({"embeddings": embeddings}), content_type="application/json")


_GEMINI_METHODS = {
    "generateContent": _gemini_generate,
    "streamGenerateContent": _gemini_stream,
    "countTokens": _gemini_count,
    "embedContent": _gemini_embed,
    "batchEmbedContents": _gemini_batch_embed,
}


def _gemini_model_entry(name: str) -> dict[str, Any]:
    embedding = "embedding" in name
    methods = ["embedContent", "batchEmbedContents"] if embedding else ["generateContent"]
    return {
        "name": f"models/{name}",
        "version": "001",
        "displayName": name.title(),
        "description": "A model of the fake upstream.",
        "inputTokenLimit": 2048 if embedding else 1_048_576,
        "outputTokenLimit": 1 if embedding else 65_536,
        "supportedGenerationMethods": [*methods, "countTokens"],
    }


async def gemini_models(request: web.Request) -> web.Response:
    _record(request)
    if not _gemini_key(request):
        return gemini_error_response(403)
    body = {"models": [_gemini_model_entry(name) for name in GEMINI_MODELS]}
    return web.Response(body=_dumps(body), content_type="application/json")


async def gemini_model(request: web.Request) -> web.Response:
    _record(request)
    if not _gemini_key(request):
        return gemini_error_response(403)
    name = request.match_info["target"]
    if name not in GEMINI_MODELS:
        return gemini_error_response(404)
    return web.Response(body=_dumps(_gemini_model_entry(name)), content_type="application/json")


# ---------------------------------------------------------------- control


async def control_script(request: web.Request) -> web.Response:
    data = await request.json()
    try:
        scenario = Scenario.from_json(data.get("scenario") or {})
    except (TypeError, ValueError) as error:
        return web.json_response({"error": str(error)}, status=400)
    request.app[UPSTREAM_KEY].script(
        scenario, path=data.get("path"), times=int(data.get("times", 1))
    )
    return web.json_response({"queued": int(data.get("times", 1))})


async def control_requests(request: web.Request) -> web.Response:
    seen = request.app[UPSTREAM_KEY].requests
    return web.Response(
        body=_dumps([r.as_dict() for r in list(seen)]), content_type="application/json"
    )


async def control_stats(request: web.Request) -> web.Response:
    upstream = request.app[UPSTREAM_KEY]
    stats = {
        "requests": len(upstream.requests),
        "cancellations": upstream.cancellations,
        "completed_streams": upstream.completed_streams,
    }
    return web.json_response(stats)


async def control_reset(request: web.Request) -> web.Response:
    request.app[UPSTREAM_KEY].reset()
    return web.json_response({"reset": True})


# ---------------------------------------------------------------- running it


async def start(upstream: FakeUpstream, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner and the port (a free one when `port` is 0)."""
    # handler_cancellation: a client that leaves cancels its handler, which counts it.
    runner = web.AppRunner(upstream.app(), handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    return runner, int(runner.addresses[0][1])


@dataclass
class Running:
    upstream: FakeUpstream
    base_url: str
    loop: asyncio.AbstractEventLoop


@contextlib.contextmanager
def serve_in_thread(host: str = "127.0.0.1", port: int = 0) -> Iterator[Running]:
    """Run a `FakeUpstream` on its own event loop in a daemon thread, for tests."""
    upstream = FakeUpstream()
    loop = asyncio.new_event_loop()
    ready: dict[str, Any] = {}
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        ready["runner"], ready["port"] = loop.run_until_complete(start(upstream, host, port))
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="fake-upstream", daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield Running(upstream, f"http://{host}:{ready['port']}", loop)
    finally:
        asyncio.run_coroutine_threadsafe(ready["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="A fake OpenAI/Anthropic/Gemini upstream for quotaledger's relay."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9999)
    args = parser.parse_args(argv)

    async def serve() -> None:
        runner, port = await start(FakeUpstream(), args.host, args.port)
        base = f"http://{args.host}:{port}"
        print(f"Fake upstream on {base} (any API key is accepted)")
        for line in (__doc__ or "").splitlines():  # the endpoint table above
            if line.startswith(("    POST", "    GET")):
                print(line)
        print(f"Script a fault: POST {base}{CONTROL_PREFIX}/script (see the module's docstring)")
        print(f"Requests seen:  GET {base}{CONTROL_PREFIX}/requests")
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        import uvloop  # what quotaledger serve runs on; a third less CPU per request here

        run: Any = uvloop.run
    except ImportError:
        run = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        run(serve())


if __name__ == "__main__":
    main()
