"""The relay pipeline: one relayed request from its key to its settlement, with no HTTP
server in it (SPEC §8, §8a, §11). `server/relay.py` reads a request into a `ClientRequest`,
runs it here, and writes what comes back (or the refusal raised) in the client's format.

Every relayed request takes the same steps, whatever its wire format (`wire.formats`):

1. **admit**: the key (`keys.admit`: unknown, disabled, expired, network, model...), the
   model offered (a price and a channel in rotation: `relay.health`), the rate limits
   (`relay.limits`, SPEC §12: RPM, TPM on the prompt estimate plus the output cap, a
   concurrency lease held until the request ends);
2. **size the reservation**: the prompt estimated locally and the request's most expensive
   outcome reserved (`reservations.reserve`): the prompt estimate with a margin plus the
   output cap, the client's or ours (lowered to what the balance covers); nothing goes
   upstream unless that reservation holds;
3. **choose a channel**: the channels serving the model, in order (priority; native before
   converted; weighted random), until one answers 2xx; a failure before the first byte moves
   on to the next; each attempt's end is told to the channel's health;
4. **convert** the request for a channel of another format (`wire.conversions`), or pass it
   as received to one that speaks it;
5. **call** the channel through its provider (`relay.providers`: URL, credential, headers);
6. **track** the answer (a stream event by event, as it arrives, converted back into the
   client's grammar when it was converted) while its usage is read;
7. **settle** the reservation exactly once with the actual usage (`settlement.settle`),
   however it ended: answered, failed mid-way, client gone, idle upstream; the TPM taken is
   corrected to that usage and the concurrency lease released. A request whose instance
   died is settled by the sweeper instead (and its lease lapses after its TTL).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import orjson

from quotaledger.billing import believable, pricing, reservations, settlement, sizing
from quotaledger.errors import (
    AuthenticationFailed,
    InsufficientQuota,
    NoChannelAvailable,
    NotFound,
    RateLimited,
)
from quotaledger.identity import keys
from quotaledger.relay import health, rates
from quotaledger.relay.health_watch import ChannelHealth
from quotaledger.relay.limits import Lease, Limiter, Refusal
from quotaledger.relay.offers import Candidate, Offers, RelayRuntime
from quotaledger.relay.upstream import Reply, UpstreamFailure
from quotaledger.settings import Settings
from quotaledger.store.database import Database
from quotaledger.token_usage import TokenUsage, UsageSource
from quotaledger.wire import conversions, ir, refusals
from quotaledger.wire.cache_prefixes import Breakpoint
from quotaledger.wire.counting import local_usage
from quotaledger.wire.errors import InvalidRequest, WireFormat
from quotaledger.wire.formats import Capped, Format, Prepared, Tracker
from quotaledger.wire.sse import SSEParser

log = logging.getLogger("quotaledger.relay")

# The smallest output cap the relay lowers its default to before refusing with 402.
MIN_OUTPUT_TOKENS = 16
# A stream records its usage so far this often (and at least three times per reservation
# TTL), so that a sweeper can settle it if its instance dies, and never sweeps it alive.
PROGRESS_SECONDS = 15.0
# Whole (non-streamed) answers larger than this are refused: no model answer is near it.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
# One server-sent event larger than this ends the stream as an upstream failure: a broken or
# hostile upstream sending a line without end must not grow the relay's memory.
MAX_EVENT_BYTES = 1024 * 1024


# ---------------------------------------------------------------- what goes in and out


@dataclass(frozen=True)
class ClientRequest:
    """A relayed request as the pipeline needs it, read from HTTP by the adapter."""

    api_key: str | None
    client_address: str
    body: bytes
    # The client's headers by lower-case name (first occurrence): those a provider takes
    # (`anthropic-beta`...) go on, the rest stay here.
    headers: Mapping[str, str] = field(default_factory=dict)
    # Where the model and streaming come from the path rather than the body (Gemini's
    # `models/{model}:streamGenerateContent`), the adapter says so here.
    path_model: str | None = None
    path_stream: bool | None = None
    sse: bool = True  # Gemini without `?alt=sse` streams a JSON array instead
    # `?beta=true`: the one query parameter that goes upstream (SPEC §11), on messages to an
    # Anthropic channel (Claude Code sends it). Anything else in the client's query string
    # (a Gemini `?key=` above all) stays here.
    beta: bool = False

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


class Hooks(Protocol):
    """What the adapter wants to know along the way (metrics, alerts)."""

    def reserved(self) -> None: ...

    def attempted(
        self, channel: str, status: int | None, latency_ms: float, ttft_ms: float | None
    ) -> None:
        """One upstream attempt ended: its status (None: no answer, or one that broke)."""
        ...

    def settled(
        self, model: str, outcome: settlement.Outcome, settled: settlement.Settlement
    ) -> None: ...


@dataclass
class Relay:
    """What the pipeline runs on: the database, the settings, the per-process runtime
    (offers, upstream pools), the adapter's hooks, and SPEC §12's rate limiter, group rates
    and channel health (shared by every instance through Redis and the database)."""

    database: Database
    settings: Settings
    runtime: RelayRuntime
    hooks: Hooks
    limits: Limiter
    group_rates: rates.GroupRates
    health: ChannelHealth


@dataclass(frozen=True)
class Relayed:
    """A whole answer, in the client's format."""

    status: int
    body: bytes
    headers: list[tuple[str, str]]


