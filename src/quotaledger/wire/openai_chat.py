"""OpenAI chat completions and embeddings on the wire: the body sent upstream, the usage of
an answer, and a stream tracker that decides what each upstream event becomes for the client.

Streams: the relay always asks upstream for usage (`stream_options.include_usage`). The final
usage chunk (`choices: []`) is dropped when the client did not ask for it; when the client
asked and upstream sent none (or an unbelievable one), the tracker writes one of its own, in
OpenAI's shape, before `data: [DONE]`. A usage that rides on a chunk with choices (some
OpenAI-compatible servers do that) is passed through untouched: the chunk carries content.

Usage is believed when its counts are non-negative integers, cached ≤ prompt, reasoning ≤
completion, and it does not claim 0 output for an answer that delivered text; otherwise the
relay counts locally over what it delivered (content, reasoning, tool-call arguments; never
error text) and the prompt it estimated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from quotaledger.token_usage import TokenUsage
from quotaledger.wire import counting
from quotaledger.wire.counting import TextTally, local_usage
from quotaledger.wire.counts import count, optional_count
from quotaledger.wire.errors import DONE, InvalidRequest, openai_stream_error
from quotaledger.wire.sse import SSEEvent

CapField = Literal["max_tokens", "max_completion_tokens"]
_REASONING_FIELDS = ("reasoning_content", "reasoning")  # DeepSeek / vLLM, OpenRouter


@dataclass(frozen=True, slots=True)
class PreparedChat:
    body: dict[str, Any]  # what goes upstream (a copy: the client's dict is left as it was)
    stream: bool
    client_wants_usage: bool  # the client itself set stream_options.include_usage
    output_cap: int  # output tokens per choice: the client's cap, else the relay's default
    choices: int  # n
    cap_set_by_relay: bool

    @property
    def reserved_output_tokens(self) -> int:
        return self.output_cap * self.choices

    def encode(self) -> bytes:
        return orjson.dumps(self.body)


def _positive_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if count(value) is None or value == 0:
        raise InvalidRequest(f"{name} must be a positive integer", name)
    return int(value)


def _check_chat(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise InvalidRequest("model is required (a string)", "model")
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise InvalidRequest("messages must be a non-empty array", "messages")
    if body.get("stream") not in (None, True, False):
        raise InvalidRequest("stream must be a boolean", "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest("stream_options must be an object", "stream_options")
    return body


def prepare_chat(
    body: Any,
    *,
    default_max_tokens: int,
    upstream_model: str | None = None,
    cap_field: CapField = "max_tokens",
) -> PreparedChat:
    """Check a chat request and build the upstream body.

    The output cap is the client's `max_completion_tokens` or `max_tokens`; when it set
    neither, `default_max_tokens` (already lowered to what the balance covers) is sent as
    `cap_field` (`max_tokens` is what OpenAI-compatible servers read; OpenAI's o-series
    models accept only `max_completion_tokens`). Streams get `include_usage` forced on.
    Raises `InvalidRequest` for a body that cannot be forwarded."""
    checked = _check_chat(body)
    upstream = dict(checked)
    if upstream_model:
        upstream["model"] = upstream_model
    choices = _positive_int(checked, "n") or 1
    client_cap = _positive_int(checked, "max_completion_tokens") or _positive_int(
        checked, "max_tokens"
    )
    if client_cap is None:
        upstream[cap_field] = default_max_tokens
    stream = checked.get("stream") is True
    wants_usage = False
    if stream:
        options = checked.get("stream_options") or {}
        wants_usage = options.get("include_usage") is True
        upstream["stream_options"] = {**options, "include_usage": True}
    return PreparedChat(
        upstream, stream, wants_usage, client_cap or default_max_tokens, choices, client_cap is None
    )


# OpenAI's reasoning models take only `max_completion_tokens` on chat completions (they
# refuse `max_tokens`); every OpenAI-compatible server reads `max_tokens`.
_COMPLETION_CAP_MODELS = ("o1", "o3", "o4", "gpt-5")


def cap_field(model: str) -> CapField:
    """The chat field `model` takes its output cap in (SPEC §8b)."""
    name = model.rsplit("/", 1)[-1].lower()
    for prefix in _COMPLETION_CAP_MODELS:
        if name == prefix or name.startswith((prefix + "-", prefix + ".")):
            return "max_completion_tokens"
    return "max_tokens"


def client_cap(body: dict[str, Any]) -> int | None:
    """The client's own output cap per choice (`max_completion_tokens`, else `max_tokens`),
    or None; `InvalidRequest` for one that is not a positive integer."""
    return _positive_int(body, "max_completion_tokens") or _positive_int(body, "max_tokens")


def with_output_cap(body: dict[str, Any], cap: int, model: str) -> dict[str, Any]:
    """`body` (a copy) with its output cap lowered to `cap`: in the field the client used,
    else the one `model` takes; never both (OpenAI refuses a request with both)."""
    capped = {k: v for k, v in body.items() if k not in ("max_tokens", "max_completion_tokens")}
    used = [name for name in ("max_completion_tokens", "max_tokens") if body.get(name) is not None]
    capped[used[0] if used else cap_field(model)] = cap
    return capped


def parse_usage(usage: Any) -> TokenUsage | None:
    """OpenAI's chat `usage` object, or None when absent or not believable."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = count(usage.get("prompt_tokens")), count(usage.get("completion_tokens"))
    prompt_details = usage.get("prompt_tokens_details")
    prompt_details = prompt_details if isinstance(prompt_details, dict) else {}
    cached = optional_count(
        prompt_details.get("cached_tokens", usage.get("prompt_cache_hit_tokens"))
    )
    written = optional_count(prompt_details.get("cache_write_tokens"))  # OpenRouter's
    completion_details = usage.get("completion_tokens_details")
    completion_details = completion_details if isinstance(completion_details, dict) else {}
    reasoning = optional_count(completion_details.get("reasoning_tokens"))
    if (
        prompt is None
        or completion is None
        or cached is None
        or written is None
        or reasoning is None
    ):
        return None
    if cached + written > prompt or reasoning > completion:
        return None
    return TokenUsage(
        input=prompt - cached - written,
        cache_read=cached,
        cache_write_5m=written,
        output=completion,
        reasoning=reasoning,
    )


