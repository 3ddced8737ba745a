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

import logging
from typing import Any, NamedTuple

from starlette.types import ASGIApp, Receive, Scope, Send

from quotaledger.server.bodies import BODY_METHODS, read_body, replay
from quotaledger.server.calls import Call, Endpoint, Stream, read_head
from quotaledger.server.errors import Refusal, refusal
from quotaledger.server.finisher import Finish, WriteRefusal, accepts_gzip
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
        route = self.routes.get((method, path))
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
            answer = await route.endpoint(Call(scope, head, body, services))
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


def _refusal(exc: Exception, method: str, path: str) -> Refusal:
    found = refusal(exc)
    if found is None:
        # Logged with its traceback for the operator; the client sees a plain refusal.
        log.error("unexpected error on %s %s", method, path, exc_info=exc)
        return _INTERNAL_ERROR
    return found
