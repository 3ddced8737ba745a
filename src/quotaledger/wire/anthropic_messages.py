"""Anthropic Messages on the wire (SPEC §8a): the body sent upstream, the usage of an answer,
and a stream tracker. Nothing of an Anthropic stream is rewritten: every event passes as is.

Usage: `input_tokens` excludes cache reads and writes, which are their own fields. Cache
writes are split into 5-minute and 1-hour ones by `cache_creation.ephemeral_5m_input_tokens`
/ `ephemeral_1h_input_tokens` when the answer has them; without the split, every
`cache_creation_input_tokens` is a 5-minute write (the default TTL); a split that accounts for
fewer tokens than the total leaves the rest to 5 minutes. Thinking is part of `output_tokens`
(`output_tokens_details.thinking_tokens` says how much).

Streams: usage starts from `message_start`'s and each field is then overwritten by any later
non-zero value of the same field in `message_delta` (the counts are cumulative: never added).
So a `message_start` that says `input_tokens: 0` and a `message_delta` that has the real value
settle on the real value. A stream cut before its `message_delta` settles on the input it
reported (or the relay's estimate when it reported none) and the larger of its output count
and the tokens of what was delivered: content once relayed is never settled at 0.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import orjson

from quotaledger.token_usage import TokenUsage, UsageSource
from quotaledger.wire import counting
from quotaledger.wire.counting import TextTally, local_usage, messages_prompt_tokens
from quotaledger.wire.counts import count, optional_count
from quotaledger.wire.errors import InvalidRequest, anthropic_stream_error
from quotaledger.wire.sse import SSEEvent

# The usage fields of message_start / message_delta, flattened ("a.b" for nested ones).
_FIELDS = (
    "input_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation.ephemeral_5m_input_tokens",
    "cache_creation.ephemeral_1h_input_tokens",
    "output_tokens",
    "output_tokens_details.thinking_tokens",
)
_DELTA_TEXT = {
    "text_delta": "text",
    "thinking_delta": "thinking",
    "input_json_delta": "partial_json",
}


@dataclass(frozen=True, slots=True)
class PreparedMessages:
    body: dict[str, Any]  # what goes upstream (a copy)
    stream: bool
    output_cap: int  # max_tokens, which this API requires

    @property
    def reserved_output_tokens(self) -> int:
        return self.output_cap

    def encode(self) -> bytes:
        return orjson.dumps(self.body)


def prepare_messages(body: Any, *, upstream_model: str | None = None) -> PreparedMessages:
    """Check a Messages request and build the upstream body (only `model` may change)."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise InvalidRequest("model: Field required", "model")
    if not isinstance(body.get("messages"), list):
        raise InvalidRequest("messages: Field required", "messages")
    cap = count(body.get("max_tokens"))
    if not cap:
        raise InvalidRequest("max_tokens: a positive integer is required", "max_tokens")
    if body.get("stream") not in (None, True, False):
        raise InvalidRequest("stream: Input should be a valid boolean", "stream")
    upstream = {**body, "model": upstream_model} if upstream_model else dict(body)
    return PreparedMessages(upstream, body.get("stream") is True, cap)


def thinking_budget(body: dict[str, Any]) -> int | None:
    """The client's extended-thinking budget (`thinking.budget_tokens` of an enabled
    `thinking`), or None."""
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return None
    return count(thinking.get("budget_tokens"))


def with_output_cap(
    body: dict[str, Any],
    cap: int,
    *,
    thinking_budget: int | None = None,
    thinking_off: bool = False,
) -> dict[str, Any]:
    """`body` (a copy) with `max_tokens` lowered to `cap` and, as `billing.sizing` decided,
    the thinking budget lowered to `thinking_budget` or thinking turned off (Anthropic wants
    `1024 <= budget_tokens < max_tokens`; a request without a valid one is refused)."""
    capped = {**body, "max_tokens": cap}
    if thinking_off:
        capped.pop("thinking", None)
    elif thinking_budget is not None and isinstance(body.get("thinking"), dict):
        capped["thinking"] = {**body["thinking"], "budget_tokens": thinking_budget}
    return capped