@dataclass(frozen=True)
class RelayedStream:
    """A streamed answer: chunks in the client's grammar, sent as they come."""

    status: int
    chunks: AsyncIterator[bytes]
    headers: list[tuple[str, str]]
    media_type: str = "text/event-stream"


# ---------------------------------------------------------------- one relayed request


@dataclass
class _Request:
    """One relayed request on its way: what the steps learn and the settlement needs."""

    relay: Relay
    client: ClientRequest
    format: Format
    request_id: str
    started: float = field(default_factory=time.monotonic)
    user_id: int = 0
    model: str = ""
    prompt_tokens: int = 0
    candidate: Candidate | None = None
    conversion: conversions.Conversion | None = None
    conversation: ir.Conversation | None = None  # decoded once, if any channel converts
    sized: sizing.Sizing | None = None
    output_cap: int = 0  # output tokens per choice the upstream works under
    choices: int = 1
    dropped: tuple[str, ...] = ()
    breakpoints: list[Breakpoint] = field(default_factory=list)  # prompt-cache marks
    attempt_started: float | None = None  # when the answering channel was called
    first_byte: float | None = None
    settled: bool = False
    counted: bool = False  # in `_in_flight` (until the answer, or the start of a stream)
    lease: Lease | None = None  # the rate limits taken (`relay.limits`)

    @property
    def headers(self) -> list[tuple[str, str]]:
        said = [("x-request-id", self.request_id)]
        if self.sized is not None and self.sized.cap_sent is not None:
            said.append(("x-quotaledger-output-cap", str(self.sized.cap_sent)))
        if self.lease is not None:  # the tightest limits, as OpenAI (and Anthropic) say them
            said += self.lease.openai_headers()
            if self.format.wire is WireFormat.ANTHROPIC:
                said += self.lease.anthropic_headers()
        return said

    def elapsed_ms(self, since: float | None = None) -> int:
        return int(((since or time.monotonic()) - self.started) * 1000)


@dataclass(frozen=True)
class _Attempt:
    """What was sent to one channel: its body and, when converted, the conversion."""

    candidate: Candidate
    body: dict[str, Any]
    conversion: conversions.Conversion | None
    dropped: tuple[str, ...] = ()


# Relayed requests of this process between their start and their answer (or the start of
# their stream): with one alone, its reservation and settlement commit right on the event
# loop (`Database.group_commit(alone=True)`) instead of through the group-commit thread.
# A stream's settlement, after its start, always goes through the thread.
_in_flight = 0


def _alone(request: _Request) -> bool:
    return request.counted and _in_flight == 1


async def relay_request(
    relay: Relay, client: ClientRequest, fmt: Format, request_id: str
) -> Relayed | RelayedStream:
    """Run one request through every step; raises the refusal when it is refused."""
    global _in_flight
    request = _Request(relay, client, fmt, request_id, counted=True)
    _in_flight += 1
    try:
        return await _relay_admitted(request)
    finally:
        _in_flight -= 1
        request.counted = False


async def _relay_admitted(request: _Request) -> Relayed | RelayedStream:
    relay, client, fmt = request.relay, request.client, request.format
    digest = key_digest(client)  # a missing or malformed key: 401 before anything else
    body = client_body(client)
    if client.path_model is not None and isinstance(body, dict):
        # Gemini names the model and streaming in the path: the steps read them from the
        # body, as for the other formats (and never send them upstream in it).
        body = {**body, "model": client.path_model, "stream": bool(client.path_stream)}
    request.model = _model_of(client, body)
    prepared = fmt.prepare(body, None)  # no cap added: the relay sends one only when lowered
    offers = await relay.runtime.offers.get()
    admission = await admit(relay, client, digest, offers, request.model)
    candidates = await usable(relay, _serving(request, offers))
    if not candidates:
        raise NoChannelAvailable(
            f"every channel serving {request.model!r} is disabled or cooling down: retry later"
        )
    request.conversation = _decoded(request, candidates, body)
    request.user_id = admission.key.user_id
    request.prompt_tokens = fmt.prompt_tokens(body)
    ask = _sizing_request(request, offers, admission, body, candidates[0])
    request.lease = await _take_limits(request, admission, ask)
    try:
        relayed = await _reserve_and_relay(request, admission, ask, candidates, body, prepared)
    except BaseException:
        await asyncio.shield(_end_lease(request))
        raise
    if not isinstance(relayed, RelayedStream):  # a stream ends its lease as it ends
        await _end_lease(request)
    return relayed


