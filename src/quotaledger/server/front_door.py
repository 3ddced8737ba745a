"""`FrontDoor`: the one ASGI application every request enters, in plain ASGI.

For each request it reads the head once (`calls.read_head`), reads and bounds the body
(`bodies`), then either runs the endpoint its routing table names for (method, path) or
hands the request to the framework (FastAPI: pages, login, admin routes, `/docs`). Every
answer leaves through one `Finish` (security headers, gzip, the metrics count), every
refusal is written from `errors.refusal`, and an unexpected error becomes the one logged 500.

The routing table holds the hot endpoints (the balance by token, usage charges; later the
relay's `/v1/...`): under load every layer between the server and a handler costs a
measurable share of these requests (a router, error middleware, Request and Response
objects, headers parsed again by each), so they run here with none of them. Each route
names how its refusals are written: the API's envelope, or another format (OpenAI's
errors under `/v1`). An endpoint returns an `Answer`, or a `Stream` sent as it is produced.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, NamedTuple

from starlette.types import ASGIApp, Receive, Scope, Send

from quotaledger.server.bodies import BODY_METHODS, read_body, replay
from quotaledger.server.calls import Answer, Call, Endpoint, Stream, read_head
from quotaledger.server.errors import Refusal, refusal
from quotaledger.server.finisher import Finish, WriteRefusal, accepts_gzip, disconnected
from quotaledger.server.proxies import is_https
from quotaledger.server.responses import envelope_refusal
from quotaledger.server.services import Services

log = logging.getLogger("quotaledger.server")

_INTERNAL_ERROR = Refusal(500, "internal server error", ())


class Route(NamedTuple):
    endpoint: Endpoint
    openapi: dict[str, Any]  # its description in /openapi.json (FastAPI's route options)
    write_refusal: WriteRefusal = envelope_refusal
    # The relay's bodies (chat histories, images) are bounded by their own setting.
    relay_body: bool = False


class FrontDoor:
    def __init__(
        self, routes: dict[tuple[str, str], Route], framework: ASGIApp, services: Services
    ) -> None:
        self.routes = routes
        self.framework = framework
        self.services = services
        # Routes with one `{name}` segment at their end (`/v1/models/{model}`), by prefix.
        self.templates = [
            (method, path.partition("{")[0], route)
            for (method, path), route in routes.items()
            if path.endswith("}")
        ]

    def route(self, method: str, path: str) -> Route | None:
        """The route of (method, path): an exact one, else a template whose last segment
        takes the rest of the path."""
        route = self.routes.get((method, path))
        if route is None and self.templates:
            for wanted, prefix, template in self.templates:
                if method == wanted and path.startswith(prefix):
                    rest = path[len(prefix) :]
                    if rest and "/" not in rest:
                        return template
        return route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan, websockets
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
            body = b""
            if method in BODY_METHODS:  # read whole, and handed on as read (even when empty)
                relay_body = route is not None and route.relay_body
                limit = settings.relay_max_body_bytes if relay_body else settings.max_body_bytes
                body = await read_body(method, path, head, receive, limit)
                receive = replay(body, receive)
            if route is None:
                await self.framework(scope, receive, finish.send)
                return
            call = Call(scope, head, body, services)
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
        except Exception as exc:
            if finish.started:  # too late for another answer: the server drops the connection
                raise
            await finish.refuse(
                _refusal(exc, method, path), route.write_refusal if route else envelope_refusal
            )


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