def count_tokens_answer(body: Any) -> bytes:
    """`/v1/messages/count_tokens` answered here (no anthropic channel): `{"input_tokens": N}`."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        raise InvalidRequest("messages: Field required", "messages")
    return orjson.dumps({"input_tokens": messages_prompt_tokens(body)})


def _flatten(usage: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name in _FIELDS:
        outer, _, inner = name.partition(".")
        value = usage.get(outer)
        if inner:
            value = value.get(inner) if isinstance(value, dict) else None
        if value is not None:
            flat[name] = value
    return flat


def _from_flat(flat: dict[str, Any]) -> TokenUsage | None:
    values = {name: optional_count(flat.get(name)) for name in _FIELDS}
    if any(v is None for v in values.values()) or "output_tokens" not in flat:
        return None
    v: dict[str, int] = {k: n for k, n in values.items() if n is not None}
    written = v["cache_creation_input_tokens"]
    one_hour = min(v["cache_creation.ephemeral_1h_input_tokens"], written)
    if "cache_creation.ephemeral_5m_input_tokens" not in flat and not one_hour:
        five_minutes = written
    else:
        five_minutes = max(v["cache_creation.ephemeral_5m_input_tokens"], written - one_hour)
    return TokenUsage(
        input=v["input_tokens"],
        cache_read=v["cache_read_input_tokens"],
        cache_write_5m=five_minutes,
        cache_write_1h=one_hour,
        output=v["output_tokens"],
        reasoning=min(v["output_tokens_details.thinking_tokens"], v["output_tokens"]),
    )


def parse_usage(usage: Any) -> TokenUsage | None:
    """An Anthropic `usage` object, or None when absent or invalid."""
    return _from_flat(_flatten(usage)) if isinstance(usage, dict) else None


def web_search_requests(usage: Any) -> int:
    """`server_tool_use.web_search_requests` of a usage object (0 when absent or invalid):
    Anthropic bills each web search its server made."""
    tools = usage.get("server_tool_use") if isinstance(usage, dict) else None
    found = count(tools.get("web_search_requests")) if isinstance(tools, dict) else None
    return found or 0


def reported_usage(answer: Any) -> TokenUsage | None:
    """A whole message's own usage report with its web searches (None when absent or
    invalid), for `billing.believable` to judge."""
    usage = answer.get("usage") if isinstance(answer, dict) else None
    reported = parse_usage(usage)
    searches = web_search_requests(usage)
    return replace(reported, web_search=searches) if reported and searches else reported


def message_texts(answer: Any) -> tuple[list[str], list[str]]:
    """A message's delivered text: (every output piece, the thinking pieces)."""
    output: list[str] = []
    thinking: list[str] = []
    content = answer.get("content") if isinstance(answer, dict) else None
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            output.append(block["text"])
        if isinstance(block.get("thinking"), str):
            output.append(block["thinking"])
            thinking.append(block["thinking"])
        if block.get("type") == "tool_use":
            output.append(str(block.get("name", "")) + orjson.dumps(block.get("input")).decode())
    return output, thinking


def message_usage(answer: Any, *, prompt_tokens: int) -> TokenUsage:
    """A non-stream answer's usage: upstream's when valid, else counted here."""
    output, thinking = message_texts(answer)
    reported = reported_usage(answer)
    if reported is None or (reported.output == 0 and any(output)):
        return local_usage(prompt_tokens, output, thinking)
    if reported.prompt_tokens == 0:
        return replace(reported, input=prompt_tokens, source=UsageSource.LOCAL)
    return reported