def openai_usage(usage: TokenUsage) -> dict[str, Any]:
    """`usage` as OpenAI's chat `usage` object (for a usage chunk the relay synthesizes)."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning},
    }


def completion_texts(answer: Any) -> tuple[list[str], list[str]]:
    """A chat completion's delivered text: (every output piece, the reasoning pieces)."""
    output: list[str] = []
    reasoning: list[str] = []
    choices = answer.get("choices") if isinstance(answer, dict) else None
    for choice in choices if isinstance(choices, list) else []:
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict):
            _message_texts(message, output, reasoning)
    return output, reasoning


def _message_texts(
    message: dict[str, Any], output: list[str] | TextTally, reasoning: list[str] | TextTally
) -> None:
    """Content, refusal, reasoning and tool-call arguments of a message or a delta."""
    add, add_reasoning = _adder(output), _adder(reasoning)
    for name in ("content", "refusal"):
        if isinstance(message.get(name), str):
            add(message[name])
    for name in _REASONING_FIELDS:
        if isinstance(message.get(name), str):
            add(message[name])
            add_reasoning(message[name])
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            for name in ("name", "arguments"):
                if isinstance(function.get(name), str):
                    add(function[name])


def _adder(texts: list[str] | TextTally) -> Callable[[str], None]:
    return texts.add if isinstance(texts, TextTally) else texts.append


def reported_usage(answer: Any) -> TokenUsage | None:
    """A whole chat answer's own usage report (None when absent or malformed), for
    `billing.believable` to judge."""
    return parse_usage(answer.get("usage")) if isinstance(answer, dict) else None


def completion_usage(answer: Any, *, prompt_tokens: int) -> TokenUsage:
    """A non-stream chat answer's usage: upstream's when believable, else counted here."""
    output, reasoning = completion_texts(answer)
    reported = reported_usage(answer)
    if reported is not None and _believable(reported, output):
        return reported
    return local_usage(prompt_tokens, output, reasoning)


def _believable(usage: TokenUsage, delivered: list[str]) -> bool:
    return usage.output > 0 or not any(delivered)


def embeddings_usage(answer: Any, *, input_tokens: int) -> TokenUsage:
    """An embeddings answer's usage (`prompt_tokens`), else the input counted here."""
    usage = answer.get("usage") if isinstance(answer, dict) else None
    prompt = count(usage.get("prompt_tokens")) if isinstance(usage, dict) else None
    if prompt is not None:
        return TokenUsage(input=prompt)
    return local_usage(input_tokens, ())