async def _reserve_and_relay(
    request: _Request,
    admission: keys.Admission,
    ask: sizing.SizingRequest,
    candidates: list[Candidate],
    body: Any,
    prepared: Prepared,
) -> Relayed | RelayedStream:
    await _reserve(request, admission, ask, candidates[0])
    # Until the answer (or its stream) starts, the reservation is kept alive: an upstream
    # that thinks longer than the reservation TTL must not look like a dead instance.
    waiting = _Progress(request, None)
    try:
        try:
            reply, attempt = await _first_answer(request, candidates, body, prepared)
        except asyncio.CancelledError:
            await asyncio.shield(_settle(request, _left_outcome(request, prepared.stream)))
            raise
        except BaseException as exc:
            await _settle(request, _refused_outcome(request, exc, prepared))
            raise
        fmt = request.format
        if prepared.stream and (fmt.tracker is not None or attempt.conversion is not None):
            tracker = _tracker(request, attempt, prepared)
            media = "application/json" if not request.client.sse else "text/event-stream"
            chunks = _stream(request, reply, tracker)
            return RelayedStream(reply.status, chunks, request.headers, media)
        return await _whole_answer(request, reply, attempt)
    finally:
        waiting.close()


def _serving(request: _Request, offers: Offers) -> list[Candidate]:
    """The channels serving the request's model for its format, in the order to try them."""
    fmt = request.format
    candidates = offers.candidates(request.model, fmt.name, request.relay.runtime)
    if not fmt.convertible:
        candidates = [c for c in candidates if c.provider.serves_natively(fmt.name)]
    if not candidates:
        raise NotFound(f"model {request.model!r} is not offered for {fmt.name}")
    return candidates


async def usable(relay: Relay, candidates: list[Candidate]) -> list[Candidate]:
    """The candidates in rotation (SPEC §12): disabled and cooling channels left out, all of
    them, even when none is left (a request never goes to a disabled channel)."""
    await relay.health.refresh()
    return relay.health.usable_of(candidates, _channel_id)


def _channel_id(candidate: Candidate) -> int:
    return candidate.id


async def _take_limits(
    request: _Request, admission: keys.Admission, ask: sizing.SizingRequest
) -> Lease:
    """The request's hold on its key's, account's and group's limits (one round trip with
    Redis); `RateLimited` when one is over. TPM is taken on the prompt estimate plus the
    output cap in effect, and corrected at settlement."""
    relay = request.relay
    estimate = request.prompt_tokens + ask.cap_in_effect * ask.choices
    spec = await rates.spec_for(admission, request.model, estimate, relay.group_rates)
    return _held(await relay.limits.admit(spec))


async def admit_count_tokens(relay: Relay, admission: keys.Admission) -> None:
    """`count_tokens`' own per-key bucket (it counts toward no other limit)."""
    _held(await relay.limits.admit_count_tokens(admission.key.id))


def _held(taken: Lease | Refusal) -> Lease:
    if isinstance(taken, Refusal):
        raise RateLimited(taken.message, taken.retry_after, taken.status)
    return taken


async def _end_lease(request: _Request) -> None:
    """The request is over: a TPM it never settled used nothing (refused, failed before
    any answer), and its concurrency slots are free."""
    lease = request.lease
    if lease is not None:
        await lease.settle(0)
        await lease.release()


def _decoded(request: _Request, candidates: list[Candidate], body: Any) -> ir.Conversation | None:
    """The request in the conversation shape when a candidate needs it converted: decoded
    once, before anything is reserved, so that a request no conversion can carry is a 400."""
    for candidate in candidates:
        if candidate.provider.serves_natively(request.format.name):
            continue
        conversion = conversions.conversion(request.format.name, candidate.format)
        if conversion is not None:
            return conversion.decode(body)
    return None


def _model_of(client: ClientRequest, body: Any) -> str:
    if client.path_model is not None:
        return client.path_model
    model = body.get("model") if isinstance(body, dict) else None
    return str(model)


def key_digest(client: ClientRequest) -> str:
    if not client.api_key:
        raise AuthenticationFailed("missing API key: send Authorization: Bearer sk-ql-...")
    return keys.key_digest(client.api_key.strip())


def client_body(client: ClientRequest) -> Any:
    try:
        return orjson.loads(client.body)
    except orjson.JSONDecodeError:
        raise InvalidRequest("the body is not valid JSON") from None


async def admit(
    relay: Relay, client: ClientRequest, digest: str, offers: Offers, model: str | None
) -> keys.Admission:
    return await keys.admit_async(
        relay.database, digest, client.client_address, model, offers.models
    )


