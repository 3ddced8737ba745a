"""Google's Gemini API on the wire (SPEC §11.1): generateContent, streamGenerateContent and
countTokens (embeddings: `gemini_embeddings`; the model list: `gemini_models`).

The model and streaming are in the URL (`models/{model}:streamGenerateContent`): the
adapter reads them and the pipeline puts them in the body as `model` and `stream` for its
steps; `prepare_gemini` takes them out again, since the upstream reads them from its URL.
Field names are Google's JSON ones (lowerCamelCase); the proto names (snake_case), which
Google's servers accept too, are read as well and a lowered cap is written in the one the
client used (a request holding both spellings of a field is refused upstream).

Usage comes from `usageMetadata`: `promptTokenCount` includes `cachedContentTokenCount`
(cache reads); `toolUsePromptTokenCount` (what a server-side tool read) is input too;
`candidatesTokenCount` plus `thoughtsTokenCount` are output, the thoughts being reasoning.
A streamed answer carries `usageMetadata` on many chunks: the last one's counts are the
answer's. A stream cut before its final chunk settles on the input reported (or the
estimate) and the larger of the output reported and the tokens of what was delivered.

Streams: the upstream is always asked for server-sent events (`?alt=sse`). A client that
asked without `alt=sse` gets what Google sends then, one JSON array of the same chunks
(`[`, the chunks separated by `,`, `]`), closed once every candidate has finished.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from quotaledger.token_usage import TokenUsage, UsageSource
from quotaledger.wire import counting
from quotaledger.wire.counting import TextTally, local_usage
from quotaledger.wire.counts import count, optional_count
from quotaledger.wire.errors import InvalidRequest, gemini_error
from quotaledger.wire.sse import SSEEvent

# The smallest thinking budget every Gemini 2.5 model takes (2.5 Pro cannot think less, nor
# turn thinking off): what a budget goes down to when the cap leaves no room for more.
MIN_THINKING_BUDGET = 128
# The pipeline's keys for what Gemini has in the URL (`relay.pipeline`).
IN_URL = ("model", "stream")
_SSE_END = b"\r\n\r\n"  # how Google ends its events


# ---------------------------------------------------------------- requests


def _pick(fields: Any, camel: str, snake: str) -> tuple[str, Any]:
    """(the key used, its value) of a field given in either spelling; camel when absent."""
    if isinstance(fields, dict):
        for key in (camel, snake):
            if key in fields:
                return key, fields[key]
    return camel, None


def _generation_config(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    key, config = _pick(body, "generationConfig", "generation_config")
    if config is None:
        return key, {}
    if not isinstance(config, dict):
        raise InvalidRequest("generationConfig must be an object", "generationConfig")
    return key, config


def _positive(config: dict[str, Any], camel: str, snake: str) -> int | None:
    value = _pick(config, camel, snake)[1]
    if value is None:
        return None
    if count(value) is None or value == 0:
        raise InvalidRequest(f"{camel} must be a positive integer", f"generationConfig.{camel}")
    return int(value)


def client_cap(body: dict[str, Any]) -> int | None:
    """The client's `generationConfig.maxOutputTokens` (per candidate), or None."""
    return _positive(_generation_config(body)[1], "maxOutputTokens", "max_output_tokens")


def candidate_count(body: dict[str, Any]) -> int:
    """`generationConfig.candidateCount`: the answers asked for (1 when unset)."""
    return _positive(_generation_config(body)[1], "candidateCount", "candidate_count") or 1


def thinking_budget(body: dict[str, Any]) -> int | None:
    """`generationConfig.thinkingConfig.thinkingBudget` (0: off, -1: dynamic), or None."""
    thinking = _pick(_generation_config(body)[1], "thinkingConfig", "thinking_config")[1]
    budget = _pick(thinking, "thinkingBudget", "thinking_budget")[1]
    return budget if isinstance(budget, int) and not isinstance(budget, bool) else None


@dataclass(frozen=True, slots=True)
class PreparedGemini:
    body: dict[str, Any]  # what goes upstream (a copy, without the URL's model and stream)
    stream: bool
    output_cap: int | None  # the client's maxOutputTokens, per candidate
    candidates: int  # candidateCount

    @property
    def reserved_output_tokens(self) -> int:
        return (self.output_cap or 0) * self.candidates


