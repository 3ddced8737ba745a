"""The honest ceiling of the relay (issue 25 item 7): a bare pass-through that imports
nothing from quotaledger. A Starlette route reads the body, forwards it with one pooled
aiohttp session to $QLB_UPSTREAM and answers what came back (streamed when the upstream
streams). No key check, no reservation, no settlement, no log row.

    QLB_UPSTREAM=http://127.0.0.1:9999 granian --interface asgi --factory \
        bare_passthrough:create_app       (or uvicorn --factory bare_passthrough:create_app)

Also answers `GET /api/user/self` with $QLB_CEILING_BODY's bytes: the bare JSON route.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

_FORWARDED = ("content-type", "anthropic-version", "accept")


def create_app() -> Starlette:
    upstream = os.environ.get("QLB_UPSTREAM", "http://127.0.0.1:9").rstrip("/")
    body_file = os.environ.get("QLB_CEILING_BODY")
    balance = Path(body_file).read_bytes() if body_file else b'{"success":true,"data":{}}'
    pool: dict[str, aiohttp.ClientSession] = {}

    async def forward(request: Request) -> Response:
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k in _FORWARDED}
        headers["authorization"] = "Bearer x"
        if "session" not in pool:  # run without a lifespan (in-process, benchmarks/relay_cost)
            pool["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        reply = await pool["session"].post(upstream + request.url.path, data=body, headers=headers)
        kind = reply.headers.get("content-type", "application/json")
        if kind.startswith("text/event-stream"):

            async def events() -> AsyncIterator[bytes]:
                async with reply:
                    async for chunk in reply.content.iter_any():
                        yield chunk

            return StreamingResponse(events(), reply.status, media_type=kind)
        async with reply:
            return Response(await reply.read(), reply.status, media_type=kind)

    async def user_self(request: Request) -> Response:
        return Response(balance, media_type="application/json")

    async def marker(request: Request) -> Response:
        return Response(status_code=204)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        if "session" in pool:
            await pool.pop("session").close()

    routes = [
        Route("/v1/chat/completions", forward, methods=["POST"]),
        Route("/v1/messages", forward, methods=["POST"]),
        Route("/api/user/self", user_self),
        Route("/__ceiling__", marker),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