def _sizing_request(
    request: _Request,
    offers: Offers,
    admission: keys.Admission,
    body: Any,
    likeliest: Candidate,
) -> sizing.SizingRequest:
    """What the reservation's size depends on (`billing.sizing`), at the cache prices of the
    channel likeliest to serve the request."""
    fmt, relay = request.format, request.relay
    price = offers.prices[request.model]
    fields = body if isinstance(body, dict) else {}
    client_cap = fmt.client_cap(fields)
    prompt_tokens = fmt.reserved_prompt_tokens(request.prompt_tokens)
    request.breakpoints = fmt.cache_breakpoints(fields)
    warm = relay.runtime.warm_prefixes.warm_tokens(request.breakpoints, prompt_tokens)
    return sizing.SizingRequest(
        price=price,
        ratio=offers.ratio(admission.group),
        price_format=likeliest.format,
        prompt_tokens=prompt_tokens,
        client_cap=client_cap if isinstance(client_cap, int) and client_cap > 0 else None,
        model_max=pricing.max_output_tokens(price, request.model),
        choices=fmt.choices(fields),
        min_output=relay.settings.relay_min_output_tokens,
        thinking_budget=fmt.thinking_budget(fields),
        warm_prompt_tokens=warm,
    )


async def _reserve(
    request: _Request, admission: keys.Admission, ask: sizing.SizingRequest, likeliest: Candidate
) -> None:
    """Reserve the request's most expensive outcome (`billing.sizing`, SPEC §8b): the prompt
    estimate with its margin plus the output cap in effect (the client's, else the model's
    maximum). When the balance covers less, the cap is lowered to what it covers (and sent
    upstream); refused (402) only below the prompt plus `QUOTALEDGER_RELAY_MIN_OUTPUT_TOKENS`."""
    plan = sizing.size(ask)
    try:
        reserved = await _reserve_sized(request, admission, plan, likeliest)
    except InsufficientQuota as exc:
        raise OutOfMoney(exc, _shortfall(exc, ask)) from None
    request.relay.hooks.reserved()
    # Usually the whole plan was reserved, and it is the sizing; else sized anew within it.
    covered = reserved.amount
    request.sized = plan if covered >= plan.amount else sizing.size(ask, covered=covered)
    request.output_cap = sizing.upstream_cap(ask, request.sized)
    request.choices = ask.choices


async def _reserve_sized(
    request: _Request, admission: keys.Admission, plan: sizing.Sizing, likeliest: Candidate
) -> reservations.Reservation:
    relay = request.relay
    return await reservations.reserve_async(
        relay.database,
        reservations.ReserveRequest(
            request.request_id,
            user_id=admission.key.user_id,
            key_id=admission.key.id,
            model=request.model,
            group=admission.group,
            amount=plan.amount,
            minimum=plan.floor,
            price_format=likeliest.format,
        ),
        alone=_alone(request),
    )


class OutOfMoney(InsufficientQuota):
    """The balance cannot cover the prompt and the minimum output: refused with the
    relay's honest message in the client's format (`wire.refusals`)."""

    def __init__(self, cause: InsufficientQuota, shortfall: refusals.Shortfall) -> None:
        super().__init__(cause.cost, cause.available, cause.funding)
        self.shortfall = shortfall


def _shortfall(exc: InsufficientQuota, ask: sizing.SizingRequest) -> refusals.Shortfall:
    covered = pricing.affordable_output_tokens(
        ask.price, ask.prompt_tokens, exc.available, ask.ratio, ask.price_format,
        ask.warm_prompt_tokens,
    )  # fmt: skip
    fitting = None if not covered else covered // max(1, ask.choices)
    return refusals.Shortfall(
        needed=exc.cost,
        available=exc.available,
        funding=exc.funding,
        fitting_cap=fitting,
        minimum_output=ask.least_output,
    )


async def _first_answer(
    request: _Request, candidates: list[Candidate], body: Any, prepared: Prepared
) -> tuple[Reply, _Attempt]:
    """The first 2xx answer of the candidate channels, tried in order, at most
    `QUOTALEDGER_RELAY_RETRIES` + 1 of them; the last failure when none answers."""
    relay = request.relay
    attempts = candidates[: relay.settings.relay_retries + 1]
    failure: UpstreamFailure | None = None
    for candidate in attempts:
        attempt = _attempt(request, candidate, body, prepared)
        started = time.monotonic()
        try:
            reply = await _open(request, attempt, prepared.stream)
        except UpstreamFailure as exc:
            failure = exc if attempt.conversion is None else _converted_failure(attempt, exc)
            verdict = await _failed_before_answer(request, candidate, started, exc)
            log.warning(
                "relay %s: channel %s failed before the first byte (%s)",
                request.request_id,
                candidate.name,
                exc.reason,
            )
            # A channel's own dead credential or empty account says nothing of the request:
            # the next channel may serve it.
            if not exc.retryable and verdict.kind != health.FATAL:
                break
            continue
        request.candidate, request.conversion = candidate, attempt.conversion
        request.dropped = attempt.dropped
        request.attempt_started, request.first_byte = started, time.monotonic()
        return reply, attempt
    assert failure is not None
    raise failure


