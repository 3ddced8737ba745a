"""Conversions between wire formats, keyed by (client format, channel format) (SPEC §11).

A conversion is a client format's codec (`wire/codecs/`) composed with a channel format's:
the request is decoded from the client's format into the conversation shape (`wire.ir`) and
encoded in the channel's; the answer goes back the other way, and a stream event by event
(`ConvertedStream`). Every pair works through that one shape; a pair that needs a special
case would have a module of its own here and a line in `_SPECIAL`.

Native pairs (the client's format is the channel's) have no conversion: they are passed on
as received (`conversion` returns None).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import orjson

from quotaledger.token_usage import TokenUsage
from quotaledger.wire import ir
from quotaledger.wire.codecs import (
    AnswersItsRequest,
    ChannelSide,
    ClientSide,
    StreamDecoder,
    StreamEncoder,
)
from quotaledger.wire.codecs import anthropic as anthropic_codec
from quotaledger.wire.codecs import chat as chat_codec
from quotaledger.wire.codecs import gemini as gemini_codec
from quotaledger.wire.codecs import responses as responses_codec
from quotaledger.wire.counting import local_usage
from quotaledger.wire.errors import InvalidRequest, WireFormat, error_body
from quotaledger.wire.sse import SSEEvent

# The client formats' codecs, by the relay's operation name (`wire.formats`).
CLIENTS: dict[str, ClientSide] = {
    "chat": chat_codec.CLIENT,
    "messages": anthropic_codec.CLIENT,
    "responses": responses_codec.CLIENT,
    "gemini": gemini_codec.CLIENT,
}
# The channel formats' codecs, by channel format (`relay.providers`).
CHANNELS: dict[str, ChannelSide] = {
    "openai": chat_codec.CHANNEL,
    "openai-chat": chat_codec.CHAT_ONLY_CHANNEL,
    "anthropic": anthropic_codec.CHANNEL,
    "gemini": gemini_codec.CHANNEL,
}
# What each channel format serves as received (the pairs without a conversion).
NATIVE = {
    "openai": {"chat", "responses", "embeddings"},
    "openai-chat": {"chat", "embeddings"},
    "anthropic": {"messages"},
    "gemini": {"gemini"},
}
# The error shape each client format's SDK reads.
_ERROR_SHAPES = {
    "chat": WireFormat.OPENAI,
    "responses": WireFormat.OPENAI,
    "messages": WireFormat.ANTHROPIC,
    "gemini": WireFormat.GEMINI,
}


@dataclass(eq=False)
class Conversion:
    """One attempt's conversion: `encode` the request, then read the answer (or stream) the
    channel gave to it."""

    client: str
    channel: str
    client_side: ClientSide
    channel_side: ChannelSide
    # The client side that answers: bound to the request `encode` sent, for a client
    # format whose answers depend on it (`codecs.AnswersItsRequest`).
    answering: ClientSide | None = field(default=None, repr=False)

    def decode(self, body: Any) -> ir.Conversation:
        """The client's request in the conversation shape; `InvalidRequest` naming the field
        when it is malformed (before anything is reserved)."""
        return self.client_side.decode_request(body)

    def encode(
        self,
        conversation: ir.Conversation,
        *,
        model: str,
        output_cap: int | None = None,
        lowered: bool = False,
    ) -> tuple[dict[str, Any], list[str]]:
        """The upstream body for `model`, and the fields it could not carry. `output_cap` is
        the relay's cap: sent when the client set none, or instead of the client's when the
        relay `lowered` it to what the balance covers."""
        if isinstance(self.client_side, AnswersItsRequest):
            self.answering = self.client_side.for_request(conversation)
        attempt = dataclasses.replace(conversation, dropped=list(conversation.dropped))
        if output_cap is not None and (lowered or attempt.max_output_tokens is None):
            attempt.max_output_tokens = output_cap
        return self.channel_side.encode_request(attempt, model=model), attempt.dropped

    def answer(self, upstream: Any) -> tuple[bytes, ir.Answer]:
        """The client's answer (JSON bytes) for the channel's, and the answer as read."""
        answer = self.channel_side.decode_answer(upstream)
        return orjson.dumps(self._answering().encode_answer(answer)), answer

    def stream(
        self, *, prompt_tokens: int, sse: bool = True, usage: bool = False
    ) -> ConvertedStream:
        return ConvertedStream(
            self.channel_side.stream_decoder(),
            self._answering().stream_encoder(sse=sse, usage=usage),
            prompt_tokens,
        )

    def _answering(self) -> ClientSide:
        return self.answering or self.client_side

    def error(self, status: int, upstream_body: bytes) -> bytes:
        """The upstream's error in the client's shape, its message kept."""
        message = self.channel_side.error_message(upstream_body) or f"upstream answered {status}"
        return error_body(_ERROR_SHAPES[self.client], status, message)


def conversion(client: str, channel: str) -> Conversion | None:
    """The conversion of `client`'s requests for a `channel` channel; None when native.
    Raises `InvalidRequest` for a pair no codec serves yet."""
    if client in NATIVE.get(channel, ()):
        return None
    client_side, channel_side = CLIENTS.get(client), CHANNELS.get(channel)
    if client_side is None or channel_side is None:
        raise InvalidRequest(f"{client} requests cannot be converted for {channel} channels")
    return Conversion(client, channel, client_side, channel_side)


class ConvertedStream:
    """A channel's stream, converted event by event into the client's grammar; the relay's
    stream tracker (`wire.formats.Tracker`): what to send for each upstream event, how to
    end, and the usage to settle — the channel's report when believable, else counted here
    over what was delivered."""

    def __init__(self, decoder: StreamDecoder, encoder: StreamEncoder, prompt_tokens: int) -> None:
        self.decoder, self.encoder = decoder, encoder
        self.prompt_tokens = prompt_tokens
        self.reported: TokenUsage | None = None
        self.done = False
        self._output: list[str] = []
        self._reasoning: list[str] = []

    @property
    def delivered(self) -> bool:
        return any(self._output)

    def relay(self, event: SSEEvent) -> bytes:
        return b"".join([self._send(e) for e in self.decoder.feed(event)])

    def _send(self, event: ir.StreamEvent) -> bytes:
        if isinstance(event, ir.TextDelta):
            self._output.append(event.text)
        elif isinstance(event, ir.ReasoningDelta):
            self._output.append(event.text)
            self._reasoning.append(event.text)
        elif isinstance(event, ir.ToolCallStarted):
            self._output.append(event.name)
        elif isinstance(event, ir.ToolCallDelta):
            self._output.append(event.arguments)
        elif isinstance(event, ir.Started) and event.usage is not None:
            self.reported = event.usage
        elif isinstance(event, ir.Finished):
            if event.usage is not None:
                self.reported = event.usage
            self.done = True
            final = ir.Finished(event.stop, self.usage(), event.stop_sequence)
            return self.encoder.encode(final) + self.encoder.close()
        elif isinstance(event, ir.Failed):
            self.done = True
            return self.encoder.fail(event.message, event.status)
        return self.encoder.encode(event)

    def usage(self) -> TokenUsage:
        reported = self.reported
        believable = reported is not None and (reported.output > 0 or not self.delivered)
        if believable and reported is not None and reported.prompt_tokens > 0:
            return reported
        return local_usage(self.prompt_tokens, self._output, self._reasoning)

    def finish(self) -> bytes:
        """The upstream's body ended: the end its events imply, else an error of ours."""
        if self.done:
            return b""
        tail = b"".join([self._send(e) for e in self.decoder.end()])
        if self.done:
            return tail
        return tail + self.fail("The upstream stream ended before the answer was complete.")

    def fail(self, message: str, *, status: int = 502) -> bytes:
        self.done = True
        return self.encoder.fail(message, status)


def answer_texts(answer: ir.Answer) -> tuple[list[str], list[str]]:
    """(every delivered piece, the reasoning pieces) of an answer, for local counting."""
    output = [
        p.text if isinstance(p, ir.Text | ir.Reasoning) else p.name + p.arguments
        for p in answer.parts
    ]
    return output, [p.text for p in answer.parts if isinstance(p, ir.Reasoning)]
