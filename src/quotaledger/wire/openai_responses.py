"""OpenAI Responses on the wire (SPEC §8a): the body sent upstream, the usage of an answer,
and a stream tracker that ends a stream cut short with a terminal event of ours.

Usage: `input_tokens` *includes* `input_tokens_details.cached_tokens` (uncached input =
input - cached); `output_tokens` includes `output_tokens_details.reasoning_tokens`. A stream's
usage comes from its terminal event: `response.completed`, `response.incomplete` or
`response.failed`. A stream that ends without one is settled on what was relayed (the
relay's prompt estimate and the tokens of the text delivered) and the client gets a
`response.failed` of ours, shaped as OpenAI's (the `response.created` object with status
`failed`, an `error`, the output items finished so far and the usage settled), numbered after
the last event relayed.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace
from typing import Any, Literal

import orjson

from quotaledger.token_usage import TokenUsage
from quotaledger.wire import counting
from quotaledger.wire.counting import TextTally, local_usage
from quotaledger.wire.counts import count, optional_count
from quotaledger.wire.errors import InvalidRequest
from quotaledger.wire.sse import SSEEvent

TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
_OUTPUT_DELTAS = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        "response.custom_tool_call_input.delta",
    }
)
_REASONING_DELTAS = frozenset(
    {"response.reasoning_summary_text.delta", "response.reasoning_text.delta"}
)


@dataclass(frozen=True, slots=True)
class PreparedResponses:
    body: dict[str, Any]  # what goes upstream (a copy)
    stream: bool
    output_cap: int  # max_output_tokens: the client's, else the relay's default
    cap_set_by_relay: bool

    @property
    def reserved_output_tokens(self) -> int:
        return self.output_cap

    def encode(self) -> bytes:
        return orjson.dumps(self.body)


def prepare_responses(
    body: Any, *, default_max_tokens: int | None, upstream_model: str | None = None
) -> PreparedResponses:
    """Check a Responses request and build the upstream body: `model` mapped, and
    `max_output_tokens` set to `default_max_tokens` when the client set none."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise InvalidRequest("model is required (a string)", "model")
    given = body.get("input")
    if given is not None and not isinstance(given, str | list):
        raise InvalidRequest("input must be a string or an array of items", "input")
    if body.get("stream") not in (None, True, False):
        raise InvalidRequest("stream must be a boolean", "stream")
    cap = body.get("max_output_tokens")
    if cap is not None and (count(cap) is None or cap == 0):
        raise InvalidRequest("max_output_tokens must be a positive integer", "max_output_tokens")
    upstream = dict(body)
    if upstream_model:
        upstream["model"] = upstream_model
    if cap is None and default_max_tokens is not None:
        upstream["max_output_tokens"] = default_max_tokens
    return PreparedResponses(
        upstream, body.get("stream") is True, cap or default_max_tokens or 0, cap is None
    )


def with_output_cap(body: dict[str, Any], cap: int) -> dict[str, Any]:
    """`body` (a copy) with `max_output_tokens` lowered to `cap` (reasoning tokens count in
    it; Responses has no separate reasoning budget to lower)."""
    return {**body, "max_output_tokens": cap}


def parse_usage(usage: Any) -> TokenUsage | None:
    """A Responses `usage` object, or None when absent or not believable."""
    if not isinstance(usage, dict):
        return None
    given, output = count(usage.get("input_tokens")), count(usage.get("output_tokens"))
    input_details = usage.get("input_tokens_details")
    output_details = usage.get("output_tokens_details")
    cached = optional_count(
        input_details.get("cached_tokens") if isinstance(input_details, dict) else None
    )
    reasoning = optional_count(
        output_details.get("reasoning_tokens") if isinstance(output_details, dict) else None
    )
    if given is None or output is None or cached is None or reasoning is None:
        return None
    if cached > given or reasoning > output:
        return None
    return TokenUsage(input=given - cached, cache_read=cached, output=output, reasoning=reasoning)


def web_searches(items: Any) -> int:
    """The `web_search_call` items among a response's output: OpenAI bills each call."""
    if not isinstance(items, list):
        return 0
    return sum(1 for item in items if isinstance(item, dict) and item.get("type") == _SEARCH)


_SEARCH = "web_search_call"


def as_responses_usage(usage: TokenUsage) -> dict[str, Any]:
    """`usage` as a Response's: the input counts cache reads and writes (an Anthropic
    channel's, converted), as OpenAI's input includes its cached tokens."""
    cache_writes = usage.cache_write_5m + usage.cache_write_1h
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cache_read,
            "cache_write_tokens": cache_writes,
        },
        "output_tokens": usage.output,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning},
        "total_tokens": usage.total_tokens,
    }


def _item_texts(item: Any, output: list[str], reasoning: list[str]) -> None:
    if not isinstance(item, dict):
        return
    kind = item.get("type")
    if kind == "message":
        for part in item.get("content") or []:
            if isinstance(part, dict):
                text = part.get("text", part.get("refusal"))
                if isinstance(text, str):
                    output.append(text)
    elif kind == "reasoning":
        for part in (item.get("summary") or []) + (item.get("content") or []):
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                output.append(part["text"])
                reasoning.append(part["text"])
    else:
        for name in ("name", "arguments", "input"):  # function and custom tool calls
            if isinstance(item.get(name), str):
                output.append(item[name])


