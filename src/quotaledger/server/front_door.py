"""`FrontDoor`: the one ASGI application every request enters, in plain ASGI.

For each request it reads the head once (`calls.read_head`), counts it against its client
address (`request_limits.AddressGate`), reads and bounds the body (`bodies`: size and
deadline; a relayed body over the API's limit only once the key passed `head_admission`,
within the large bodies' budget), then either runs the endpoint its routing table names for
(method, path) or
hands the request to the framework (FastAPI: pages, login, admin routes, `/docs`). Every
answer leaves through one `Finish` (security headers, gzip, the metrics count), every
refusal is written from `errors.refusal`, and an unexpected error becomes the one logged 500.

The routing table holds the hot endpoints (the balance by token, usage charges; later the
relay's `/v1/...`): under load every layer between the server and a handler costs a
measurable share of these requests (a router, error middleware, Request and Response
objects, headers parsed again by each), so they run here with none of them. Each route
names how its refusals are written; a request no route takes gets the format of its path
(`refusal_format`: OpenAI's errors under `/v1`, Anthropic's under `/v1/messages`, Google's
under `/v1beta` and for `/v1/models/{model}:{method}`, the envelope elsewhere), so that
the HTTP layer's own 404, 405, 408, 413 and 429 reach each SDK in the shape it reads. An
endpoint returns an `Answer`, or a `Stream` sent as it is produced.

A WebSocket upgrade has no head deadline or body to bound: `GET /v1/responses` is the
Responses socket (`responses_socket`, SPEC §14), which holds one of its address's requests in
progress while it is open; any other path is refused with a 404 in the path's format.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, NamedTuple

from starlette.types import ASGIApp, Receive, Scope, Send

from quotaledger.errors import InsufficientQuota
from quotaledger.server import responses_socket
from quotaledger.server.bodies import BODY_METHODS, read_body, replay
from quotaledger.server.calls import Answer, Call, Endpoint, Head, Stream, read_head
from quotaledger.server.errors import Refusal, refusal
from quotaledger.server.finisher import Finish, WriteRefusal, accepts_gzip, disconnected
from quotaledger.server.head_admission import check_key
from quotaledger.server.proxies import client_address, is_https
from quotaledger.server.request_limits import AddressGate, BodyBudget
from quotaledger.server.responses import envelope_refusal
from quotaledger.server.services import Services
from quotaledger.wire import refusals
from quotaledger.wire.errors import WireFormat, error_body

log = logging.getLogger("quotaledger.server")

_INTERNAL_ERROR = Refusal(500, "internal server error", ())


class Route(NamedTuple):
    endpoint: Endpoint
    openapi: dict[str, Any]  # its description in /openapi.json (FastAPI's route options)
    write_refusal: WriteRefusal = envelope_refusal
    # The relay's bodies (chat histories, images) are bounded by their own setting.
    relay_body: bool = False
    # The client format of a relayed route (`wire.formats.Format.name`): its out-of-money
    # refusal, when the key's balance is empty before the body is read (`wire.refusals`).
    relay_format: str | None = None


class FrontDoor:
    def __init__(
        self, routes: dict[tuple[str, str], Route], framework: ASGIApp, services: Services
    ) -> None:
        self.routes = routes
        self.framework = framework
        self.services = services
        settings = services.settings
        self.addresses = AddressGate(settings.max_requests_per_address)
        self.large_bodies = BodyBudget(settings.relay_body_bytes_in_flight)
        # Routes with one `{name}` in their last segment, by prefix and suffix: at the end
        # (`/v1/models/{model}`) or before a method (`/v1beta/models/{model}:countTokens`).
        self.templates = [
            (method, *_around_name(path), route)
            for (method, path), route in routes.items()
            if "{" in path
        ]

    def route(self, method: str, path: str) -> Route | None:
        """The route of (method, path): an exact one, else a template whose name takes the
        rest of the path: one segment, or, before a `:method` suffix, any (Gemini's model
        names may hold a `/`: `models/google/gemini-2.5-pro:generateContent`)."""
        route = self.routes.get((method, path))
        if route is None and self.templates:
            for wanted, prefix, suffix, template in self.templates:
                if method == wanted and path.startswith(prefix) and path.endswith(suffix):
                    rest = path[len(prefix) : len(path) - len(suffix)]
                    if rest and (suffix or "/" not in rest):
                        return template
        return route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await self._socket(scope, receive, send)
            else:  # lifespan
                await self.framework(scope, receive, send)
            return
        method: str = scope["method"]
        path: str = scope["path"]
        head = read_head(scope)
        services = self.services
        settings = services.settings
        gzip = accepts_gzip(head.accept_encoding or "") or (
            settings.always_gzip and path.startswith("/api/")
        )
        https = is_https(scope, settings.trusted_proxies)
        finish = Finish(send, method, path, gzip, https, services.metrics)
        route = self.route(method, path)
        try:
            with self.addresses.enter(client_address(scope, settings.trusted_proxies)):
                await self._serve(scope, receive, head, route, finish)
        except Exception as exc:
            if finish.started:  # too late for another answer: the server drops the connection
                raise
            write = route.write_refusal if route else refusal_format(path)
            await finish.refuse(_refusal(exc, method, path), write)

    async def _socket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket upgrade: the Responses socket holds one of its address's requests in
        progress for as long as it is open, mostly idle between turns, so it gets one only
        while the address holds less than half of them (HTTP always keeps the rest);
        otherwise 426, which makes Codex use HTTP at once. Any other path: 404."""
        path: str = scope["path"]
        if path != responses_socket.PATH:
            found = Refusal(404, f"no WebSocket is served at {path}", ())
            await responses_socket.refuse_upgrade(scope, send, found, refusal_format(path))
            return
        address = client_address(scope, self.services.settings.trusted_proxies)
        if self.addresses.holding(address) >= max(1, self.addresses.limit // 2):
            busy = Refusal(426, f"too many requests in progress from {address}: use HTTP", ())
            await responses_socket.refuse_upgrade(scope, send, busy)
            return
        with self.addresses.enter(address):
            await responses_socket.serve(scope, receive, send, self.services)

    async def _serve(
        self, scope: Scope, receive: Receive, head: Head, route: Route | None, finish: Finish
    ) -> None:
        method: str = scope["method"]
        settings = self.services.settings
        if method not in BODY_METHODS:
            await self._dispatch(scope, receive, head, b"", route, finish)
            return
        limit, timeout = settings.max_body_bytes, settings.body_timeout
        if route is None or not route.relay_body or not _may_exceed(head, limit):
            body = await read_body(method, scope["path"], head, receive, limit, timeout)
            await self._dispatch(scope, receive, head, body, route, finish)
            return
        # A large relayed body: the key first, then room in the budget, then the body.
        try:
            await check_key(Call(scope, head, b"", self.services))
        except InsufficientQuota as exc:
            if route.relay_format is None:
                raise
            await finish.answer(self._out_of_money(route.relay_format, exc))
            return
        limit = settings.relay_max_body_bytes
        length = head.content_length or ""
        declared = int(length) if length.isdecimal() else limit
        async with self.large_bodies.hold(min(declared, limit), timeout):
            body = await read_body(method, scope["path"], head, receive, limit, timeout)
            await self._dispatch(scope, receive, head, body, route, finish)

    def _out_of_money(self, client_format: str, exc: InsufficientQuota) -> Answer:
        """An empty balance, told in the client's own refusal (the one it shows at once)."""
        self.services.metrics.out_of_money.labels(client_format).inc()
        shortfall = refusals.Shortfall(needed=0, available=exc.available, funding=exc.funding)
        out = refusals.refusal(client_format, shortfall)
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in out.headers]
        return Answer(out.status, out.body, headers)

    async def _dispatch(
        self,
        scope: Scope,
        receive: Receive,
        head: Head,
        body: bytes,
        route: Route | None,
        finish: Finish,
    ) -> None:
        if route is None:
            if scope["method"] in BODY_METHODS:
                receive = replay(body, receive)  # handed on as read (even when empty)
            await self.framework(scope, receive, finish.send)
            return
        call = Call(scope, head, body, self.services)
        if route.relay_body:  # a model may think for minutes: a client may leave
            answer = await _unless_gone(route.endpoint(call), receive)
            if answer is None:
                return  # nobody to answer (the relay cancelled its upstream, settled)
        else:
            answer = await route.endpoint(call)
        if isinstance(answer, Stream):
            await finish.stream(answer, receive)
        else:
            await finish.answer(answer)


