"""The relay's ceiling: a bare pass-through. A Starlette route forwards the request body to
the upstream with the very client the relay uses (`quotaledger.relay.upstream.Upstream`:
one pooled aiohttp session, the same timeouts and header filtering) and answers what came
back, streamed when the upstream streams. No auth, no key check, no reservation, no
settlement, no log row: what no metered relay route can beat on this machine.

Started through `ceiling_app.py` (so through `quotaledger serve`'s own uvicorn settings) with
QLB_UPSTREAM set to the upstream's base URL.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from quotaledger.relay.upstream import Target, Upstream, UpstreamFailure

_FORWARDED = ("content-type", "anthropic-version", "accept")


def passthrough_app(upstream_url: str) -> Starlette:
    upstream = Upstream()
    target = Target("ceiling", upstream_url.rstrip("/") + "/v1", (("authorization", "Bearer x"),))

    async def forward(request: Request) -> Response:
        body = await request.body()
        headers = [(k, v) for k, v in request.headers.items() if k in _FORWARDED]
        try:
            url = target.base_url + request.url.path.removeprefix("/v1")
            reply = await upstream.open(target, url, headers, body)
        except UpstreamFailure as exc:
            return Response(exc.body, status_code=exc.status or 502)
        kind = reply.content_type
        if kind.startswith("text/event-stream"):

            async def events() -> AsyncIterator[bytes]:
                try:
                    async for chunk in reply.chunks():
                        yield chunk
                finally:
                    reply.close()

            return StreamingResponse(events(), reply.status, media_type=kind)
        raw = await reply.read(64 * 1024 * 1024)
        reply.release()
        return Response(raw, reply.status, media_type=kind)

    async def marker(request: Request) -> Response:
        return Response(status_code=204)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        await upstream.close()

    routes = [
        Route("/v1/chat/completions", forward, methods=["POST"]),
        Route("/v1/messages", forward, methods=["POST"]),
        Route("/__ceiling__", marker),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
