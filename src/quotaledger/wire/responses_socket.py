"""The messages of OpenAI's Responses WebSocket mode (SPEC §14), without the socket.

The client sends `{"type": "response.create", ...the Responses body}`, one at a time; the
server answers each with the stream's events, each one text message holding the JSON an SSE
`data:` would, and refuses with `{"type": "error", "status": S, "error": {...}}` (OpenAI's
error object; Codex treats it as an HTTP answer of status S with that body).

What the mode adds to HTTP, kept per socket by a `Chain`:
- **continuation**: after a response, the next `response.create` may carry only the new items
  and `previous_response_id` naming it (Codex does so for every turn on a socket, `store`
  false included). A `Chain` remembers the last response's whole input and output and expands
  such a request into the whole conversation, so that upstream only plain HTTP Responses
  requests are ever sent; a `previous_response_id` it does not know goes upstream as it came.
- **warm-up**: `generate: false` (Codex sends one as a session starts) asks for no output,
  only a response id to chain from; it is answered here (`warmup`), never upstream.

The transport's own fields (`type`, `generate`, `stream_id`, `client_metadata`: Codex's
per-turn headers of the HTTP path) never go upstream; `stream` is always true.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from quotaledger.wire.errors import InvalidRequest
from quotaledger.wire.openai_responses import TERMINAL_EVENTS, prepare_responses

CREATE = "response.create"
# Codex's acknowledgement of a response it has processed: nothing to answer.
_ACKNOWLEDGEMENTS = frozenset({"response.processed"})
_TRANSPORT_FIELDS = ("type", "generate", "client_metadata", "stream_id")
_ZERO_USAGE = {
    "input_tokens": 0,
    "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
    "output_tokens": 0,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 0,
}


@dataclass(frozen=True)
class Ask:
    """One `response.create`, as it goes upstream (or is answered here, for a warm-up)."""

    body: dict[str, Any]
    items: list[Any]  # its whole input as a list of items (what the next turn continues)
    warmup: bool = False
    continued: bool = False  # it named the socket's last response: expanded here
    # The client's lane (OpenAI's multiplexing): named on each event of its answer. Lanes
    # are answered one after the other here, never at once.
    stream_id: str | None = None

    def labelled(self, event: str) -> str:
        """An event of this request's answer (a JSON object's text), with its lane."""
        if self.stream_id is None or not event.startswith("{"):
            return event
        lane = orjson.dumps({"stream_id": self.stream_id}).decode()
        return lane[:-1] + ("," if event != "{}" else "") + event[1:]


@dataclass
class _Answered:
    response_id: str
    items: list[Any]  # the request's whole input, then its output
    output: list[Any] = field(default_factory=list)


class Chain:
    """A socket's memory of its last response, for the next request to continue from."""

    def __init__(self) -> None:
        self.last: _Answered | None = None

    def ask(self, text: str) -> Ask | None:
        """The request in one client message (None: an acknowledgement, nothing to do).
        Raises `InvalidRequest` naming the field."""
        message = _message(text)
        kind = message.get("type")
        if kind in _ACKNOWLEDGEMENTS:
            return None
        if kind != CREATE:
            raise InvalidRequest(f"unknown event type {kind!r}: send {CREATE!r}", "type")
        if message.get("background") is True:
            raise InvalidRequest("background is not supported over WebSocket", "background")
        warmup = message.get("generate") is False
        lane = message.get("stream_id")
        if lane is not None and not isinstance(lane, str):
            raise InvalidRequest("stream_id must be a string", "stream_id")
        body = {k: v for k, v in message.items() if k not in _TRANSPORT_FIELDS}
        body["stream"] = True
        prepare_responses(body, default_max_tokens=None)  # the same checks as a POST's
        items = _items(body.get("input"))
        last = self.last
        continued = last is not None and body.get("previous_response_id") == last.response_id
        if last is not None and continued:
            del body["previous_response_id"]
            items = [*last.items, *last.output, *items]
            body["input"] = items
        return Ask(body, items, warmup, continued, lane)

    def answered(self, ask: Ask, response_id: str | None, output: list[Any]) -> None:
        """The response `ask` got (None: none, the request failed): the next may chain."""
        self.last = None if response_id is None else _Answered(response_id, ask.items, output)

    def forget(self) -> None:
        self.last = None


def _message(text: str) -> dict[str, Any]:
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InvalidRequest("the message is not valid JSON") from None
    if not isinstance(message, dict):
        raise InvalidRequest("the message must be a JSON object", "type")
    return message


def _items(given: Any) -> list[Any]:
    """`input` as a list of items (a string is one user message, as the API reads it)."""
    if given is None:
        return []
    if isinstance(given, str):
        return [{"type": "message", "role": "user", "content": given}]
    return list(given)


class Outcome:
    """What a relayed response's events say: its id and output, for the `Chain`."""

    # The events read; every other one passes unread (most are deltas).
    _READ = frozenset({"response.output_item.done", *TERMINAL_EVENTS})

    def __init__(self) -> None:
        self.response_id: str | None = None
        self.output: list[Any] = []
        self.terminal: dict[str, Any] | None = None  # the terminal event's response

    def read(self, kind: str | None, data: str) -> None:
        """One event (`kind`: its SSE `event:` field, None when it had none)."""
        if kind is not None and kind not in self._READ:
            return
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(event, dict) or event.get("type") not in self._READ:
            return
        if event["type"] == "response.output_item.done":
            self.output.append(event.get("item"))
            return
        response = event.get("response")
        if isinstance(response, dict) and isinstance(response.get("id"), str):
            self.response_id, self.terminal = response["id"], response

    @property
    def chained(self) -> tuple[str | None, list[Any]]:
        """The id the next request may continue from (a response that ended) and its output
        (the terminal event's list, else the items seen done)."""
        if self.terminal is None:
            return None, []
        output = self.terminal.get("output")
        return self.response_id, output if isinstance(output, list) else self.output


def warmup(ask: Ask) -> tuple[str, list[str]]:
    """The answer to `generate: false`: a response created and completed, no output, no
    usage; its id (which the next request may continue from) and its two events."""
    response_id = "resp_" + uuid.uuid4().hex
    body = ask.body
    response = {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "model": body["model"],
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "usage": None,
    }
    done = {**response, "status": "completed", "usage": _ZERO_USAGE}
    return response_id, [
        _event("response.created", 0, response),
        _event("response.completed", 1, done),
    ]


def _event(kind: str, number: int, response: dict[str, Any]) -> str:
    return orjson.dumps({"type": kind, "sequence_number": number, "response": response}).decode()


def error_event(status: int, body: bytes, headers: dict[str, str]) -> str:
    """A refusal as the socket's `error` message: `body` is the HTTP answer's (OpenAI's
    `{"error": {...}}`, or an upstream's own text), `headers` those it would carry."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        error = {"message": body.decode("utf-8", "replace"), "type": "upstream_error"}
    # The headers where the SDKs read them (in the error) and where Codex does (beside it).
    error = {**error, "headers": headers}
    event = {"type": "error", "status": status, "error": error, "headers": headers}
    return orjson.dumps(event).decode()
