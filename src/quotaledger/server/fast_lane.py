"""`FastLane`: the two hot routes straight to their handlers.

`GET /api/user/self` (scripts and monitors poll it; an attacker's junk tokens must cost less
than a real query) and `POST /api/usage` (every charge of the operator's gateway). Starlette's
router, exception middleware and endpoint wrapper cost a balance query a fifth of its time;
these handlers need none of them (they answer their own refusals), so this layer, placed
inside `ResponseFinisher` and `BodyGuard` (headers, gzip, counting, 500s, body limits still
apply), calls them directly. Everything else goes on as usual.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from quotaledger.server.api import charge_usage, user_self

ROUTES = {("GET", "/api/user/self"): user_self, ("POST", "/api/usage"): charge_usage}


class FastLane:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = ROUTES.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        response = await handler(Request(scope, receive))
        await response(scope, receive, send)
