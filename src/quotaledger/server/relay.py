"""The relay's endpoints over HTTP (SPEC §8, §8a, §11, §11.1): `POST /v1/chat/completions`,
`/v1/embeddings`, `/v1/responses`, `/v1/messages`, `/v1/messages/count_tokens`,
`GET /v1/models` and `/v1/models/{id}`; the Gemini API's `POST .../models/{model}:` +
`generateContent`, `streamGenerateContent`, `countTokens`, `embedContent` and
`batchEmbedContents`, and `GET .../models` and `.../models/{model}`, under `/v1beta` and
`/v1` (google-genai's default version).

Each reads its request into a `relay.pipeline.ClientRequest`, runs it through the pipeline
(`relay/pipeline.py`: admit, size the reservation, choose a channel, convert, call, track,
settle) and writes what comes back. Refusals of our own are written in the format the
client's SDK reads (OpenAI's error object, Anthropic's under `/v1/messages`, Google's on
the Gemini routes); every answer carries `X-Request-Id`. The key is read from `x-api-key`,
`x-goog-api-key`, `Authorization: Bearer` or Gemini's `?key=`, in that order, as the front
door's head check reads it (`head_admission.api_key`); it never leaves this server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import orjson

from quotaledger.billing import known_models, pricing, settlement
from quotaledger.errors import InvalidInput, NotFound
from quotaledger.identity import keys
from quotaledger.relay import pipeline
from quotaledger.relay.offers import Offers
from quotaledger.relay.pipeline import ClientRequest, Relay, Relayed, RelayedStream
from quotaledger.relay.upstream import UpstreamFailure
from quotaledger.server.calls import Answer, Call, Headers, Stream
from quotaledger.server.errors import refusal
from quotaledger.server.services import Services
from quotaledger.wire import anthropic_messages, conversions, gemini, refusals
from quotaledger.wire.errors import InvalidRequest, WireFormat, error_body
from quotaledger.wire.formats import (
    CHAT,
    EMBEDDINGS,
    GEMINI,
    GEMINI_BATCH_EMBED,
    GEMINI_COUNT,
    GEMINI_EMBED,
    GEMINI_JSON_ARRAY,
    MESSAGES,
    RESPONSES,
    Format,
)
from quotaledger.wire.gemini_models import model_entry, model_page

log = logging.getLogger("quotaledger.relay")

# The client headers the pipeline may use: a provider takes some of them upstream
# (`relay.providers`), the session id goes on the log row. The client's credential is not
# among them: it never leaves this server.
_READ_HEADERS = frozenset(
    {
        b"anthropic-version",
        b"anthropic-beta",
        b"openai-beta",
        b"x-claude-code-session-id",
    }
)


# ---------------------------------------------------------------- the endpoints


async def chat_completions(call: Call) -> Answer | Stream:
    return await _relay(call, CHAT)


async def embeddings(call: Call) -> Answer | Stream:
    return await _relay(call, EMBEDDINGS)


async def responses(call: Call) -> Answer | Stream:
    return await _relay(call, RESPONSES)


async def messages(call: Call) -> Answer | Stream:
    return await _relay(call, MESSAGES)


async def count_tokens(call: Call) -> Answer | Stream:
    """`{"input_tokens": N}`: never billed, no reservation, no log row. Forwarded to an
    anthropic channel serving the model, else to a gemini channel's countTokens (the
    request converted), else counted here (SPEC §11)."""
    request_id = pipeline.new_request_id()
    try:
        client = client_request(call)
        digest = pipeline.key_digest(client)
        body = pipeline.client_body(client)
        model = body.get("model") if isinstance(body, dict) else None
        model = model if isinstance(model, str) else None
        relay = relay_of(call.services)
        offers = await relay.runtime.offers.get()
        admission = await pipeline.admit(relay, client, digest, offers, model)
        await pipeline.admit_count_tokens(relay, admission)
        forwarded = await _counted_upstream(
            relay, client, offers, str(model), "count_tokens",
            lambda upstream: {**body, "model": upstream},
        )  # fmt: skip
        if forwarded is None:
            forwarded = await _counted_by_gemini(relay, client, offers, str(model), body)
        answer = forwarded or anthropic_messages.count_tokens_answer(body)
        return Answer(200, answer, _id_header(request_id))
    except Exception as exc:
        return _refused(exc, WireFormat.ANTHROPIC, request_id)


async def _counted_by_gemini(
    relay: Relay, client: ClientRequest, offers: Offers, model: str, body: Any
) -> bytes | None:
    """A Messages count from a gemini channel's countTokens, the request converted as it
    would be sent (a count request carries no `max_tokens`: one is lent for the decoding)."""
    conversion = conversions.conversion("messages", "gemini")
    if conversion is None or not isinstance(body, dict):
        return None
    conversation = conversion.decode({**body, "max_tokens": 1})

    def request_for(upstream: str) -> dict[str, Any]:
        sent, _dropped = conversion.encode(conversation, model=upstream)
        return {"generateContentRequest": {**sent, "model": f"models/{upstream}"}}

    counted = await _counted_upstream(relay, client, offers, model, GEMINI_COUNT.name, request_for)
    try:
        total = orjson.loads(counted or b"null")["totalTokens"]
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return None  # no count, or not one: counted here instead
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        return None
    return orjson.dumps({"input_tokens": total})


async def _counted_upstream(
    relay: Relay,
    client: ClientRequest,
    offers: Offers,
    model: str,
    operation: str,
    body_for: Callable[[str], dict[str, Any]],
) -> bytes | None:
    """The count of the first channel serving `model` whose provider counts natively
    (`operation`), with the body `body_for` its upstream model; None when none answers."""
    serving = offers.candidates(model, operation, relay.runtime)
    for candidate in await pipeline.usable(relay, serving):
        if not candidate.provider.serves_natively(operation):
            continue
        upstream = candidate.upstream_model(model)
        url = candidate.url(operation, upstream)
        url += "?beta=true" if client.beta and candidate.format == "anthropic" else ""
        headers = [*candidate.provider.headers(client.headers)]
        headers.append(("content-type", "application/json"))
        try:
            reply = await relay.runtime.upstream.open(
                candidate.target, url, headers, orjson.dumps(body_for(upstream))
            )
        except UpstreamFailure:
            continue
        answer = await reply.read(pipeline.MAX_ANSWER_BYTES)
        reply.release()
        return answer
    return None


async def models(call: Call) -> Answer | Stream:
    """The models offered and allowed to this key: OpenAI's list, Anthropic's when the
    request carries `anthropic-version`, Google's when it comes from a Gemini client."""
    if _from_gemini_client(call):
        return await gemini_models(call)
    request_id = pipeline.new_request_id()
    anthropic = _header(call, b"anthropic-version") is not None
    wire = WireFormat.ANTHROPIC if anthropic else WireFormat.OPENAI
    try:
        names = await _allowed_models(call)
        return Answer(200, _model_list(names, anthropic), _id_header(request_id))
    except Exception as exc:
        return _refused(exc, wire, request_id)


