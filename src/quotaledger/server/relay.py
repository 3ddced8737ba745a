"""The relay's endpoints (SPEC §8, §8a): `POST /v1/chat/completions`, `/v1/embeddings`,
`/v1/responses`, `/v1/messages`, and `/v1/messages/count_tokens`, `GET /v1/models`.

Every relayed request takes the same steps, whatever its wire format (`relay.formats`):

1. the key is admitted (`keys.admit`: unknown, disabled, expired, network, model...);
2. the prompt is estimated locally and the request's most expensive outcome is reserved
   (`reservations.reserve`): the prompt estimate with a margin plus the output cap, the
   client's or ours (`QUOTALEDGER_RELAY_DEFAULT_MAX_TOKENS`, lowered to what the balance
   covers); nothing goes upstream unless that reservation holds;
3. the channels serving the model are tried in order (priority, then weighted random) until
   one answers 2xx; a failure before the first byte moves on to the next;
4. the answer is passed on (a stream event by event, as it arrives) while its usage is read;
5. the reservation is settled exactly once with the actual usage (`settlement.settle`),
   whatever happened: answered, failed mid-way, client gone, idle upstream. A request whose
   instance died is settled by the sweeper instead.

Refusals of our own are written in the format the client's SDK reads (OpenAI's error object,
Anthropic's under `/v1/messages`); every answer carries `X-Request-Id`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from quotaledger.billing import pricing, reservations, settlement
from quotaledger.errors import AuthenticationFailed, InvalidInput, NotFound
from quotaledger.identity import keys
from quotaledger.server.calls import Answer, Call, Headers, Stream
from quotaledger.server.errors import HTTPError, refusal
from quotaledger.server.offers import Candidate, Offers
from quotaledger.server.upstream import Reply, UpstreamFailure
from quotaledger.token_usage import TokenUsage
from quotaledger.wire import anthropic_messages
from quotaledger.wire.errors import InvalidRequest, WireFormat, error_body
from quotaledger.wire.formats import (
    CHAT,
    EMBEDDINGS,
    MESSAGES,
    RESPONSES,
    Format,
    Prepared,
    Tracker,
)
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
# Headers of the client's that go upstream (everything else stays here: its credential
# above all). The channel adds its own credential.
FORWARDED_HEADERS = frozenset({"anthropic-version", "anthropic-beta", "openai-beta"})
ANTHROPIC_VERSION = "2023-06-01"  # sent when the client named none


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
    anthropic channel serving the model, else counted here."""
    request_id = _new_request_id()
    try:
        digest = _digest(call)
        body = _json(call.body)
        model = body.get("model") if isinstance(body, dict) else None
        offers = await call.services.relay.offers.get()
        await _admit(call, digest, offers, model if isinstance(model, str) else None)
        for candidate in offers.candidates(str(model), "anthropic", call.services.relay):
            try:
                reply = await _open(call, candidate, "/v1/messages/count_tokens", body)
            except UpstreamFailure:
                continue
            answer = await reply.read(MAX_ANSWER_BYTES)
            reply.release()
            return Answer(200, answer, _id_header(request_id))
        return Answer(200, anthropic_messages.count_tokens_answer(body), _id_header(request_id))
    except Exception as exc:
        return _refused(exc, WireFormat.ANTHROPIC, request_id)


async def models(call: Call) -> Answer | Stream:
    """The models offered and allowed to this key: OpenAI's list, or Anthropic's when the
    request carries `anthropic-version`."""
    request_id = _new_request_id()
    anthropic = _header(call, b"anthropic-version") is not None
    wire = WireFormat.ANTHROPIC if anthropic else WireFormat.OPENAI
    try:
        digest = _digest(call)
        offers = await call.services.relay.offers.get()
        admission = await _admit(call, digest, offers, None)
        names = keys.allowed_models(admission.key, offers.models)
        return Answer(200, _model_list(names, anthropic), _id_header(request_id))
    except Exception as exc:
        return _refused(exc, wire, request_id)


