"""Google's Gemini API (generateContent, streamGenerateContent), both sides (SPEC §11, §11.1):
as the client's format (a google-genai SDK app or Gemini CLI on a channel of another format:
`client_request`, `client_answer`) and as a channel's (`gemini`: what a chat, messages or
responses request is sent as: `channel_request`, `channel_answer`).

Call ids. Gemini pairs a functionResponse with its functionCall by name and order, and its
API refuses an `id` in a request's calls and responses on some routes, so none goes
upstream. As a channel, the id Gemini gave a call (or one of ours) is the client's tool-call
id. As the client's format, a functionCall without an id gets `call_{turn}_{part}` (the same
in every request of a conversation, so that a channel's prompt cache keeps matching) and a
functionResponse answers the call of the same id, else the first unanswered one of its name.

Thought signatures (`signatures`). Gemini 2.5 and 3 sign their reasoning on the first
functionCall part of a step (or on a thought or text part), and Gemini 3 refuses a history
whose function call lost its signature. As a channel, a call's signature rides inside the
tool-call id the client gets and comes back with it; a call of the active loop that comes
back without one gets Google's documented placeholder (as Gemini CLI does). As the client's
format, the answer's reasoning (Anthropic's signed and redacted thinking, DeepSeek's text) is
packed into the thoughtSignature of the first functionCall part (else the last part): Gemini
CLI drops thought parts from its history but keeps signatures, and the pack brings the
reasoning back in the next turn, as Anthropic (thinking with tools) and DeepSeek need it.

Images. Inline data is inlineData both ways. As a channel, an image URL goes as fileData when
Gemini can fetch it (`https://`: Files API URIs and public or signed URLs; `gs://`: registered
buckets) and is refused by name otherwise. As the client's format, fileData whose URI another
provider cannot read (`gs://`, a Files API URI: both need Google's credentials) is refused.
Anything but images (PDF, audio, video) is refused by name too: the other formats' codecs
have no place for it.
"""

from __future__ import annotations

from quotaledger.wire.codecs.gemini import channel_answer, channel_request, client_answer
from quotaledger.wire.codecs.gemini.client_request import decode_request


class ClientSide:
    decode_request = staticmethod(decode_request)
    encode_answer = staticmethod(client_answer.encode_answer)

    def stream_encoder(
        self, *, sse: bool = True, usage: bool = False
    ) -> client_answer.StreamEncoder:
        return client_answer.StreamEncoder(sse=sse)


class ChannelSide:
    encode_request = staticmethod(channel_request.encode_request)
    decode_answer = staticmethod(channel_answer.decode_answer)
    error_message = staticmethod(channel_request.error_message)

    def stream_decoder(self) -> channel_answer.StreamDecoder:
        return channel_answer.StreamDecoder()


CLIENT = ClientSide()
CHANNEL = ChannelSide()