# ---------------------------------------------------------------- channel health


async def _failed_before_answer(
    request: _Request, candidate: Candidate, started: float, exc: UpstreamFailure
) -> health.Verdict:
    detail = exc.body[:2048].decode("utf-8", "replace")
    error = None if exc.status is not None else ("timeout" if exc.timed_out else exc.reason)
    return await _channel_failed(request, candidate, started, exc.status, detail, error)


async def _channel_failed(
    request: _Request,
    candidate: Candidate,
    started: float,
    status: int | None,
    detail: str = "",
    error: str | None = None,
) -> health.Verdict:
    """An attempt failed: told to the metrics and to the channel's health (which disables
    or cools the channel down by the failure's kind)."""
    request.relay.hooks.attempted(candidate.name, status, _ms_since(started), None)
    try:
        return await request.relay.health.failed(candidate.id, status, detail, error)
    except Exception:  # the health record never fails the request
        log.exception("relay %s: recording channel %s's failure failed", request.request_id,
                      candidate.name)  # fmt: skip
        return health.classify(status, detail, error)


# How an answer that began ended, when the channel broke it (SPEC §12: transient failures).
_BROKEN = {
    "upstream_failed": "the answer broke off",
    "idle_timeout": "timeout",
    "upstream_ended_early": "the answer ended early",
}


async def _attempt_ended(request: _Request, end: str, status: int) -> None:
    """The answering channel's attempt ended `end`: a broken answer is a failure of the
    channel; a client who left judges nothing of its health."""
    candidate, started = request.candidate, request.attempt_started
    if candidate is None or started is None:
        return
    if end in _BROKEN:
        await _channel_failed(request, candidate, started, None, error=_BROKEN[end])
        return
    latency = _ms_since(started)
    ttft = None if request.first_byte is None else (request.first_byte - started) * 1000
    request.relay.hooks.attempted(candidate.name, status, latency, ttft)
    if end == "client_disconnected":
        return
    try:
        await request.relay.health.answered(candidate.id, latency)
    except Exception:
        log.exception("relay %s: recording channel %s's answer failed", request.request_id,
                      candidate.name)  # fmt: skip


def _ms_since(started: float) -> float:
    return (time.monotonic() - started) * 1000


def _attempt(request: _Request, candidate: Candidate, body: Any, prepared: Prepared) -> _Attempt:
    """What goes to `candidate`: the prepared body as received (model renamed) to a channel
    that speaks the client's format, else the request converted for it."""
    upstream_model = candidate.upstream_model(request.model)
    sized = request.sized
    if candidate.provider.serves_natively(request.format.name):
        native = request.format.addressed(prepared.body, upstream_model)
        if sized is not None and sized.cap_sent is not None:
            lowered = Capped(
                sized.cap_sent, upstream_model, sized.thinking_budget, sized.thinking_off
            )
            native = request.format.capped(native, lowered)
        return _Attempt(candidate, native, None)
    conversion = conversions.conversion(request.format.name, candidate.format)
    assert conversion is not None and request.conversation is not None  # see _decoded
    # A lowered cap replaces the client's; with none from the client the model's maximum
    # goes, for the formats that require a cap (Anthropic's).
    lowered_cap = sized.cap_sent if sized is not None else None
    upstream, dropped = conversion.encode(
        request.conversation,
        model=upstream_model,
        output_cap=lowered_cap or request.output_cap,
        lowered=lowered_cap is not None,
    )
    return _Attempt(candidate, upstream, conversion, tuple(dropped))


async def _open(request: _Request, attempt: _Attempt, stream: bool) -> Reply:
    candidate = attempt.candidate
    provider = candidate.provider
    if attempt.conversion is None:
        operation = request.format.name
        url = candidate.url(operation, candidate.upstream_model(request.model), stream=stream)
        if request.client.beta and provider.name == "anthropic":
            url += "?beta=true"
    else:
        operation = provider.converted_operation
        url = candidate.url(operation, candidate.upstream_model(request.model), stream=stream)
    headers = provider.headers(request.client.headers)
    headers.append(("content-type", "application/json"))
    body = attempt.body
    if provider.name == "gemini":  # Gemini's model and streaming are in the URL
        body = {k: v for k, v in body.items() if k not in _IN_GEMINI_URL}
    return await request.relay.runtime.upstream.open(
        candidate.target, url, headers, orjson.dumps(body)
    )


_IN_GEMINI_URL = frozenset({"model", "stream"})


def _converted_failure(attempt: _Attempt, exc: UpstreamFailure) -> UpstreamFailure:
    """An upstream's error from a converted call, rewritten in the client's error shape with
    its status kept (the client's SDK must read it)."""
    assert attempt.conversion is not None
    status = exc.status or 502
    body = attempt.conversion.error(status, exc.body) if exc.status else b""
    kept = tuple((k, v) for k, v in exc.headers if k.lower() == "retry-after")
    return UpstreamFailure(
        exc.reason,
        status=exc.status,
        body=body,
        headers=(*kept, ("content-type", "application/json")),
        retryable=exc.retryable,
        timed_out=exc.timed_out,
    )