def _around_name(template: str) -> tuple[str, str]:
    """What comes before and after a route template's `{name}`."""
    prefix, _, rest = template.partition("{")
    return prefix, rest.partition("}")[2]


def _may_exceed(head: Head, limit: int) -> bool:
    """Whether a body may be longer than `limit`, from its head alone."""
    length = head.content_length
    if length is None:
        return head.chunked
    return not length.isdecimal() or int(length) > limit


def _openai(status: int, message: str) -> bytes:
    # A path or method the HTTP layer does not know: say so, not the 404's "model_not_found".
    code = "unknown_url" if status in (404, 405) else None
    return error_body(WireFormat.OPENAI, status, message, code=code)


def _anthropic(status: int, message: str) -> bytes:
    return error_body(WireFormat.ANTHROPIC, status, message)


def _gemini(status: int, message: str) -> bytes:
    return error_body(WireFormat.GEMINI, status, message)


def refusal_format(path: str) -> WriteRefusal:
    """How a refusal on `path` is written when no route of the table names it: the client
    format's error shape by path prefix (SPEC §14), the envelope elsewhere."""
    if path.startswith("/v1beta/") or path == "/v1beta" or _gemini_method(path):
        return _gemini
    if path.startswith("/v1/messages"):
        return _anthropic
    if path.startswith("/v1/") or path == "/v1":
        return _openai
    return envelope_refusal


def _gemini_method(path: str) -> bool:
    """A Gemini call under `/v1` (google-genai's default version): `models/{model}:{method}`."""
    return path.startswith("/v1/models/") and ":" in path


async def _unless_gone(
    answering: Awaitable[Answer | Stream], receive: Receive
) -> Answer | Stream | None:
    """The endpoint's answer, or None when the client left first: the endpoint is then
    cancelled where it waits (SPEC §8b: the relay cancels its upstream call and settles).
    The endpoint runs in this task (no hop to another: a stream's first read is as soon as
    before); a watcher cancels it if the disconnect comes first."""
    this = asyncio.current_task()
    assert this is not None
    left = False

    def cancel_it(watch: asyncio.Future[None]) -> None:
        nonlocal left
        if not watch.cancelled() and watch.exception() is None:
            left = True
            this.cancel()

    gone = asyncio.ensure_future(disconnected(receive))
    gone.add_done_callback(cancel_it)
    try:
        return await answering
    except asyncio.CancelledError:
        if left:
            this.uncancel()
            return None
        raise
    finally:
        gone.remove_done_callback(cancel_it)
        gone.cancel()


def _refusal(exc: Exception, method: str, path: str) -> Refusal:
    found = refusal(exc)
    if found is None:
        # Logged with its traceback for the operator; the client sees a plain refusal.
        log.error("unexpected error on %s %s", method, path, exc_info=exc)
        return _INTERNAL_ERROR
    return found