def _model_list(names: list[str], anthropic: bool) -> bytes:
    if anthropic:
        data = [
            {
                "type": "model",
                "id": name,
                "display_name": name,
                "created_at": "1970-01-01T00:00:00Z",
            }
            for name in names
        ]
        first, last = (names[0], names[-1]) if names else (None, None)
        page = {"data": data, "has_more": False, "first_id": first, "last_id": last}
        return orjson.dumps(page)
    listed = [{"id": n, "object": "model", "created": 0, "owned_by": "quotaledger"} for n in names]
    return orjson.dumps({"object": "list", "data": listed})


# ---------------------------------------------------------------- one relayed request


@dataclass
class _Request:
    """One relayed request on its way: what the steps learn and the settlement needs."""

    call: Call
    format: Format
    request_id: str
    started: float = field(default_factory=time.monotonic)
    user_id: int = 0
    model: str = ""
    prompt_tokens: int = 0
    candidate: Candidate | None = None
    first_byte: float | None = None
    settled: bool = False
    counted: bool = False  # in `_in_flight` (until the answer, or the start of a stream)

    @property
    def headers(self) -> Headers:
        return _id_header(self.request_id)

    def elapsed_ms(self, since: float | None = None) -> int:
        return int(((since or time.monotonic()) - self.started) * 1000)


# Relayed requests of this process between their start and their answer (or the start of
# their stream): with one alone, its reservation and settlement commit right on the event
# loop (`Database.group_commit(alone=True)`) instead of through the group-commit thread.
# A stream's settlement, after its start, always goes through the thread.
_in_flight = 0


def _alone(request: _Request) -> bool:
    return request.counted and _in_flight == 1


async def _relay(call: Call, fmt: Format) -> Answer | Stream:
    global _in_flight
    request = _Request(call, fmt, _new_request_id(), counted=True)
    _in_flight += 1
    try:
        return await _relay_admitted(request)
    except Exception as exc:
        return _refused(exc, fmt.wire, request.request_id)
    finally:
        _in_flight -= 1
        request.counted = False


async def _relay_admitted(request: _Request) -> Answer | Stream:
    call, fmt = request.call, request.format
    digest = _digest(call)  # a missing or malformed key: 401 before anything else
    body = _json(call.body)
    model = body.get("model") if isinstance(body, dict) else None
    prepared = fmt.prepare(body, call.services.settings.relay_default_max_tokens)
    request.model = str(model)
    offers = await call.services.relay.offers.get()
    admission = await _admit(call, digest, offers, request.model)
    candidates = offers.candidates(request.model, fmt.channel_format, call.services.relay)
    if not candidates:
        raise NotFound(f"model {request.model!r} is not offered on {fmt.path}")
    await _limit(call, admission.key.id)
    request.user_id = admission.key.user_id
    request.prompt_tokens = fmt.prompt_tokens(body)
    prepared = await _reserve(request, offers, admission, body, prepared)
    # Until the answer (or its stream) starts, the reservation is kept alive: an upstream
    # that thinks longer than the reservation TTL must not look like a dead instance.
    waiting = _Progress(request, None)
    try:
        try:
            reply = await _first_answer(request, candidates, prepared)
        except BaseException as exc:
            await _settle(request, _refused_outcome(exc, prepared))
            raise
        if prepared.stream and fmt.tracker is not None:
            tracker = fmt.tracker(prepared, request.prompt_tokens)
            return Stream(reply.status, _stream(request, reply, tracker), headers=request.headers)
        return await _whole_answer(request, reply, prepared)
    finally:
        waiting.close()


def _digest(call: Call) -> str:
    return keys.key_digest(_api_key(call))


async def _admit(call: Call, digest: str, offers: Offers, model: str | None) -> keys.Admission:
    return await keys.admit_async(
        call.services.database, digest, call.client_address(), model, offers.models
    )