async def model(call: Call) -> Answer | Stream:
    """`GET /v1/models/{id}` (OpenAI SDKs' `models.retrieve`; Anthropic's `models.retrieve`
    when the request carries `anthropic-version`; google-genai's `models.get`)."""
    if _from_gemini_client(call):
        return await gemini_model(call)
    request_id = pipeline.new_request_id()
    anthropic = _header(call, b"anthropic-version") is not None
    wire = WireFormat.ANTHROPIC if anthropic else WireFormat.OPENAI
    try:
        wanted = call.scope["path"].removeprefix("/v1/models/")
        names = await _allowed_models(call)
        if wanted not in names:
            raise NotFound(f"model {wanted!r} is not offered")
        return Answer(200, orjson.dumps(_model_entry(wanted, anthropic)), _id_header(request_id))
    except Exception as exc:
        return _refused(exc, wire, request_id)


async def _allowed_models(call: Call) -> list[str]:
    return (await _allowed_offers(call))[0]


async def _allowed_offers(call: Call) -> tuple[list[str], Offers]:
    client = client_request(call)
    digest = pipeline.key_digest(client)
    relay = relay_of(call.services)
    offers = await relay.runtime.offers.get()
    admission = await pipeline.admit(relay, client, digest, offers, None)
    return keys.allowed_models(admission.key, offers.models), offers