def response_texts(answer: Any) -> tuple[list[str], list[str]]:
    """A response's delivered text: (every output piece, the reasoning pieces)."""
    output: list[str] = []
    reasoning: list[str] = []
    items = answer.get("output") if isinstance(answer, dict) else None
    for item in items if isinstance(items, list) else []:
        _item_texts(item, output, reasoning)
    return output, reasoning


def reported_usage(answer: Any) -> TokenUsage | None:
    """A whole response's own usage report with its web searches (None when absent or
    malformed), for `billing.believable` to judge."""
    if not isinstance(answer, dict):
        return None
    reported = parse_usage(answer.get("usage"))
    searches = web_searches(answer.get("output"))
    return replace(reported, web_search=searches) if reported and searches else reported


def response_usage(answer: Any, *, prompt_tokens: int) -> TokenUsage:
    """A non-stream response's usage: upstream's when believable, else counted here."""
    output, reasoning = response_texts(answer)
    reported = reported_usage(answer)
    if reported is None or (reported.output == 0 and any(output)):
        searches = web_searches(answer.get("output")) if isinstance(answer, dict) else 0
        return replace(local_usage(prompt_tokens, output, reasoning), web_search=searches)
    return reported


class ResponsesStream:
    """Follows one streamed response; every upstream event is relayed unchanged."""

    def __init__(self, *, prompt_tokens: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.terminal: str | None = None  # the terminal event's type, once seen
        self.upstream_error: dict[str, Any] | None = None
        self.reported: TokenUsage | None = None
        self.sequence_number = -1  # the last one relayed
        self._response: dict[str, Any] = {}
        self._items: list[Any] = []
        # What was delivered, kept within a bound for counting (`counting.TextTally`).
        self._output = TextTally()
        self._reasoning = TextTally()
        self.web_searches = 0  # web_search_call items seen done

    @property
    def delivered(self) -> bool:
        return self._output.any

    @property
    def done(self) -> bool:
        return self.terminal is not None

    def relay(self, event: SSEEvent) -> bytes:
        if event.has_data:
            try:
                data = event.json()
            except ValueError:
                return event.raw
            if isinstance(data, dict):
                self._learn(data.get("type") or event.event, data)
        return event.raw

    def _learn(self, kind: Any, data: dict[str, Any]) -> None:
        number = data.get("sequence_number")
        if isinstance(number, int) and number > self.sequence_number:
            self.sequence_number = number
        if kind in _OUTPUT_DELTAS or kind in _REASONING_DELTAS:
            delta = data.get("delta")
            if isinstance(delta, str):
                self._output.add(delta)
                if kind in _REASONING_DELTAS:
                    self._reasoning.add(delta)
        elif kind == "response.output_item.done":
            item = data.get("item")
            self.web_searches += web_searches([item])
            if self._output.kept_chars < counting.KEEP_CHARS:
                # The items make our own terminal event should the stream be cut; past
                # the bound a cut stream's event lists those kept so far.
                self._items.append(item)
        elif kind == "response.created" and isinstance(data.get("response"), dict):
            self._response = data["response"]
        elif kind in TERMINAL_EVENTS:
            self.terminal = str(kind)
            response = data.get("response")
            self.reported = reported_usage(response)
            if self.reported is not None and self.web_searches > self.reported.web_search:
                self.reported = replace(self.reported, web_search=self.web_searches)
        elif kind == "error":
            self.upstream_error = data

    def usage(self) -> TokenUsage:
        """The terminal event's usage when believable, else counted over what was relayed."""
        reported = self.reported
        if reported is not None and (reported.output > 0 or not self.delivered):
            return reported
        return self.local_usage()

    def reported_usage(self) -> TokenUsage | None:
        """The terminal event's usage report, for `billing.believable` to judge."""
        return self.reported

    def local_usage(self) -> TokenUsage:
        """The usage counted here over what was relayed, at a bounded cost."""
        usage = local_usage(self.prompt_tokens, self._output, self._reasoning)
        return replace(usage, web_search=self.web_searches)

    async def local_usage_exact(self) -> TokenUsage:
        """`local_usage` counted exactly in a worker thread."""
        usage = await counting.local_usage_exact(self.prompt_tokens, self._output, self._reasoning)
        return replace(usage, web_search=self.web_searches)

    def finish(self) -> bytes:
        """Nothing after a terminal event; else our `response.failed`."""
        if self.terminal is not None:
            return b""
        return self.fail("The upstream stream ended before the response was complete.")

    def fail(
        self,
        message: str,
        *,
        status: Literal["failed", "incomplete"] = "failed",
        code: str = "server_error",
    ) -> bytes:
        """Our terminal event, `response.failed` (or `response.incomplete`, whose reason is
        then `max_output_tokens`), with the usage that will be settled."""
        self.terminal = f"response.{status}"
        response = {
            "id": "resp_" + uuid.uuid4().hex,
            "object": "response",
            "created_at": int(time.time()),
            **self._response,
            "status": status,
            "error": {"code": code, "message": message} if status == "failed" else None,
            "incomplete_details": {"reason": "max_output_tokens"}
            if status == "incomplete"
            else None,
            "output": [item for item in self._items if item is not None],
            "usage": as_responses_usage(self.usage()),
        }
        self.sequence_number += 1
        event = {
            "type": self.terminal,
            "sequence_number": self.sequence_number,
            "response": response,
        }
        return b"event: " + self.terminal.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"
