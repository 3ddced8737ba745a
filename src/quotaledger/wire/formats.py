"""The relayed endpoints, each as one `Format`: how its request is checked and estimated,
which channels serve it, how its answer's usage is read and how its stream is followed.

The server's relay (`server/relay.py`) runs every endpoint through the same steps and asks
the endpoint's `Format` for what differs; adding an endpoint is adding a row here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from quotaledger.token_usage import TokenUsage, UsageSource
from quotaledger.wire import (
    anthropic_messages,
    cache_prefixes,
    counting,
    gemini,
    gemini_embeddings,
    openai_chat,
    openai_responses,
)
from quotaledger.wire.cache_prefixes import Breakpoint
from quotaledger.wire.errors import InvalidRequest, WireFormat
from quotaledger.wire.sse import SSEEvent


class Prepared(Protocol):
    """A checked request, ready to go upstream."""

    @property
    def body(self) -> dict[str, Any]: ...
    @property
    def stream(self) -> bool: ...
    @property
    def reserved_output_tokens(self) -> int: ...


class Tracker(Protocol):
    """Follows one streamed answer (see `quotaledger.relay`'s docstring)."""

    @property
    def delivered(self) -> bool: ...
    def relay(self, event: SSEEvent) -> bytes: ...
    def finish(self) -> bytes: ...
    def fail(self, message: str) -> bytes: ...
    def usage(self) -> TokenUsage: ...


@dataclass(frozen=True)
class Capped:
    """A lowered output cap, for the upstream `model`: the budget to send with it, or
    thinking turned off."""

    cap: int
    model: str
    thinking_budget: int | None = None
    thinking_off: bool = False


def _n(body: dict[str, Any]) -> int:
    """OpenAI's `n`: the answers asked for (1 when unset or invalid)."""
    n = body.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1


def _named(body: dict[str, Any], model: str) -> dict[str, Any]:
    return {**body, "model": model}


@dataclass(frozen=True)
class Format:
    # The operation (`relay.providers`), for logs and metrics too: chat, embeddings,
    # responses, messages, gemini. A channel whose provider serves it natively gets the
    # body as received; any other gets it converted (`wire.conversions`), keyed by this name.
    name: str
    wire: WireFormat  # the envelope of our own errors
    convertible: bool  # whether a channel of another format can serve it (not embeddings)
    prompt_tokens: Callable[[dict[str, Any]], int]  # estimated locally, no margin
    margin_percent: int  # added to the estimate for the reservation
    prepare: Callable[[Any, int | None], Prepared]  # (client body, a cap to send, or None)
    answer_usage: Callable[[Any, int], TokenUsage]  # (answer, prompt estimate)
    tracker: Callable[[Prepared, int], Tracker] | None  # (prepared, prompt estimate)
    # The client's own output cap per choice (None: it set none), its thinking budget, and
    # its body with a lowered cap (and budget) as `billing.sizing` decided (SPEC §8b).
    client_cap: Callable[[dict[str, Any]], int | None] = lambda _body: None
    thinking_budget: Callable[[dict[str, Any]], int | None] = lambda _body: None
    capped: Callable[[dict[str, Any], Capped], dict[str, Any]] = lambda body, _cap: body
    # The prompt-cache breakpoints the client marked (`wire.cache_prefixes`): none for the
    # formats whose upstreams cache without marks.
    cache_breakpoints: Callable[[dict[str, Any]], list[Breakpoint]] = lambda _body: []
    # The answers one request asks for (`n`, Gemini's `candidateCount`): each may take the cap.
    choices: Callable[[dict[str, Any]], int] = _n
    # The prepared body as it goes to a channel of this format, for its upstream model.
    addressed: Callable[[dict[str, Any], str], dict[str, Any]] = _named

    def reserved_prompt_tokens(self, prompt_tokens: int) -> int:
        return counting.with_margin(prompt_tokens, self.margin_percent)


@dataclass(frozen=True, slots=True)
class PreparedBodys:
    body: dict[str, Any]
    stream: bool = False
    reserved_output_tokens: int = 0


def _prepare_embeddings(body: Any, _default_cap: int | None) -> PreparedBodys:
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise InvalidRequest("model is required (a string)", "model")
    if not isinstance(body.get("input"), str | list) or not body["input"]:
        raise InvalidRequest("input must be a string or a non-empty array", "input")
    return PreparedBodys(dict(body))


def _chat_tracker(prepared: Prepared, prompt_tokens: int) -> Tracker:
    assert isinstance(prepared, openai_chat.PreparedChat)
    return openai_chat.ChatStream(
        client_wants_usage=prepared.client_wants_usage, prompt_tokens=prompt_tokens
    )


CHAT = Format(
    name="chat",
    wire=WireFormat.OPENAI,
    convertible=True,
    prompt_tokens=counting.chat_prompt_tokens,
    margin_percent=counting.OPENAI_MARGIN_PERCENT,
    prepare=lambda body, cap: openai_chat.prepare_chat(body, default_max_tokens=cap),
    answer_usage=lambda answer, prompt: openai_chat.completion_usage(answer, prompt_tokens=prompt),
    tracker=_chat_tracker,
    client_cap=openai_chat.client_cap,
    capped=lambda body, c: openai_chat.with_output_cap(body, c.cap, c.model),
)

EMBEDDINGS = Format(
    name="embeddings",
    wire=WireFormat.OPENAI,
    convertible=False,
    prompt_tokens=counting.embeddings_input_tokens,
    margin_percent=counting.OPENAI_MARGIN_PERCENT,
    prepare=_prepare_embeddings,
    answer_usage=lambda answer, prompt: openai_chat.embeddings_usage(answer, input_tokens=prompt),
    tracker=None,
)

RESPONSES = Format(
    name="responses",
    wire=WireFormat.OPENAI,
    convertible=True,
    prompt_tokens=counting.responses_prompt_tokens,
    margin_percent=counting.OPENAI_MARGIN_PERCENT,
    prepare=lambda body, cap: openai_responses.prepare_responses(body, default_max_tokens=cap),
    answer_usage=lambda answer, prompt: openai_responses.response_usage(
        answer, prompt_tokens=prompt
    ),
    tracker=lambda _prepared, prompt: openai_responses.ResponsesStream(prompt_tokens=prompt),
    client_cap=lambda body: body.get("max_output_tokens"),
    capped=lambda body, c: openai_responses.with_output_cap(body, c.cap),
)

MESSAGES = Format(
    name="messages",
    wire=WireFormat.ANTHROPIC,
    convertible=True,
    prompt_tokens=counting.messages_prompt_tokens,
    margin_percent=counting.ANTHROPIC_MARGIN_PERCENT,
    # max_tokens is required by this API: the client's cap is the cap.
    prepare=lambda body, _cap: anthropic_messages.prepare_messages(body),
    answer_usage=lambda answer, prompt: anthropic_messages.message_usage(
        answer, prompt_tokens=prompt
    ),
    tracker=lambda _prepared, prompt: anthropic_messages.MessagesStream(prompt_tokens=prompt),
    client_cap=lambda body: body.get("max_tokens"),
    thinking_budget=anthropic_messages.thinking_budget,
    capped=lambda body, c: anthropic_messages.with_output_cap(
        body, c.cap, thinking_budget=c.thinking_budget, thinking_off=c.thinking_off
    ),
    cache_breakpoints=cache_prefixes.messages_breakpoints,
)


def _gemini_tracker(prepared: Prepared, prompt_tokens: int, *, sse: bool = True) -> Tracker:
    assert isinstance(prepared, gemini.PreparedGemini)
    return gemini.GeminiStream(prompt_tokens=prompt_tokens, sse=sse, candidates=prepared.candidates)


# generateContent and streamGenerateContent (`?alt=sse`); `GEMINI_JSON_ARRAY` is the same
# for a stream asked without `alt=sse`, answered as one JSON array.
GEMINI = Format(
    name="gemini",
    wire=WireFormat.GEMINI,
    convertible=True,
    prompt_tokens=counting.gemini_prompt_tokens,
    margin_percent=counting.GEMINI_MARGIN_PERCENT,
    prepare=lambda body, _cap: gemini.prepare_gemini(body),
    answer_usage=lambda answer, prompt: gemini.generate_usage(answer, prompt_tokens=prompt),
    tracker=_gemini_tracker,
    client_cap=gemini.client_cap,
    thinking_budget=gemini.thinking_budget,
    capped=lambda body, c: gemini.with_output_cap(
        body, c.cap, thinking_budget=c.thinking_budget, thinking_off=c.thinking_off
    ),
    choices=gemini.candidate_count,
)
GEMINI_JSON_ARRAY = replace(
    GEMINI, tracker=lambda prepared, prompt: _gemini_tracker(prepared, prompt, sse=False)
)

# countTokens: never billed (no reservation, no log row); the row says how its request is
# checked and counted, and the channels it may go to.
GEMINI_COUNT = Format(
    name="gemini_count",
    wire=WireFormat.GEMINI,
    convertible=True,  # on any channel: counted here where no gemini channel serves it
    prompt_tokens=lambda body: counting.gemini_prompt_tokens(gemini.count_request(body)),
    margin_percent=0,
    prepare=lambda body, _cap: gemini.PreparedBody(gemini.count_request(body)),
    answer_usage=lambda _answer, prompt: TokenUsage(input=prompt, source=UsageSource.LOCAL),
    tracker=None,
)

# embedContent and batchEmbedContents, on gemini channels only.
GEMINI_EMBED = Format(
    name="gemini_embed",
    wire=WireFormat.GEMINI,
    convertible=False,
    prompt_tokens=gemini_embeddings.embed_tokens,
    margin_percent=counting.GEMINI_MARGIN_PERCENT,
    prepare=lambda body, _cap: gemini_embeddings.prepare_embed(body),
    answer_usage=lambda answer, prompt: gemini_embeddings.embed_usage(answer, input_tokens=prompt),
    tracker=None,
)
GEMINI_BATCH_EMBED = Format(
    name="gemini_embeds",
    wire=WireFormat.GEMINI,
    convertible=False,
    prompt_tokens=gemini_embeddings.batch_embed_tokens,
    margin_percent=counting.GEMINI_MARGIN_PERCENT,
    prepare=lambda body, _cap: gemini_embeddings.prepare_batch_embed(body),
    answer_usage=lambda answer, prompt: gemini_embeddings.embed_usage(answer, input_tokens=prompt),
    tracker=None,
    addressed=gemini_embeddings.batch_for_model,
)
