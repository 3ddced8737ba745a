"""`FastLane`: usage charges straight to their handler.

`POST /api/usage` carries every charge of the operator's gateway. Starlette's router,
exception middleware and endpoint wrapper cost a short request a fifth of its time; the
handler needs none of them (it answers its own refusals), so this layer, placed inside
`ResponseFinisher` and `BodyGuard` (headers, gzip, counting, 500s, body limits still
apply), calls it directly. Everything else goes on as usual. (The balance query has a
leaner lane still: `balance_lane.py`.)
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from quotaledger.server.api import charge_usage

ROUTES = {("POST", "/api/usage"): charge_usage}


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
