"""The one conversation shape every wire format converts to and from (SPEC §11).

A request that reaches a channel of another format is decoded from the client's format
into a `Conversation`, encoded into the channel's; the channel's answer is decoded into an
`Answer` (or, streamed, into `StreamEvent`s) and encoded back into the client's format. So
every client format works on every channel format with one codec per format
(`wire/codecs/`), not one translator per pair; a pair that needs a special case has its own
module in `wire/conversions/`.

The shape is the union of what the four formats can say, kept where a format has a place
for it: Anthropic's thinking signatures, cache-control marks, tool-call ids, reasoning text.
What a source field cannot become here is named in `dropped` (the log row says it); a field
whose loss would change the meaning is refused with `InvalidRequest` by the codec instead.
Native requests never come here: they are passed on as received.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from quotaledger.token_usage import TokenUsage

Role = Literal["user", "assistant"]


# ---------------------------------------------------------------- message parts


@dataclass(frozen=True, slots=True)
class Text:
    text: str
    # Anthropic's `cache_control` ({"type": "ephemeral", "ttl": "1h"}), kept so that caching
    # does not silently stop when a Messages client reaches an Anthropic channel converted.
    cache_control: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Image:
    """An image: inline base64 `data` with its `media_type`, or a `url` (which a target
    that takes only inline data refuses by name: it cannot be fetched on the user's behalf)."""

    media_type: str | None = None
    data: str | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Reasoning:
    """Reasoning (thinking) text. `signature` is Anthropic's (or Gemini's `thoughtSignature`):
    it must come back unchanged in the next turn's history. `redacted` holds Anthropic's
    `redacted_thinking` data, which has no text."""

    text: str = ""
    signature: str | None = None
    redacted: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI carries it (Anthropic input, Gemini args: dumped)


@dataclass(frozen=True, slots=True)
class ToolResult:
    call_id: str
    content: tuple[Text | Image, ...]
    is_error: bool = False
    name: str | None = None  # the tool's name: Gemini's functionResponse needs it


Part = Text | Image | Reasoning | ToolCall | ToolResult


@dataclass(frozen=True, slots=True)
class Message:
    """One turn. Tool results travel as parts of a user turn (Anthropic's way); a codec whose
    format gives them a role of their own (`tool` in Chat Completions) splits them out."""

    role: Role
    parts: tuple[Part, ...]


# ---------------------------------------------------------------- the request


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object"})


@dataclass(frozen=True, slots=True)
class ToolChoice:
    mode: Literal["auto", "none", "required", "named"]
    name: str | None = None  # with mode "named"


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    kind: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None


Effort = Literal["minimal", "low", "medium", "high"]


@dataclass(frozen=True, slots=True)
class ReasoningConfig:
    """What the client asked of reasoning: an `effort` (OpenAI), a `budget_tokens` (Anthropic's
    thinking, Gemini's thinkingBudget), or both; `enabled` False when the client turned it off.
    A codec maps whichever it has to what its format takes (`wire/codecs/reasoning.py`)."""

    enabled: bool = True
    effort: Effort | None = None
    budget_tokens: int | None = None
    include_thoughts: bool = True


@dataclass(slots=True)
class Conversation:
    model: str
    messages: list[Message]
    system: list[Text] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    response_format: ResponseFormat | None = None
    reasoning: ReasoningConfig | None = None
    stream: bool = False
    # A streamed Chat Completions client asked for the final usage chunk
    # (`stream_options.include_usage`).
    stream_usage: bool = False
    # Source fields this shape could not carry, by the client format's own name ("logprobs",
    # "metadata.user_id"...): dropped, and named on the log row.
    dropped: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- the answer


class StopReason(StrEnum):
    END = "end"  # the model finished (OpenAI "stop", Anthropic "end_turn", Gemini "STOP")
    MAX_TOKENS = "max_tokens"  # the output cap was reached ("length", "MAX_TOKENS")
    STOP_SEQUENCE = "stop_sequence"
    TOOL_USE = "tool_use"  # the model called tools ("tool_calls")
    CONTENT_FILTER = "content_filter"  # refused or filtered ("SAFETY", "refusal")
    ERROR = "error"


@dataclass(slots=True)
class Answer:
    """A whole (non-streamed) answer."""

    id: str
    model: str
    parts: list[Text | Reasoning | ToolCall]
    stop: StopReason = StopReason.END
    stop_sequence: str | None = None
    usage: TokenUsage | None = None  # None: the upstream reported none believable


# ---------------------------------------------------------------- stream events
# A decoder turns a channel's stream into these, in order; an encoder writes them in the
# client's grammar. Indexes number the answer's parts (text, reasoning and tool-call blocks
# alike) in the order they start, as Anthropic's content blocks are numbered.


@dataclass(frozen=True, slots=True)
class Started:
    id: str
    model: str
    usage: TokenUsage | None = None  # what the stream says at its start (Anthropic's input)


@dataclass(frozen=True, slots=True)
class TextDelta:
    index: int
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    index: int
    text: str = ""
    signature: str | None = None  # Anthropic's signature_delta, at the block's end
    redacted: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    index: int
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    index: int
    arguments: str  # a fragment of the arguments' JSON text


@dataclass(frozen=True, slots=True)
class PartDone:
    index: int


@dataclass(frozen=True, slots=True)
class Finished:
    """The answer is complete: its stop reason and (when the upstream said) its usage."""

    stop: StopReason
    usage: TokenUsage | None = None
    stop_sequence: str | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """The upstream reported an error mid-stream."""

    message: str
    status: int = 502


StreamEvent = (
    Started
    | TextDelta
    | ReasoningDelta
    | ToolCallStarted
    | ToolCallDelta
    | PartDone
    | Finished
    | Failed
)