def _tracker(request: _Request, attempt: _Attempt, prepared: Prepared) -> Tracker:
    if attempt.conversion is not None:
        usage = request.conversation is not None and request.conversation.stream_usage
        return attempt.conversion.stream(
            prompt_tokens=request.prompt_tokens, sse=request.client.sse, usage=usage
        )
    assert request.format.tracker is not None
    return request.format.tracker(prepared, request.prompt_tokens)


async def _whole_answer(request: _Request, reply: Reply, attempt: _Attempt) -> Relayed:
    try:
        raw = await reply.read(MAX_ANSWER_BYTES)
    except asyncio.CancelledError:
        reply.close()  # the upstream sees the call cancelled
        await asyncio.shield(_settle(request, _left_outcome(request, False)))
        raise
    except (aiohttp.ClientError, TimeoutError, UpstreamFailure) as exc:
        reply.close()
        await _failed_answer(request, reply.status)
        raise UpstreamFailure(f"upstream failed while answering ({type(exc).__name__})") from None
    reply.release()
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        answer = None
    if attempt.conversion is not None:
        try:
            raw, usage = _converted_answer(request, attempt.conversion, answer)
        except UpstreamFailure:
            await _failed_answer(request, reply.status)
            raise
    else:
        usage = request.format.answer_usage(answer, request.prompt_tokens)
    await _settle(request, _outcome(request, reply.status, usage, "completed", stream=False))
    await _attempt_ended(request, "completed", reply.status)
    return Relayed(reply.status, raw, request.headers)


async def _failed_answer(request: _Request, status: int) -> None:
    """A whole answer that could not be read: nothing is charged, the channel failed."""
    await _settle(request, _outcome(request, 502, None, "upstream_failed"))
    await _attempt_ended(request, "upstream_failed", status)


def _converted_answer(
    request: _Request, conversion: conversions.Conversion, answer: Any
) -> tuple[bytes, TokenUsage]:
    if answer is None:
        raise UpstreamFailure("the upstream's answer is not JSON", status=502, retryable=False)
    try:
        raw, converted = conversion.answer(answer)
    except (InvalidRequest, ValueError, TypeError, KeyError) as exc:
        raise UpstreamFailure(
            f"the upstream's answer could not be read ({type(exc).__name__})", retryable=False
        ) from None
    usage = converted.usage
    if usage is None:  # none reported, or none believable: counted over what it said
        output = [
            p.text if isinstance(p, ir.Text | ir.Reasoning) else p.arguments
            for p in converted.parts
        ]
        reasoning = [p.text for p in converted.parts if isinstance(p, ir.Reasoning)]
        usage = local_usage(request.prompt_tokens, output, reasoning)
    return raw, usage


async def _stream(request: _Request, reply: Reply, tracker: Tracker) -> AsyncIterator[bytes]:
    """The upstream's events, passed on as they come; settled once the stream ends, how
    ever it ends (the client leaving cancels this generator: the upstream is closed)."""
    end = "completed"
    parser = SSEParser()
    progress = _Progress(request, tracker)
    recorded = False  # the first delivered content is recorded at once (then every beat)
    try:
        try:
            async for chunk in reply.chunks():
                events = parser.feed(chunk)
                if events:
                    reply.progressed()  # bytes without a whole event are still idle
                    # The events that came in one read go out in one write (one send, one
                    # syscall): they were ready at the same time, none is held back.
                    out = b"".join([tracker.relay(event) for event in events])
                    if out:
                        yield out
                    if not recorded and tracker.delivered:
                        # A stream shorter than a beat whose instance dies is then swept
                        # at what it had delivered, not at nothing.
                        recorded = True
                        progress.beat_now()
                if len(parser.pending) > MAX_EVENT_BYTES:
                    raise _EventTooLarge
            tail = tracker.finish()
            if tail:
                end = "upstream_ended_early"
        except TimeoutError:
            end = "idle_timeout"
            idle = request.relay.settings.relay_stream_idle_timeout
            tail = tracker.fail(f"the upstream sent nothing for {idle} s")
        except aiohttp.ClientError:
            end = "upstream_failed"
            tail = tracker.fail("the upstream connection failed mid-stream")
        except _EventTooLarge:
            end = "upstream_failed"
            tail = tracker.fail(f"the upstream sent an event over {MAX_EVENT_BYTES} bytes")
        if tail:
            yield tail
    except (GeneratorExit, asyncio.CancelledError):
        end = "client_disconnected"
        raise
    finally:
        reply.close()  # the upstream sees the request cancelled if it was still going
        progress.close()
        await asyncio.shield(_stream_ended(request, tracker, end, reply.status))


