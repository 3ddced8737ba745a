"""`BalanceLane`: `GET /api/user/self` with a system token, answered in plain ASGI.

Scripts and monitors poll this route, and an attacker's junk tokens must cost less than a
real query. Under load every layer between uvicorn and the handler costs a measurable share
of a query (Starlette's router and error middleware, FastAPI, each middleware wrapping
`send`, Request and Response objects, header objects parsed twice), so this outermost layer
skips them all: it reads the headers it needs in one pass, runs the route's own checks
(`api.balance_by_token`), and sends an answer finished like every other API answer
(`finisher.finish_json`: security headers, HSTS, gzip, metrics; an unexpected error is a
logged 500 envelope). A request without `Authorization` (a browser session) goes on to the
full stack, as does everything else.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from quotaledger.errors import QuotaLedgerError
from quotaledger.server.api import balance_body, balance_by_token
from quotaledger.server.auth import token_from_header
from quotaledger.server.errors import HTTPError, refusal
from quotaledger.server.finisher import accepts_gzip, finish_json
from quotaledger.server.proxies import client_address, is_https
from quotaledger.server.responses import envelope
from quotaledger.server.state import AppState

log = logging.getLogger("quotaledger.server")

_INTERNAL_ERROR = envelope(message="internal server error", status_code=500)


class BalanceLane:
    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/api/user/self" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        authorization = accept_encoding = claimed = None
        for name, value in scope["headers"]:  # names are lower-case in ASGI
            if name == b"authorization" and authorization is None:
                authorization = value.decode("latin-1")
            elif name == b"accept-encoding" and accept_encoding is None:
                accept_encoding = value.decode("latin-1")
            elif name == b"new-api-user" and claimed is None:
                claimed = value.decode("latin-1")
        if authorization is None:
            await self.app(scope, receive, send)
            return
        status, body, headers = await self._answer(scope, authorization, claimed)
        state = self.state
        state.metrics.count_response("GET", status)
        gzip = state.settings.always_gzip or accepts_gzip(accept_encoding or "")
        https = is_https(scope, state.settings.trusted_proxies)
        start, rest = finish_json(status, body, headers, gzip=gzip, https=https)
        await send(start)
        await send(rest)

    async def _answer(
        self, scope: Scope, authorization: str, claimed: str | None
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        state = self.state

        def address() -> str:
            return client_address(scope, state.settings.trusted_proxies)

        try:
            account, headers = await balance_by_token(
                state, token_from_header(authorization), address, claimed
            )
            body = balance_body(account, await state.fixed_prices())
            status = 200
        except (QuotaLedgerError, HTTPError) as exc:
            status, message, headers = refusal(exc)
            return (status, *_refusal_answer(status, message, tuple(headers.items())))
        except Exception:
            log.exception("unexpected error on GET /api/user/self")
            return 500, _INTERNAL_ERROR, []
        return status, body, _raw_headers(headers.items())


@functools.lru_cache(maxsize=256)
def _refusal_answer(
    status: int, message: str, headers: tuple[tuple[str, str], ...]
) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    # Refusals repeat word for word (junk tokens above all): each is encoded once, and its
    # bytes, always the same object, are gzipped once too.
    return envelope(message=message, status_code=status), _raw_headers(headers)


def _raw_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