def _model_entry(name: str, anthropic: bool) -> dict[str, Any]:
    if anthropic:
        return {
            "type": "model",
            "id": name,
            "display_name": name,
            "created_at": "1970-01-01T00:00:00Z",
        }
    return {"id": name, "object": "model", "created": 0, "owned_by": "quotaledger"}


def _model_list(names: list[str], anthropic: bool) -> bytes:
    data = [_model_entry(name, anthropic) for name in names]
    if anthropic:
        first, last = (names[0], names[-1]) if names else (None, None)
        return orjson.dumps({"data": data, "has_more": False, "first_id": first, "last_id": last})
    return orjson.dumps({"object": "list", "data": data})


# ---------------------------------------------------------------- the Gemini API (§11.1)


async def gemini_generate(call: Call) -> Answer | Stream:
    """`models/{model}:generateContent`."""
    return await _gemini_relay(call, GEMINI, stream=False)


async def gemini_stream(call: Call) -> Answer | Stream:
    """`models/{model}:streamGenerateContent`: server-sent events with `?alt=sse`, else
    one JSON array of the same chunks."""
    sse = _query(call).get("alt") == ["sse"]
    return await _gemini_relay(call, GEMINI if sse else GEMINI_JSON_ARRAY, stream=True, sse=sse)


async def gemini_embed(call: Call) -> Answer | Stream:
    """`models/{model}:embedContent`, on gemini channels."""
    return await _gemini_relay(call, GEMINI_EMBED, stream=False)


async def gemini_batch_embed(call: Call) -> Answer | Stream:
    """`models/{model}:batchEmbedContents` (google-genai's `embed_content`), on gemini
    channels."""
    return await _gemini_relay(call, GEMINI_BATCH_EMBED, stream=False)


async def _gemini_relay(
    call: Call, fmt: Format, *, stream: bool, sse: bool = True
) -> Answer | Stream:
    try:
        path_model = gemini_path_model(call.scope["path"])
    except NotFound as exc:
        return _refused(exc, WireFormat.GEMINI, pipeline.new_request_id())
    return await _relay(call, fmt, path_model=path_model, path_stream=stream, sse=sse)


async def gemini_count(call: Call) -> Answer | Stream:
    """`models/{model}:countTokens` → `{"totalTokens": N}`: never billed, no reservation,
    no log row. Forwarded to a gemini channel serving the model, else counted here."""
    request_id = pipeline.new_request_id()
    try:
        model = gemini_path_model(call.scope["path"])
        client = client_request(call)
        digest = pipeline.key_digest(client)
        body = pipeline.client_body(client)
        GEMINI_COUNT.prepare(body, None)  # checked before anything is asked of a channel
        relay = relay_of(call.services)
        offers = await relay.runtime.offers.get()
        admission = await pipeline.admit(relay, client, digest, offers, model)
        await pipeline.admit_count_tokens(relay, admission)
        forwarded = await _counted_upstream(
            relay, client, offers, model, GEMINI_COUNT.name,
            lambda upstream: gemini.count_for_model(body, upstream),
        )  # fmt: skip
        answer = forwarded or gemini.count_tokens_answer(body)
        return Answer(200, answer, _id_header(request_id))
    except Exception as exc:
        return _refused(exc, WireFormat.GEMINI, request_id)


async def gemini_models(call: Call) -> Answer | Stream:
    """`GET models`: the models offered and allowed to this key, as Google lists them
    (`pageSize` and `pageToken` honoured)."""
    request_id = pipeline.new_request_id()
    try:
        names, offers = await _allowed_offers(call)
        query = _query(call)
        size = query.get("pageSize", [""])[0]
        page = model_page(
            [_gemini_entry(name, offers) for name in names],
            int(size) if size.isdecimal() else None,
            query.get("pageToken", [None])[0],
        )
        return Answer(200, page, _id_header(request_id))
    except Exception as exc:
        return _refused(exc, WireFormat.GEMINI, request_id)