_NOTHING_YET = TokenUsage()


class _EventTooLarge(Exception):
    """An upstream event went past `MAX_EVENT_BYTES` without ending."""


class _Progress:
    """A request's heartbeat: every `PROGRESS_SECONDS` (at least three times per reservation
    TTL) its usage so far is recorded, in the background, never holding an event back. The
    sweeper then settles a dead instance's stream to what it had delivered, and never sweeps
    a live request, however long its upstream stays silent; its concurrency lease is renewed
    on the same beat (often enough for the lease's TTL). Without a `tracker` (waiting for
    the upstream's answer) nothing was delivered yet: the beat records none."""

    def __init__(self, request: _Request, tracker: Tracker | None) -> None:
        self.request, self.tracker = request, tracker
        ttl = request.relay.settings.relay_reservation_ttl
        self.every = min(PROGRESS_SECONDS, ttl / 3)
        lease = request.lease
        if lease is not None and lease.renew_every is not None:
            self.every = min(self.every, lease.renew_every)  # its slots outlive no beat
        # A timer, not a sleeping task: most streams end before their first beat, and a
        # task to create, cancel and await cost every stream's start and end far more.
        self.loop = asyncio.get_running_loop()
        self.timer = self.loop.call_later(self.every, self._due)
        self.task: asyncio.Future[None] | None = None
        self.closed = False

    def _due(self) -> None:
        self.task = asyncio.ensure_future(self._beat())

    def beat_now(self) -> None:
        """Record the progress now (in the background), then every `every` seconds."""
        if self.closed or (self.task is not None and not self.task.done()):
            return
        self.timer.cancel()
        self._due()

    async def _beat(self) -> None:
        tracker, lease = self.tracker, self.request.lease
        if lease is not None:
            await lease.renew()  # a lost renewal is logged there, never raised
        usage = _NOTHING_YET if tracker is None else tracker.usage()
        try:
            await reservations.record_progress_async(
                self.request.relay.database,
                self.request.request_id,
                usage,
                None if tracker is None else 200,
            )
        except Exception:  # the next beat tries again; the settle does not depend on it
            log.warning("relay %s: recording progress failed", self.request.request_id)
        if not self.closed:
            self.timer = self.loop.call_later(self.every, self._due)

    def close(self) -> None:
        # Not awaited: it runs in the `finally` of a stream its client may have left, and
        # an await there could take a second cancellation before the settlement starts (a
        # beat still running after the settle finds the reservation gone and writes nothing).
        self.closed = True
        self.timer.cancel()
        if self.task is not None:
            self.task.cancel()


async def _stream_ended(request: _Request, tracker: Tracker, end: str, status: int) -> None:
    await _settle_stream(request, tracker, end, status)
    await _attempt_ended(request, end, status)
    await _end_lease(request)


async def _settle_stream(request: _Request, tracker: Tracker, end: str, status: int) -> None:
    """The row records `status`, the one the client got in the stream's head (issue 26: a
    stream cut before content was logged 502)."""
    delivered = tracker.delivered
    if end in ("upstream_failed", "idle_timeout", "upstream_ended_early") and not delivered:
        # Nothing reached the client: nothing is charged (SPEC §8, failures).
        outcome = _outcome(request, status, None, end)
        await _settle(request, dataclasses.replace(outcome, nothing_delivered=True))
        return
    local = getattr(tracker, "local_usage", None)
    await _settle(request, _outcome(request, status, tracker.usage(), end, local=local))


def _judged(
    request: _Request, usage: TokenUsage | None, local: Any = None, *, delivered: bool = True
) -> tuple[TokenUsage | None, str | None]:
    """The usage to charge and the log row's note (`billing.believable`, SPEC §8b): an
    upstream's report above the cap it worked under, or with a prompt under half the local
    estimate, is not believed."""
    if usage is None:
        return None, None
    reported = usage if usage.source is UsageSource.UPSTREAM else None
    counted = local if callable(local) else (lambda: usage)
    bounds = believable.Bounds(request.output_cap, request.choices, request.prompt_tokens)
    judged = believable.judge(reported, bounds, counted, delivered=delivered)
    note = None if reported is None and judged.note == "usage_missing" else judged.note
    return judged.usage, note


def _outcome(
    request: _Request,
    status: int,
    usage: TokenUsage | None,
    end: str,
    *,
    stream: bool = True,
    local: Any = None,
) -> settlement.Outcome:
    usage, note = _judged(request, usage, local) if request.output_cap else (usage, None)
    candidate = request.candidate
    ttft = None if request.first_byte is None else request.elapsed_ms(request.first_byte)
    return settlement.Outcome(
        status=status,
        usage=usage,
        end_reason=end,
        upstream_model=candidate.upstream_model(request.model) if candidate else None,
        channel=candidate.name if candidate else None,
        is_stream=stream,
        latency_ms=request.elapsed_ms(),
        ttft_ms=ttft,
        session_id=request.client.header("x-claude-code-session-id"),
        client_format=request.format.name,
        channel_format=candidate.format if candidate else None,
        dropped=",".join(request.dropped) or None,
        usage_note=note,
    )


