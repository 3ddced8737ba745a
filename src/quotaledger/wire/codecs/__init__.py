"""One codec per wire format: to and from the conversation shape of `wire.ir`.

A codec has two sides. As the **client's** format it decodes the request a client sent and
encodes the answer (whole or streamed) back in that client's grammar; as a **channel's**
format it encodes the request sent upstream and decodes the upstream's answer and stream.
`wire.conversions` composes a client side with a channel side; adding a wire format is one
codec module and one line in `CODECS`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from quotaledger.wire.ir import Answer, Conversation, StreamEvent
from quotaledger.wire.sse import SSEEvent


class StreamDecoder(Protocol):
    """Follows a channel's stream: each upstream event becomes zero or more `StreamEvent`s."""

    def feed(self, event: SSEEvent) -> list[StreamEvent]: ...

    def end(self) -> list[StreamEvent]:
        """The upstream's body ended: whatever events its end implies (none, usually)."""
        ...


class StreamEncoder(Protocol):
    """Writes `StreamEvent`s in the client's grammar (SSE bytes; Gemini's JSON array too)."""

    def encode(self, event: StreamEvent) -> bytes: ...

    def fail(self, message: str, status: int = 502) -> bytes:
        """Our error, and the end of the stream, in the client's grammar."""
        ...

    def close(self) -> bytes:
        """The stream's last bytes once the answer finished (`[DONE]`, `]`...), or b""."""
        ...


class ClientSide(Protocol):
    def decode_request(self, body: Any) -> Conversation:
        """The client's request; raises `InvalidRequest` (naming the field) when malformed."""
        ...

    def encode_answer(self, answer: Answer) -> dict[str, Any]: ...

    def stream_encoder(self, *, sse: bool = True, usage: bool = False) -> StreamEncoder:
        """`sse`: Gemini's clients may ask for a JSON array instead; `usage`: a Chat
        Completions client asked for the usage chunk."""
        ...


@runtime_checkable
class AnswersItsRequest(Protocol):
    """A client side whose answers depend on the request besides the answer itself: the
    Responses one answers a freeform tool's call as a `custom_tool_call` and echoes the
    request's settings in its Response objects. `wire.conversions` binds it to the request
    a conversion sent."""

    def for_request(self, conversation: Conversation) -> ClientSide: ...


class ChannelSide(Protocol):
    def encode_request(self, conversation: Conversation, *, model: str) -> dict[str, Any]:
        """The upstream body for `model` (the channel's name of it). Names what it cannot
        express in `conversation.dropped`; raises `InvalidRequest` when dropping it would
        change the meaning (an image URL for a target that takes only inline data)."""
        ...

    def decode_answer(self, body: Any) -> Answer: ...

    def stream_decoder(self) -> StreamDecoder: ...

    def error_message(self, body: bytes) -> str | None:
        """The message of an upstream error body in this format, or None if unreadable."""
        ...