async def gemini_model(call: Call) -> Answer | Stream:
    """`GET models/{model}` (google-genai's `models.get`)."""
    request_id = pipeline.new_request_id()
    try:
        path = call.scope["path"]
        wanted = path.split("/models/", 1)[1] if "/models/" in path else ""
        names, offers = await _allowed_offers(call)
        if wanted not in names:
            raise NotFound(f"model {wanted!r} is not offered")
        entry = orjson.dumps(_gemini_entry(wanted, offers))
        return Answer(200, entry, _id_header(request_id))
    except Exception as exc:
        return _refused(exc, WireFormat.GEMINI, request_id)


def gemini_path_model(path: str) -> str:
    """The model of a Gemini path, `.../models/{model}:{method}` (the model may hold `/`:
    `models/google/gemini-2.5-pro:generateContent`); `NotFound` without one."""
    _, found, rest = path.partition("/models/")
    model = rest.rpartition(":")[0]
    if not found or not model:
        raise NotFound("the path names no model: use models/{model}:{method}")
    return model


def _gemini_entry(name: str, offers: Offers) -> dict[str, Any]:
    return model_entry(
        name,
        output_limit=pricing.max_output_tokens(offers.prices.get(name), name),
        input_limit=known_models.input_token_limit(name),
        embedding="embed" in name.lower(),
    )


def _from_gemini_client(call: Call) -> bool:
    """A google-genai client on `/v1/models` (its default version): it sends its key as
    `x-goog-api-key` (or `?key=`) and names itself in `x-goog-api-client`."""
    for name, _ in call.scope["headers"]:
        if name in (b"x-goog-api-key", b"x-goog-api-client"):
            return True
    return "key" in _query(call)


def _query(call: Call) -> dict[str, list[str]]:
    raw = call.scope.get("query_string", b"")
    return parse_qs(raw.decode("latin-1")) if raw else {}


# ---------------------------------------------------------------- one relayed request


async def _relay(call: Call, fmt: Format, **path: Any) -> Answer | Stream:
    request_id = pipeline.new_request_id()
    try:
        client = client_request(call, **path)
        done = await pipeline.relay_request(relay_of(call.services), client, fmt, request_id)
    except Exception as exc:
        if isinstance(exc, pipeline.OutOfMoney):
            call.services.metrics.out_of_money.labels(fmt.name).inc()
        return _refused(exc, fmt.wire, request_id, fmt)
    return _written(done)


def _written(done: Relayed | RelayedStream) -> Answer | Stream:
    headers = _encoded(done.headers)
    if isinstance(done, RelayedStream):
        return Stream(done.status, done.chunks, done.media_type.encode(), headers)
    return Answer(done.status, done.body, headers)


def client_request(call: Call, **path: Any) -> ClientRequest:
    """The request as the pipeline reads it, its key from `x-api-key` (Anthropic's SDK),
    `x-goog-api-key` (Google's), `Authorization: Bearer`, then Gemini's `?key=`."""
    headers: dict[str, str] = {}
    api_key = google_key = None
    for name, value in call.scope["headers"]:
        if name in _READ_HEADERS:
            headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
        elif name == b"x-api-key" and api_key is None:
            api_key = value.decode("latin-1")
        elif name == b"x-goog-api-key" and google_key is None:
            google_key = value.decode("latin-1")
    raw_query = call.scope.get("query_string", b"")
    query = parse_qs(raw_query.decode("latin-1")) if raw_query else {}
    in_query = query.get("key", [None])[0]
    return ClientRequest(
        api_key=api_key or google_key or call.head.token or in_query,
        client_address=call.client_address(),
        body=call.body,
        headers=headers,
        beta=query.get("beta") == ["true"],
        **path,
    )