def prepare_gemini(body: Any) -> PreparedGemini:
    """Check a generateContent request and build the upstream body; `InvalidRequest`
    naming the field for one that cannot be forwarded."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise InvalidRequest("contents is required (a non-empty array)", "contents")
    if not all(isinstance(c, dict) for c in contents):
        raise InvalidRequest("contents must be an array of Content objects", "contents")
    upstream = {k: v for k, v in body.items() if k not in IN_URL}
    return PreparedGemini(
        upstream, body.get("stream") is True, client_cap(body), candidate_count(body)
    )


def with_output_cap(
    body: dict[str, Any],
    cap: int,
    *,
    thinking_budget: int | None = None,
    thinking_off: bool = False,
) -> dict[str, Any]:
    """`body` (a copy) with `maxOutputTokens` lowered to `cap` and the thinking budget
    lowered as `billing.sizing` decided. Gemini's thoughts count against the cap; "off"
    becomes the smallest budget every model takes, under half the cap (2.5 Pro refuses 0)."""
    config_key, config = _generation_config(body)
    cap_key = _pick(config, "maxOutputTokens", "max_output_tokens")[0]
    capped = {**config, cap_key: cap}
    thinking_key, thinking = _pick(config, "thinkingConfig", "thinking_config")
    budget_key, budget = _pick(thinking, "thinkingBudget", "thinking_budget")
    if thinking_off and isinstance(budget, int) and budget > 0:
        thinking_budget = min(budget, max(MIN_THINKING_BUDGET, cap // 2))
    if thinking_budget is not None and isinstance(thinking, dict):
        capped[thinking_key] = {**thinking, budget_key: thinking_budget}
    return {**body, config_key: capped}


# ---------------------------------------------------------------- usage


def parse_usage(metadata: Any) -> TokenUsage | None:
    """A `usageMetadata` object, or None when absent or not believable."""
    if not isinstance(metadata, dict):
        return None
    prompt = count(metadata.get("promptTokenCount"))
    cached = optional_count(metadata.get("cachedContentTokenCount"))
    tool_use = optional_count(metadata.get("toolUsePromptTokenCount"))
    candidates = optional_count(metadata.get("candidatesTokenCount"))
    thoughts = optional_count(metadata.get("thoughtsTokenCount"))
    if prompt is None or cached is None or tool_use is None:
        return None
    if candidates is None or thoughts is None or cached > prompt:
        return None
    return TokenUsage(
        input=prompt - cached + tool_use,
        cache_read=cached,
        output=candidates + thoughts,
        reasoning=thoughts,
    )


def reported_usage(answer: Any) -> TokenUsage | None:
    """A whole answer's own report, for `billing.believable` to judge."""
    return parse_usage(answer.get("usageMetadata")) if isinstance(answer, dict) else None


Adder = Callable[[str], None]


def _part_texts(part: Any, add: Adder, add_thought: Adder) -> None:
    """What a model's part delivered: text (thoughts apart too), a function call's name and
    arguments, code it wrote and the code's output."""
    if not isinstance(part, dict):
        return
    text = part.get("text")
    if isinstance(text, str):
        add(text)
        if part.get("thought") is True:
            add_thought(text)
    call = part.get("functionCall")
    if isinstance(call, dict):
        add(str(call.get("name", "")) + orjson.dumps(call.get("args")).decode())
    for key, inner in (("executableCode", "code"), ("codeExecutionResult", "output")):
        found = part.get(key)
        if isinstance(found, dict) and isinstance(found.get(inner), str):
            add(found[inner])


def _candidates(answer: Any) -> list[Any]:
    found = answer.get("candidates") if isinstance(answer, dict) else None
    return found if isinstance(found, list) else []


def _parts(candidate: Any) -> list[Any]:
    content = candidate.get("content") if isinstance(candidate, dict) else None
    parts = content.get("parts") if isinstance(content, dict) else None
    return parts if isinstance(parts, list) else []


def answer_texts(answer: Any) -> tuple[list[str], list[str]]:
    """A whole answer's delivered text: (every output piece, the thought pieces)."""
    output: list[str] = []
    thoughts: list[str] = []
    for candidate in _candidates(answer):
        for part in _parts(candidate):
            _part_texts(part, output.append, thoughts.append)
    return output, thoughts


def generate_usage(answer: Any, *, prompt_tokens: int) -> TokenUsage:
    """A generateContent answer's usage: upstream's when believable, else counted here."""
    output, thoughts = answer_texts(answer)
    reported = reported_usage(answer)
    if reported is None or (reported.output == 0 and any(output)):
        return local_usage(prompt_tokens, output, thoughts)
    if reported.prompt_tokens == 0:
        return replace(reported, input=prompt_tokens, source=UsageSource.LOCAL)
    return reported


# ---------------------------------------------------------------- streams


