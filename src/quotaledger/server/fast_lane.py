"""`FastLane`: the balance query straight to its handler.

`GET /api/user/self` is the hot path (scripts and monitors poll it), and an attacker's junk
tokens must cost less than a real query. Starlette's router, exception middleware and
endpoint wrapper cost a balance query a fifth of its time; the handler needs none of them
(it answers its own refusals), so this layer, placed inside `ResponseFinisher` (headers,
gzip, counting, 500s still apply), calls it directly. Everything else goes on as usual.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from quotaledger.server.api import user_self

PATH = "/api/user/self"


class FastLane:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "GET":
            response = await user_self(Request(scope, receive))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