def _left_outcome(request: _Request, stream: bool) -> settlement.Outcome:
    """The client left before its answer (SPEC §8b): the upstream call is cancelled and the
    prompt charged, as an upstream bills a cancelled call; 499 on the log row."""
    outcome = _outcome(request, 499, None, "client_disconnected", stream=stream)
    prompt = TokenUsage(input=request.prompt_tokens, source=UsageSource.LOCAL)
    return dataclasses.replace(outcome, usage=prompt)


def refused_status(exc: BaseException, fmt: Format) -> int:
    """The status the client is told when every channel failed before the first byte: the
    upstream's own, passed on unmodified where the client's tools match on its wording
    (`passes_through`), else 504 for a timeout and 502 for the rest."""
    if isinstance(exc, UpstreamFailure):
        if passes_through(exc, fmt) and exc.status is not None:
            return exc.status
        return 504 if exc.timed_out else 502
    return 502


def passes_through(exc: UpstreamFailure, fmt: Format) -> bool:
    """Whether an upstream's error goes to the client as it came: Anthropic's always (agents
    match on its wording; 529 included), any non-retryable 4xx about the request itself. A
    channel's own credentials refused (401/403) are ours to hide: the client's key is fine."""
    status = exc.status
    if status is None or status in (401, 403) or not exc.body:
        return False
    return fmt.wire is WireFormat.ANTHROPIC or (status < 500 and not exc.retryable)


def _refused_outcome(
    request: _Request, exc: BaseException, prepared: Prepared
) -> settlement.Outcome:
    # The row records what the client saw.
    status = refused_status(exc, request.format)
    return settlement.Outcome(
        status=status,
        end_reason="upstream_refused",
        is_stream=prepared.stream,
        client_format=request.format.name,
    )


async def _settle(request: _Request, outcome: settlement.Outcome) -> None:
    if request.settled:
        return
    request.settled = True
    relay = request.relay
    relay.runtime.warm_prefixes.answered(request.breakpoints, outcome.usage)
    if request.lease is not None:  # TPM counts what was used, as the ledger does
        await request.lease.settle(outcome.usage.total_tokens if outcome.usage else 0)
    try:
        settled = await settlement.settle_async(
            relay.database, request.request_id, request.user_id, outcome, alone=_alone(request)
        )
    except Exception:
        log.exception("relay %s: settling failed; trying again", request.request_id)
        task = asyncio.ensure_future(_settle_later(request, outcome))
        _retrying.add(task)  # held here: the loop keeps only weak references to tasks
        task.add_done_callback(_retrying.discard)
        return
    relay.hooks.settled(request.model, outcome, settled)


_retrying: set[asyncio.Task[None]] = set()
RETRY_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)  # then every 15 s, for one reservation TTL


async def _settle_later(request: _Request, outcome: settlement.Outcome) -> None:
    """A settlement that failed (the database away, a connection cut), tried again in the
    background. Each attempt first records the answer's usage as the reservation's progress:
    should this instance give up or die, the sweeper then charges what was delivered rather
    than releasing it. Ends when it went through (or a sweeper settled it: a replay)."""
    relay = request.relay
    database, request_id = relay.database, request.request_id
    deadline = time.monotonic() + relay.settings.relay_reservation_ttl
    attempt = 0
    while True:
        await asyncio.sleep(RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)])
        attempt += 1
        try:
            if outcome.usage is not None and outcome.status is not None:
                await reservations.record_progress_async(
                    database, request_id, outcome.usage, outcome.status
                )
            settled = await settlement.settle_async(database, request_id, request.user_id, outcome)
        except NotFound:  # neither open nor settled: nothing is left to do
            return
        except Exception:
            if time.monotonic() < deadline:
                continue
            log.error("relay %s: settling failed for good; the sweeper will", request_id)
            return
        log.warning("relay %s: settled at attempt %d", request_id, attempt + 1)
        relay.hooks.settled(request.model, outcome, settled)
        return


# ---------------------------------------------------------------- request ids


class _RequestIds:
    """`req_` + 24 hex digits: 16 drawn at random once per process (and again after 2**32
    ids, or in a forked child), then a counter. Unique without a system call per request;
    a request id is a name (the reservation's key, `X-Request-Id`), never a secret."""

    def __init__(self) -> None:
        self._pid = 0
        self._prefix = ""
        self._next: Iterator[int] = iter(())

    def new(self) -> str:
        n = next(self._next, None)
        if n is None or self._pid != os.getpid():
            self._pid, self._prefix = os.getpid(), "req_" + os.urandom(8).hex()
            self._next = iter(range(2**32))
            n = next(self._next)
        return f"{self._prefix}{n:08x}"


new_request_id = _RequestIds().new