class GeminiStream:
    """Follows one streamed generateContent answer, chunk by chunk. For an SSE client every
    event is passed on unchanged (`event.raw`); for a JSON-array client each chunk becomes
    an element of the array, which is closed once every candidate has a `finishReason`
    (or the prompt was blocked); chunks after that are read, not sent."""

    def __init__(self, *, prompt_tokens: int, sse: bool = True, candidates: int = 1) -> None:
        self.prompt_tokens = prompt_tokens
        self.sse = sse
        self.candidates = max(1, candidates)
        self.done = False  # every candidate finished: the answer is complete
        self.upstream_error: dict[str, Any] | None = None
        self._finished: set[int] = set()  # the candidates' indexes with a finishReason
        self._metadata: Any = None  # the last usageMetadata seen
        self._elements = 0  # JSON-array elements sent
        self._closed = False  # the JSON array's `]` sent
        # What was delivered, kept within a bound for counting (`counting.TextTally`).
        self._output = TextTally()
        self._thoughts = TextTally()

    @property
    def delivered(self) -> bool:
        return self._output.any

    def relay(self, event: SSEEvent) -> bytes:
        if not event.has_data:
            return event.raw if self.sse else b""  # a keep-alive: no JSON element
        try:
            chunk = orjson.loads(event.data)
        except ValueError:
            chunk = None
        if isinstance(chunk, dict):
            self._learn(chunk)
        if self.sse:
            return event.raw
        return self._element(
            event.data.encode(), close=self.done or self.upstream_error is not None
        )

    def _learn(self, chunk: dict[str, Any]) -> None:
        if "error" in chunk:
            error = chunk["error"]
            self.upstream_error = error if isinstance(error, dict) else {}
            return
        if chunk.get("usageMetadata") is not None:
            self._metadata = chunk["usageMetadata"]
        add, add_thought = self._output.add, self._thoughts.add
        for position, candidate in enumerate(_candidates(chunk)):
            for part in _parts(candidate):
                _part_texts(part, add, add_thought)
            if isinstance(candidate, dict) and candidate.get("finishReason"):
                index = candidate.get("index")
                self._finished.add(index if isinstance(index, int) else position)
        feedback = chunk.get("promptFeedback")
        blocked = isinstance(feedback, dict) and feedback.get("blockReason")
        if blocked or len(self._finished) >= self.candidates:
            self.done = True

    def _element(self, data: bytes, *, close: bool = False) -> bytes:
        """`data` as the JSON array's next element (and its end); nothing once closed."""
        if self._closed:
            return b""
        out = (b"[" if not self._elements else b",\r\n") + data
        self._elements += 1
        if close:
            self._closed = True
            out += b"]"
        return out

    def usage(self) -> TokenUsage:
        """What to settle (see the module's docstring)."""
        delivered = self.delivered
        reported = self.reported_usage()
        if reported is None or (self.done and reported.output == 0 and delivered):
            return self.local_usage()
        if reported.prompt_tokens == 0:
            reported = replace(reported, input=self.prompt_tokens, source=UsageSource.LOCAL)
        if not self.done and delivered:
            output = self._output.tokens()
            if output > reported.output:
                thoughts = self._thoughts.tokens()
                reported = replace(
                    reported, output=output, reasoning=thoughts, source=UsageSource.LOCAL
                )
        return reported

    def reported_usage(self) -> TokenUsage | None:
        """The last chunk's usage report, for `billing.believable` to judge."""
        return parse_usage(self._metadata)

    def local_usage(self) -> TokenUsage:
        """The usage counted here over what was delivered, at a bounded cost."""
        return local_usage(self.prompt_tokens, self._output, self._thoughts)

    async def local_usage_exact(self) -> TokenUsage:
        """`local_usage` counted exactly in a worker thread."""
        return await counting.local_usage_exact(self.prompt_tokens, self._output, self._thoughts)

    def finish(self) -> bytes:
        """What the client still needs once upstream's body has ended: nothing after the
        last candidate finished (or upstream's own error, whose array is then closed), else
        an error of ours."""
        if self.done or self.upstream_error is not None:
            if self.sse or self._closed:
                return b""
            self._closed = True
            return b"]" if self._elements else b"[]"
        return self.fail("The upstream stream ended before the answer was complete.")

    def fail(self, message: str, *, status: int = 502) -> bytes:
        """Google's error object as the stream's last event (the google-genai SDKs raise
        `APIError` on it), or the JSON array's last element."""
        error = orjson.dumps(gemini_error(status, message))
        if self.sse:
            return b"data: " + error + _SSE_END
        return self._element(error, close=True)


# ---------------------------------------------------------------- countTokens


@dataclass(frozen=True, slots=True)
class PreparedBody:
    """A checked request answered whole (a count, an embedding)."""

    body: dict[str, Any]
    stream: bool = False
    reserved_output_tokens: int = 0


def count_request(body: Any) -> dict[str, Any]:
    """The request countTokens counts: its `generateContentRequest`, else the body (its
    `contents`); `InvalidRequest` when there is nothing to count."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    inner = body.get("generateContentRequest", body.get("generate_content_request"))
    counted = inner if isinstance(inner, dict) else body
    if not isinstance(counted.get("contents"), list):
        raise InvalidRequest("contents is required (an array)", "contents")
    return counted


def count_tokens_answer(body: Any) -> bytes:
    """countTokens answered here (no gemini channel serves the model): `{"totalTokens": N}`."""
    return orjson.dumps({"totalTokens": counting.gemini_prompt_tokens(count_request(body))})


def count_for_model(body: dict[str, Any], model: str) -> dict[str, Any]:
    """A countTokens body for the channel's `model`: a `generateContentRequest` names it."""
    body = {k: v for k, v in body.items() if k not in IN_URL}
    for key in ("generateContentRequest", "generate_content_request"):
        if isinstance(body.get(key), dict):
            body[key] = {**body[key], "model": f"models/{model}"}
    return body