class MessagesStream:
    """Follows one streamed Messages answer. Every event is relayed unchanged (`relay`
    returns `event.raw`); it learns usage and the delivered text on the way."""

    def __init__(self, *, prompt_tokens: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.started = False  # message_start seen
        self.delta_seen = False  # message_delta seen: the final usage is known
        self.done = False  # message_stop seen
        self.upstream_error: dict[str, Any] | None = None
        self._usage: dict[str, Any] = {}
        # What was delivered, kept within a bound for counting (`counting.TextTally`).
        self._output = TextTally()
        self._thinking = TextTally()
        self.web_searches = 0  # the server's web_search tool calls seen (content blocks)
        self._searches_reported = 0

    @property
    def delivered(self) -> bool:
        return self._output.any

    def relay(self, event: SSEEvent) -> bytes:
        if event.has_data and event.event != "ping":
            try:
                data = event.json()
            except ValueError:
                return event.raw
            if isinstance(data, dict):
                self._learn(event.event or data.get("type"), data)
        return event.raw

    def _learn(self, kind: Any, data: dict[str, Any]) -> None:
        if kind == "content_block_delta":
            delta = data.get("delta")
            key = _DELTA_TEXT.get(str(delta.get("type"))) if isinstance(delta, dict) else None
            if key is not None and isinstance(delta, dict) and isinstance(delta.get(key), str):
                self._output.add(delta[key])
                if key == "thinking":
                    self._thinking.add(delta[key])
        elif kind == "content_block_start":
            block = data.get("content_block")
            if isinstance(block, dict) and isinstance(block.get("name"), str):
                self._output.add(block["name"])
                if block.get("type") == "server_tool_use" and block["name"] == "web_search":
                    self.web_searches += 1
        elif kind == "message_start":
            message = data.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
            self.started = True
            self._usage = _flatten(usage) if isinstance(usage, dict) else {}
            self._searches_reported = web_search_requests(usage)
        elif kind == "message_delta":
            self.delta_seen = True
            self._overwrite(data.get("usage"))
            self._searches_reported = web_search_requests(data.get("usage")) or (
                self._searches_reported
            )
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            error = data.get("error")
            self.upstream_error = error if isinstance(error, dict) else {}

    def _overwrite(self, usage: Any) -> None:
        """Cumulative counts: a later non-zero value replaces the earlier one."""
        if not isinstance(usage, dict):
            return
        for name, value in _flatten(usage).items():
            if value != 0:
                self._usage[name] = value

    def usage(self) -> TokenUsage:
        """What to settle (see the module's docstring)."""
        # Any non-empty text is at least one token: whether anything was delivered needs no
        # tokenizer; how much only when the stream was cut before its final usage.
        delivered = self.delivered
        reported = self.reported_usage()
        if reported is None or (self.delta_seen and reported.output == 0 and delivered):
            return self.local_usage()
        if reported.prompt_tokens == 0:  # a cut stream whose message_start said 0
            reported = replace(reported, input=self.prompt_tokens, source=UsageSource.LOCAL)
        if not self.delta_seen and delivered:
            output = self._output.tokens()
            if output > reported.output:
                thinking = self._thinking.tokens()
                reported = replace(
                    reported, output=output, reasoning=thinking, source=UsageSource.LOCAL
                )
        return reported

    def reported_usage(self) -> TokenUsage | None:
        """The stream's own usage report (`message_start`, overwritten by `message_delta`)
        with its web searches, for `billing.believable` to judge."""
        reported = _from_flat(self._usage) if self.started else None
        if reported is not None and self._searches_reported:
            reported = replace(reported, web_search=self._searches_reported)
        return reported

    def local_usage(self) -> TokenUsage:
        """The usage counted here over what was delivered, at a bounded cost."""
        usage = local_usage(self.prompt_tokens, self._output, self._thinking)
        return replace(usage, web_search=self.web_searches)

    async def local_usage_exact(self) -> TokenUsage:
        """`local_usage` counted exactly in a worker thread."""
        usage = await counting.local_usage_exact(self.prompt_tokens, self._output, self._thinking)
        return replace(usage, web_search=self.web_searches)

    def finish(self) -> bytes:
        """What the client still needs once upstream's body has ended: nothing after
        `message_stop` or upstream's own error event, else an error event of ours."""
        if self.done or self.upstream_error is not None:
            return b""
        return self.fail("The upstream stream ended before the message was complete.")

    def fail(self, message: str, *, status: int = 502) -> bytes:
        self.done = True
        return anthropic_stream_error(message, status=status)