class _Hooks:
    """The pipeline's hooks on this server: the metrics, the alerts."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def reserved(self) -> None:
        self.services.metrics.open_reservations.inc()

    def attempted(
        self, channel: str, status: int | None, latency_ms: float, ttft_ms: float | None
    ) -> None:
        self.services.metrics.channel_attempt(channel, status, latency_ms, ttft_ms)

    def settled(
        self, model: str, outcome: settlement.Outcome, settled: settlement.Settlement
    ) -> None:
        metrics = self.services.metrics
        metrics.open_reservations.dec()
        metrics.relay_settled(model, outcome, settled)
        self.services.alerts.settled(settled)  # a dict lookup unless a threshold is set


_RELAYS: dict[int, Relay] = {}


def relay_of(services: Services) -> Relay:
    """The pipeline's environment on these services (made once per app)."""
    found = _RELAYS.get(id(services))
    if found is None or found.runtime is not services.relay:
        jobs = services.channel_jobs  # SPEC §12: limits and channel health
        found = Relay(services.database, services.settings, services.relay, _Hooks(services),
                      jobs.limits, jobs.group_rates, jobs.health)  # fmt: skip
        _RELAYS[id(services)] = found
    return found


# ---------------------------------------------------------------- refusals


def _id_header(request_id: str) -> Headers:
    return [(b"x-request-id", request_id.encode())]


def _encoded(headers: list[tuple[str, str]]) -> Headers:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]


def _header(call: Call, name: bytes) -> str | None:
    for key, value in call.scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def refused(exc: BaseException, fmt: Format, request_id: str) -> Answer:
    """The answer to a relayed request the pipeline refused with `exc`, in `fmt`'s shape
    (re-raises an unexpected error). The Responses socket sends it as its error event."""
    return _refused(exc, fmt.wire, request_id, fmt)


def _refused(
    exc: BaseException, wire: WireFormat, request_id: str, fmt: Format | None = None
) -> Answer:
    """Our refusal in the client's format, or the upstream's own error passed through."""
    headers = _id_header(request_id)
    if isinstance(exc, UpstreamFailure):
        return _upstream_refusal(exc, wire, headers, fmt)
    if isinstance(exc, pipeline.OutOfMoney) and fmt is not None:
        out = refusals.refusal(fmt.name, exc.shortfall)
        return Answer(out.status, out.body, [*headers, *_encoded(list(out.headers))])
    if isinstance(exc, InvalidRequest):
        return Answer(400, error_body(wire, 400, str(exc), param=exc.param), headers)
    if isinstance(exc, InvalidInput):
        return Answer(400, error_body(wire, 400, str(exc), param=exc.field), headers)
    found = refusal(exc) if isinstance(exc, Exception) else None
    if found is None:
        raise exc
    said = [(k.lower().encode(), v.encode()) for k, v in found.headers]
    body = error_body(wire, found.status, found.message)
    return Answer(found.status, body, [*headers, *said])


def _upstream_refusal(
    exc: UpstreamFailure, wire: WireFormat, headers: Headers, fmt: Format | None
) -> Answer:
    """Before any byte: an upstream's own error that no other channel could replace is passed
    on unmodified where the client's tools match on its wording (`pipeline.passes_through`;
    a converted channel's error arrives here already in the client's shape), otherwise
    502/504 of ours naming it."""
    status = (
        pipeline.refused_status(exc, fmt) if fmt is not None else (504 if exc.timed_out else 502)
    )
    if exc.status is not None and status == exc.status:
        kept = [(k.lower().encode(), v.encode()) for k, v in exc.headers if k.lower() in _KEPT]
        return Answer(exc.status, exc.body, [*headers, *kept])
    named = f" (last upstream status {exc.status})" if exc.status else ""
    message = f"every channel failed: {exc.reason}{named}"
    return Answer(status, error_body(wire, status, message), headers)


_KEPT = frozenset({"retry-after", "content-type"})


__all__ = [
    "chat_completions",
    "count_tokens",
    "embeddings",
    "gemini_batch_embed",
    "gemini_count",
    "gemini_embed",
    "gemini_generate",
    "gemini_model",
    "gemini_models",
    "gemini_stream",
    "messages",
    "model",
    "models",
    "refused",
    "responses",
]