class ChatStream:
    """Follows one streamed chat answer, event by event.

    `relay(event)` returns the bytes to send the client for that upstream event (usually
    `event.raw` unchanged; b"" for a usage chunk the client did not ask for; a usage chunk of
    ours before `[DONE]`). When upstream's body ends, `finish()` returns what the client still
    needs to see a well-ended stream; `fail(message)` ends it after a failure of ours (idle
    timeout). `usage()` is what to settle."""

    def __init__(self, *, client_wants_usage: bool, prompt_tokens: int) -> None:
        self.client_wants_usage = client_wants_usage
        self.prompt_tokens = prompt_tokens
        self.reported: TokenUsage | None = None
        self.upstream_error: dict[str, Any] | None = None
        self.done = False
        # What was delivered, kept within a bound for counting (`counting.TextTally`).
        self._output = TextTally()
        self._reasoning = TextTally()
        self._head: dict[str, Any] = {}

    @property
    def delivered(self) -> bool:
        """Whether any content, reasoning or tool call reached the client."""
        return self._output.any

    def relay(self, event: SSEEvent) -> bytes:
        # Runs for every event of every stream: type() checks and one dict lookup per field
        # where a content delta ({"content": "..."}) is the common case.
        data = event.data
        if data == "[DONE]":
            self.done = True
            return self._usage_chunk() + event.raw
        if not event.has_data:
            return event.raw  # a keep-alive comment
        try:
            chunk = orjson.loads(data)
        except ValueError:
            return event.raw  # not ours to judge: passed on as it came
        if type(chunk) is not dict:
            return event.raw
        if "error" in chunk:
            self.upstream_error = chunk["error"] if isinstance(chunk["error"], dict) else {}
            return event.raw
        return self._chunk(chunk, event.raw)

    def _chunk(self, chunk: dict[str, Any], raw: bytes) -> bytes:
        if not self._head:
            self._head = {
                k: chunk[k] for k in ("id", "created", "model", "system_fingerprint") if k in chunk
            }
        choices = chunk.get("choices")
        if type(choices) is list:
            for choice in choices:
                delta = choice.get("delta") if type(choice) is dict else None
                if type(delta) is not dict:
                    continue
                if len(delta) == 1 and type(content := delta.get("content")) is str:
                    self._output.add(content)  # nothing else in it to count
                else:
                    _message_texts(delta, self._output, self._reasoning)
        if chunk.get("usage") is None:
            return raw
        usage = parse_usage(chunk["usage"])
        if usage is not None:
            self.reported = usage
        if choices:
            return raw  # usage riding on a content chunk: the chunk is passed on whole
        # Dropped unless asked for and believed (then ours replaces it at [DONE]).
        return raw if self.client_wants_usage and self._believed() is not None else b""

    def _usage_chunk(self) -> bytes:
        """Our usage chunk, when the client asked for one and upstream gave none believable."""
        if not self.client_wants_usage or self._believed() is not None:
            return b""
        usage = openai_usage(self.usage())
        chunk = {**self._head, "object": "chat.completion.chunk", "choices": [], "usage": usage}
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def _believed(self) -> TokenUsage | None:
        reported = self.reported
        if reported is None or (reported.output == 0 and self.delivered):
            return None
        return reported

    def usage(self) -> TokenUsage:
        """Upstream's believable usage when the stream reported one, else counted here."""
        return self._believed() or self.local_usage()

    def reported_usage(self) -> TokenUsage | None:
        """The stream's own usage report, for `billing.believable` to judge."""
        return self.reported

    def local_usage(self) -> TokenUsage:
        """The usage counted here over what was delivered, at a bounded cost."""
        return local_usage(self.prompt_tokens, self._output, self._reasoning)

    async def local_usage_exact(self) -> TokenUsage:
        """`local_usage` counted exactly in a worker thread."""
        return await counting.local_usage_exact(self.prompt_tokens, self._output, self._reasoning)

    def finish(self) -> bytes:
        """What the client still needs once upstream's body has ended (cleanly or not)."""
        if self.done:
            return b""
        if self.upstream_error is not None:
            return DONE  # upstream's own error event was relayed
        return self.fail("The upstream stream ended before the answer was complete.")

    def fail(self, message: str, *, status: int = 502) -> bytes:
        """Our error event, then `[DONE]`: the end of a stream that failed mid-way."""
        self.done = True
        return openai_stream_error(message, status=status)
