"""`GET /v1/responses` with `Upgrade: websocket`: Responses over WebSocket (SPEC §14), Codex's
first transport (its built-in OpenAI provider, and a custom one with `supports_websockets`).

The upgrade is answered once the key is known (`keys.admit_async`: unknown, disabled, expired,
not from this address -> 401/403 before accepting, with OpenAI's error body). Then each
`response.create` message (`wire.responses_socket`) runs through the same pipeline as a
streamed `POST /v1/responses` (`relay.pipeline.relay_request`: admitted, reserved, streamed,
settled exactly once, logged), one at a time, and every event of its stream goes back as one
text message. Refusals (an empty balance's 400 `insufficient_quota`, a rate limit's 429, an
upstream's own error) are `error` messages carrying the HTTP answer's status and body, which
Codex handles as it would that HTTP answer. A client that closes the socket mid-answer is a
client that left (SPEC §8b): the pipeline cancels the upstream call and charges what was
delivered.

What the socket cannot take (an address already holding half its requests in progress,
`front_door`) is refused with 426 Upgrade Required: Codex then switches to HTTP at once,
where any other refusal of the upgrade (a 401, 429 or 5xx; the engine's bare 403) costs it
five reconnects and seven seconds first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import orjson
from starlette.types import Message, Receive, Scope, Send

from quotaledger.errors import AuthenticationFailed, QuotaLedgerError
from quotaledger.identity import keys
from quotaledger.relay import pipeline
from quotaledger.relay.pipeline import ClientRequest, Relayed, RelayedStream
from quotaledger.server import relay
from quotaledger.server.calls import Answer, Call, read_head
from quotaledger.server.errors import Refusal, refusal
from quotaledger.server.finisher import WriteRefusal
from quotaledger.server.head_admission import api_key
from quotaledger.server.services import Services
from quotaledger.wire import responses_socket
from quotaledger.wire.errors import InvalidRequest, WireFormat, error_body
from quotaledger.wire.formats import RESPONSES
from quotaledger.wire.sse import SSEParser

log = logging.getLogger("quotaledger.relay")

PATH = "/v1/responses"
# Messages a client may send ahead while a response is streaming (they are answered in
# order); one more closes the socket (policy violation) rather than growing its memory.
MAX_QUEUED = 8
_HTTP_RESPONSE = "websocket.http.response"  # the ASGI extension to answer an upgrade
_POLICY_VIOLATION = 1008


async def serve(scope: Scope, receive: Receive, send: Send, services: Services) -> None:
    """One socket, from its upgrade to its close."""
    if (await receive())["type"] != "websocket.connect":
        return
    call = Call(scope, read_head(scope), b"", services)
    try:
        raw_key = await _authenticated(call)
    except QuotaLedgerError as exc:
        await refuse_upgrade(scope, send, _known(exc))
        return
    await send({"type": "websocket.accept"})
    services.metrics.relay_sockets.inc()
    await _Socket(call, raw_key, receive, send).run()


async def _authenticated(call: Call) -> str:
    """The key, once known, enabled and allowed from this address (its balance is checked
    per response, so that an empty one gets the relay's own refusal, as over HTTP)."""
    raw = api_key(call)
    if not raw:
        raise AuthenticationFailed("missing API key: send Authorization: Bearer sk-ql-...")
    digest = keys.key_digest(raw.strip())
    await keys.admit_async(call.services.database, digest, call.client_address(), None, frozenset())
    return raw


def _known(exc: Exception) -> Refusal:
    found = refusal(exc)
    assert found is not None
    return found


def _openai(status: int, message: str) -> bytes:
    return error_body(WireFormat.OPENAI, status, message)


async def refuse_upgrade(
    scope: Scope, send: Send, refused: Refusal, write: WriteRefusal = _openai
) -> None:
    """Answer the upgrade with an HTTP refusal (its status, headers, and body in `write`'s
    shape) where the engine can (Granian and uvicorn can); else close it (the engine's 403)."""
    if _HTTP_RESPONSE not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": _POLICY_VIOLATION})
        return
    headers = [(b"content-type", b"application/json")]
    headers += [(k.lower().encode(), v.encode()) for k, v in refused.headers]
    start = {"type": f"{_HTTP_RESPONSE}.start", "status": refused.status, "headers": headers}
    await send(start)
    body = write(refused.status, refused.message)
    await send({"type": f"{_HTTP_RESPONSE}.body", "body": body})


class _Socket:
    """An accepted socket: its messages read as they come, answered one at a time."""

    def __init__(self, call: Call, raw_key: str, receive: Receive, send: Send) -> None:
        self.receive, self.raw_send = receive, send
        self.services = call.services
        self.max_chars = call.services.settings.relay_max_body_bytes  # a POST's limit
        self.client = _client(call, raw_key)
        self.chain = responses_socket.Chain()
        self.inbox: asyncio.Queue[Message | None] = asyncio.Queue()
        self.turn: asyncio.Future[None] | None = None
        self.gone = False

    async def run(self) -> None:
        reader = asyncio.ensure_future(self._read())
        try:
            while not self.gone and (message := await self.inbox.get()) is not None:
                self.turn = asyncio.ensure_future(self._answer(message))
                try:
                    await self.turn
                except asyncio.CancelledError:
                    if not self.gone:
                        raise  # the server is stopping, not the client leaving
                finally:
                    self.turn = None
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read(self) -> None:
        """The client's messages into the inbox; its leaving cancels the answer under way
        (the pipeline then cancels its upstream call and settles what was delivered)."""
        while True:
            message = await self.receive()
            kind = message["type"]
            if kind == "websocket.receive":
                if self.inbox.qsize() < MAX_QUEUED:
                    self.inbox.put_nowait(message)
                    continue
                await self.raw_send({"type": "websocket.close", "code": _POLICY_VIOLATION})
            elif kind != "websocket.disconnect":
                continue
            self.gone = True
            if self.turn is not None:
                self.turn.cancel()
            self.inbox.put_nowait(None)
            return

    async def _answer(self, message: Message) -> None:
        text = message.get("text")
        request_id = pipeline.new_request_id()
        try:
            if text is None:
                raise InvalidRequest("send each event as a text message (JSON)", "type")
            if len(text) > self.max_chars:  # characters: at most the bytes the limit counts
                raise _TooLarge(f"a message may be at most {self.max_chars} bytes")
            ask = self.chain.ask(text)
        except (InvalidRequest, _TooLarge) as exc:
            await self._refuse(exc, request_id)
            return
        if ask is None:
            return
        if ask.warmup:
            await self._warm(ask)
            return
        await self._relay(ask, request_id)

    async def _warm(self, ask: responses_socket.Ask) -> None:
        """A warm-up: answered here, nothing upstream, nothing charged or logged."""
        self._count("warmup")
        response_id, events = responses_socket.warmup(ask)
        for event in events:
            await self._send(ask.labelled(event))
        self.chain.answered(ask, response_id, [])

    async def _relay(self, ask: responses_socket.Ask, request_id: str) -> None:
        body = orjson.dumps(ask.body)
        client = dataclasses.replace(self.client, body=body)
        try:
            if len(body) > self.max_chars:  # a continued conversation grows past a POST's
                raise _TooLarge(f"the request would be {len(body)} bytes, over {self.max_chars}")
            done = await pipeline.relay_request(
                relay.relay_of(self.services), client, RESPONSES, request_id
            )
        except Exception as exc:
            await self._refuse(exc, request_id, ask)
            return
        self._count("continued" if ask.continued else "relayed")
        outcome = await self._forward(done, ask)
        self.chain.answered(ask, *outcome.chained)

    async def _forward(
        self, done: Relayed | RelayedStream, ask: responses_socket.Ask
    ) -> responses_socket.Outcome:
        """Each event of the stream as one text message, as it comes."""
        outcome = responses_socket.Outcome()
        if isinstance(done, Relayed):  # a streamed request is answered as a stream
            await self._send(ask.labelled(responses_socket.error_event(502, done.body, {})))
            return outcome
        parser, chunks = SSEParser(), done.chunks
        try:
            async for chunk in chunks:
                for event in parser.feed(chunk):
                    if event.has_data and event.data != "[DONE]":
                        outcome.read(event.event, event.data)
                        await self._send(ask.labelled(event.data))
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()  # settled, however it ended
        return outcome

    async def _refuse(
        self, exc: Exception, request_id: str, ask: responses_socket.Ask | None = None
    ) -> None:
        self.chain.forget()  # a failed request ends the chain, as OpenAI's socket does
        self._count("refused")
        answer = _refusal_answer(exc, request_id)
        said = {k.decode("latin-1"): v.decode("latin-1") for k, v in answer.headers}
        event = responses_socket.error_event(answer.status, answer.body, said)
        await self._send(ask.labelled(event) if ask is not None else event)

    async def _send(self, text: str) -> None:
        await self.raw_send({"type": "websocket.send", "text": text})

    def _count(self, kind: str) -> None:
        self.services.metrics.relay_socket_messages.labels(kind).inc()


class _TooLarge(Exception):
    pass


def _refusal_answer(exc: Exception, request_id: str) -> Answer:
    """What a POST would have been answered (an unexpected error: logged, a plain 500)."""
    if isinstance(exc, _TooLarge):
        return Answer(413, _openai(413, str(exc)), [(b"x-request-id", request_id.encode())])
    try:
        return relay.refused(exc, RESPONSES, request_id)
    except Exception:
        log.error("unexpected error on the Responses socket (%s)", request_id, exc_info=exc)
        return Answer(500, _openai(500, "internal server error"))


def _client(call: Call, raw_key: str) -> ClientRequest:
    """The upgrade's headers as each response's request carries them: the HTTP call made
    upstream is no WebSocket, so the socket's beta flag does not go with it."""
    client = relay.client_request(call)
    headers = dict(client.headers)
    beta = headers.pop("openai-beta", None)
    if beta is not None:
        kept = [p.strip() for p in beta.split(",") if p.strip()]
        kept = [p for p in kept if not p.startswith("responses_websockets")]
        if kept:
            headers["openai-beta"] = ", ".join(kept)
    return dataclasses.replace(client, api_key=raw_key, headers=headers)