async def _limit(call: Call, key_id: int) -> None:
    decision = await call.services.limiter.hit("relay", f"key:{key_id}")
    if decision is not None and not decision.allowed:
        message = f"rate limit reached for this API key: retry in {max(decision.reset_after, 1)} s"
        raise HTTPError(429, message, decision.headers())


async def _reserve(
    request: _Request,
    offers: Offers,
    admission: keys.Admission,
    body: Any,
    prepared: Prepared,
) -> Prepared:
    """Reserve the request's most expensive outcome. When the relay chose the output cap
    (the client set none) and the balance covers less, the cap is lowered to what it
    covers, down to `MIN_OUTPUT_TOKENS`; the client's own cap is never lowered."""
    fmt = request.format
    price = offers.prices[request.model]
    ratio = offers.ratio(admission.group)
    prompt = fmt.reserved_prompt_tokens(request.prompt_tokens)
    output = prepared.reserved_output_tokens
    amount = pricing.reservation_cost(price, prompt, output, ratio, fmt.channel_format)
    lowerable = bool(getattr(prepared, "cap_set_by_relay", False))
    floor = amount
    if lowerable:
        choices = max(1, output // max(1, _cap(prepared)))
        least = MIN_OUTPUT_TOKENS * choices
        floor = pricing.reservation_cost(price, prompt, least, ratio, fmt.channel_format)
    reserved = await reservations.reserve_async(
        request.call.services.database,
        reservations.ReserveRequest(
            request.request_id,
            user_id=admission.key.user_id,
            key_id=admission.key.id,
            model=request.model,
            group=admission.group,
            amount=amount,
            minimum=floor,
            price_format=fmt.channel_format,
        ),
        alone=_alone(request),
    )
    request.call.services.metrics.open_reservations.inc()
    if reserved.amount >= amount:
        return prepared
    covered = pricing.affordable_output_tokens(
        price, prompt, reserved.amount, ratio, fmt.channel_format
    )
    choices = max(1, output // max(1, _cap(prepared)))
    cap = max(MIN_OUTPUT_TOKENS, (covered or 0) // choices)
    return fmt.prepare(body, cap)


def _cap(prepared: Prepared) -> int:
    return int(getattr(prepared, "output_cap", prepared.reserved_output_tokens) or 1)


async def _first_answer(
    request: _Request, candidates: list[Candidate], prepared: Prepared
) -> Reply:
    """The first 2xx answer of the candidate channels, tried in order, at most
    `QUOTALEDGER_RELAY_RETRIES` + 1 of them; the last failure when none answers."""
    relay = request.call.services.relay
    attempts = candidates[: request.call.services.settings.relay_retries + 1]
    failure: UpstreamFailure | None = None
    for candidate in attempts:
        body = {**prepared.body, "model": candidate.upstream_model(request.model)}
        try:
            reply = await _open(request.call, candidate, request.format.path, body)
        except UpstreamFailure as exc:
            failure = exc
            relay.cooldown.failed(candidate.name)
            log.warning(
                "relay %s: channel %s failed before the first byte (%s)",
                request.request_id,
                candidate.name,
                exc.reason,
            )
            if not exc.retryable:
                break
            continue
        relay.cooldown.succeeded(candidate.name)
        request.candidate = candidate
        request.first_byte = time.monotonic()
        return reply
    assert failure is not None
    raise failure


async def _open(call: Call, candidate: Candidate, path: str, body: Any) -> Reply:
    headers = _forwarded_headers(call)
    if candidate.format == "anthropic" and not any(k == "anthropic-version" for k, _ in headers):
        headers.append(("anthropic-version", ANTHROPIC_VERSION))
    headers.append(("content-type", "application/json"))
    query = call.scope.get("query_string", b"").decode("latin-1")
    return await call.services.relay.upstream.open(
        candidate.target, path, query, headers, orjson.dumps(body)
    )


async def _whole_answer(request: _Request, reply: Reply, prepared: Prepared) -> Answer:
    try:
        raw = await reply.read(MAX_ANSWER_BYTES)
    except (aiohttp.ClientError, TimeoutError, UpstreamFailure) as exc:
        reply.close()
        await _settle(request, _outcome(request, 502, None, "upstream_failed"))
        raise UpstreamFailure(f"upstream failed while answering ({type(exc).__name__})") from None
    reply.release()
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        answer = None
    usage = request.format.answer_usage(answer, request.prompt_tokens)
    await _settle(request, _outcome(request, reply.status, usage, "completed", stream=False))
    return Answer(reply.status, raw, request.headers)


async def _stream(request: _Request, reply: Reply, tracker: Tracker) -> AsyncIterator[bytes]:
    """The upstream's events, passed on as they come; settled once the stream ends, how
    ever it ends (the client leaving cancels this generator: the upstream is closed)."""
    end = "completed"
    parser = SSEParser()
    progress = _Progress(request, tracker)
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
                if len(parser.pending) > MAX_EVENT_BYTES:
                    raise _EventTooLarge
            tail = tracker.finish()
            if tail:
                end = "upstream_ended_early"
        except TimeoutError:
            end = "idle_timeout"
            idle = request.call.services.settings.relay_stream_idle_timeout
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
        await asyncio.shield(_settle_stream(request, tracker, end))


_NOTHING_YET = TokenUsage()


class _EventTooLarge(Exception):
    """An upstream event went past `MAX_EVENT_BYTES` without ending."""


class _Progress:
    """A request's heartbeat: every `PROGRESS_SECONDS` (at least three times per reservation
    TTL) its usage so far is recorded, in the background, never holding an event back. The
    sweeper then settles a dead instance's stream to what it had delivered, and never sweeps
    a live request, however long its upstream stays silent. Without a `tracker` (waiting for
    the upstream's answer) nothing was delivered yet: the beat records none."""

    def __init__(self, request: _Request, tracker: Tracker | None) -> None:
        self.request, self.tracker = request, tracker
        ttl = request.call.services.settings.relay_reservation_ttl
        self.every = min(PROGRESS_SECONDS, ttl / 3)
        # A timer, not a sleeping task: most streams end before their first beat, and a
        # task to create, cancel and await cost every stream's start and end far more.
        self.loop = asyncio.get_running_loop()
        self.timer = self.loop.call_later(self.every, self._due)
        self.task: asyncio.Future[None] | None = None
        self.closed = False

    def _due(self) -> None:
        self.task = asyncio.ensure_future(self._beat())

    async def _beat(self) -> None:
        tracker = self.tracker
        usage = _NOTHING_YET if tracker is None else tracker.usage()
        try:
            await reservations.record_progress_async(
                self.request.call.services.database,
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


async def _settle_stream(request: _Request, tracker: Tracker, end: str) -> None:
    delivered = tracker.delivered
    if end in ("upstream_failed", "idle_timeout", "upstream_ended_early") and not delivered:
        # Nothing reached the client: nothing is charged (SPEC §8, failures).
        await _settle(request, _outcome(request, 502, None, end))
        return
    await _settle(request, _outcome(request, 200, tracker.usage(), end))


def _outcome(
    request: _Request, status: int, usage: TokenUsage | None, end: str, *, stream: bool = True
) -> settlement.Outcome:
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
        session_id=_header(request.call, b"x-claude-code-session-id"),
    )


def _refused_outcome(exc: BaseException, prepared: Prepared) -> settlement.Outcome:
    status = exc.status if isinstance(exc, UpstreamFailure) and exc.status else 502
    return settlement.Outcome(
        status=status, end_reason="upstream_refused", is_stream=prepared.stream
    )


async def _settle(request: _Request, outcome: settlement.Outcome) -> None:
    if request.settled:
        return
    request.settled = True
    services = request.call.services
    try:
        settled = await settlement.settle_async(
            services.database, request.request_id, request.user_id, outcome, alone=_alone(request)
        )
    except Exception:
        log.exception("relay %s: settling failed; trying again", request.request_id)
        task = asyncio.ensure_future(_settle_later(request, outcome))
        _retrying.add(task)  # held here: the loop keeps only weak references to tasks
        task.add_done_callback(_retrying.discard)
        return
    _settled(request, outcome, settled)


def _settled(
    request: _Request, outcome: settlement.Outcome, settled: settlement.Settlement
) -> None:
    services = request.call.services
    services.metrics.open_reservations.dec()
    services.metrics.relay_settled(request.model, outcome, settled)
    services.alerts.settled(settled)  # a dict lookup unless a threshold is set


_retrying: set[asyncio.Task[None]] = set()
RETRY_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)  # then every 15 s, for one reservation TTL


async def _settle_later(request: _Request, outcome: settlement.Outcome) -> None:
    """A settlement that failed (the database away, a connection cut), tried again in the
    background. Each attempt first records the answer's usage as the reservation's progress:
    should this instance give up or die, the sweeper then charges what was delivered rather
    than releasing it. Ends when it went through (or a sweeper settled it: a replay)."""
    services = request.call.services
    database, request_id = services.database, request.request_id
    deadline = time.monotonic() + services.settings.relay_reservation_ttl
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
        _settled(request, outcome, settled)
        return


# ---------------------------------------------------------------- requests and refusals


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


_new_request_id = _RequestIds().new


def _id_header(request_id: str) -> Headers:
    return [(b"x-request-id", request_id.encode())]


def _header(call: Call, name: bytes) -> str | None:
    for key, value in call.scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _api_key(call: Call) -> str:
    """The key from `x-api-key` (Anthropic's SDK) or `Authorization: Bearer` (x-api-key
    wins, as SPEC §8a says)."""
    key = _header(call, b"x-api-key") or call.head.token
    if not key:
        raise AuthenticationFailed("missing API key: send Authorization: Bearer sk-ql-...")
    return key.strip()


def _forwarded_headers(call: Call) -> list[tuple[str, str]]:
    forwarded = []
    for key, value in call.scope["headers"]:
        name = key.decode("latin-1")
        if name in FORWARDED_HEADERS:
            forwarded.append((name, value.decode("latin-1")))
    return forwarded


def _json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidRequest("the body is not valid JSON") from None


def _refused(exc: BaseException, wire: WireFormat, request_id: str) -> Answer:
    """Our refusal in the client's format, or the upstream's own error passed through."""
    headers = _id_header(request_id)
    if isinstance(exc, UpstreamFailure):
        return _upstream_refusal(exc, wire, headers)
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


def _upstream_refusal(exc: UpstreamFailure, wire: WireFormat, headers: Headers) -> Answer:
    """Before any byte: an upstream's own error that no other channel could replace is passed
    on unmodified where the client's tools match on its wording (Anthropic's, and any
    non-retryable 4xx about the request itself); otherwise 502/504 of ours naming it."""
    if _passes_through(exc, wire):
        assert exc.status is not None
        kept = [(k.lower().encode(), v.encode()) for k, v in exc.headers if k.lower() in _KEPT]
        return Answer(exc.status, exc.body, [*headers, *kept])
    ours = 504 if exc.timed_out else 502
    named = f" (last upstream status {exc.status})" if exc.status else ""
    message = f"every channel failed: {exc.reason}{named}"
    return Answer(ours, error_body(wire, ours, message), headers)


def _passes_through(exc: UpstreamFailure, wire: WireFormat) -> bool:
    # A channel's own credentials refused (401/403) are ours to hide: the client's key is fine.
    status = exc.status
    if status is None or status in (401, 403) or not exc.body:
        return False
    return wire is WireFormat.ANTHROPIC or (status < 500 and not exc.retryable)


_KEPT = frozenset({"retry-after", "content-type"})


__all__ = [
    "chat_completions",
    "count_tokens",
    "embeddings",
    "messages",
    "models",
    "responses",
]
