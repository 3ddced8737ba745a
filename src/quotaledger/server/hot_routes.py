"""`HotRoutes`: the two hot routes answered in plain ASGI, in front of everything.

`GET /api/user/self` with a system token (scripts and monitors poll it, and an attacker's
junk tokens must cost less than a real query) and `POST /api/usage` (every charge of the
operator's gateway). Under load every layer between uvicorn and a handler costs a
measurable share of these requests (Starlette's router and error middleware, FastAPI, each
middleware wrapping `send`, Request and Response objects, headers parsed again by each), so
this outermost layer skips them all. It reads the headers it needs in one pass, runs the
routes' own code (`api.balance_by_token`, `api.charge_by_token`; body limits of
`middleware.body_refusal`), and sends answers finished as every other API answer is
(`finisher.finish_json`: security headers, HSTS, gzip, metrics; an unexpected error is a
logged 500 envelope). A balance query without `Authorization` (a browser session) goes on
to the full stack, as does everything else; the FastAPI routes still describe both in
`/openapi.json`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import NamedTuple

from starlette.types import ASGIApp, Receive, Scope, Send

from quotaledger.errors import QuotaLedgerError
from quotaledger.server.api import balance_body, balance_by_token, charge_by_token
from quotaledger.server.auth import token_from_header
from quotaledger.server.errors import HTTPError, headers_for, refusal, status_for
from quotaledger.server.finisher import accepts_gzip, finish_json
from quotaledger.server.middleware import body_refusal, read_body, too_large
from quotaledger.server.proxies import client_address, is_https
from quotaledger.server.responses import envelope
from quotaledger.server.state import AppState

log = logging.getLogger("quotaledger.server")

Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]  # status, JSON body, extra headers
_INTERNAL_ERROR = envelope(message="internal server error", status_code=500)


class _Head(NamedTuple):
    """What the hot routes read of a request's headers (the first occurrence of each)."""

    authorization: str | None
    accept_encoding: str | None
    claimed: str | None  # New-Api-User
    content_length: str | None
    content_type: str | None
    chunked: bool


_READ = frozenset(
    {b"authorization", b"accept-encoding", b"new-api-user", b"content-length", b"content-type"}
)


def _read_head(scope: Scope) -> _Head:
    found: dict[bytes, str] = {}
    chunked = False
    for name, value in scope["headers"]:  # names are lower-case in ASGI
        if name in _READ:
            if name not in found:
                found[name] = value.decode("latin-1")
        elif name == b"transfer-encoding":
            chunked = True
    return _Head(
        found.get(b"authorization"),
        found.get(b"accept-encoding"),
        found.get(b"new-api-user"),
        found.get(b"content-length"),
        found.get(b"content-type"),
        chunked,
    )


class HotRoutes:
    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = (scope["method"], scope["path"])
            if route == ("GET", "/api/user/self"):
                head = _read_head(scope)
                if head.authorization is not None:
                    await self._finish(scope, send, head, self._balance(scope, head))
                    return
            elif route == ("POST", "/api/usage"):
                head = _read_head(scope)
                await self._finish(scope, send, head, self._charge(scope, receive, head))
                return
        await self.app(scope, receive, send)

    async def _balance(self, scope: Scope, head: _Head) -> Answer:
        state = self.state
        token = token_from_header(head.authorization or "")
        account, headers = await balance_by_token(state, token, self._address(scope), head.claimed)
        return 200, balance_body(account, await state.fixed_prices()), _raw_headers(headers.items())

    async def _charge(self, scope: Scope, receive: Receive, head: _Head) -> Answer:
        limit = self.state.settings.max_body_bytes
        refused = body_refusal(
            scope["path"], head.content_length, head.chunked, head.content_type or "", limit
        )
        body = None if refused else await read_body(receive, limit)
        if refused or body is None:
            status, message = refused or too_large(limit)
            return status, envelope(message=message, status_code=status), []
        token = None if head.authorization is None else token_from_header(head.authorization)
        data = await charge_by_token(self.state, token, self._address(scope), head.claimed, body)
        return 200, envelope(data), []

    def _address(self, scope: Scope) -> Callable[[], str]:
        return functools.partial(client_address, scope, self.state.settings.trusted_proxies)

    async def _finish(self, scope: Scope, send: Send, head: _Head, work: Awaitable[Answer]) -> None:
        """Run `work`, turning refusals and errors into their envelopes, then send the answer
        finished as every API answer is."""
        settings = self.state.settings
        gzip = settings.always_gzip or accepts_gzip(head.accept_encoding or "")
        https = is_https(scope, settings.trusted_proxies)
        try:
            status, body, extra = await work
            headers, body = finish_json(body, extra, gzip=gzip, https=https)
        except QuotaLedgerError as exc:
            status = status_for(exc)
            said = tuple(headers_for(status).items())
            headers, body = _finished_refusal(status, str(exc), said, gzip, https)
        except HTTPError as exc:
            status, message, said_headers = refusal(exc)
            said = tuple(said_headers.items())
            headers, body = _finished_refusal(status, message, said, gzip, https)
        except Exception:
            log.exception("unexpected error on %s %s", scope["method"], scope["path"])
            status = 500
            headers, body = finish_json(_INTERNAL_ERROR, [], gzip=gzip, https=https)
        self.state.metrics.count_response(scope["method"], status)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@functools.lru_cache(maxsize=256)
def _finished_refusal(
    status: int, message: str, said: tuple[tuple[str, str], ...], gzip: bool, https: bool
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    # Refusals repeat word for word (junk tokens above all): each is encoded, gzipped and
    # given its headers once. (ASGI servers copy the header list they are sent.)
    body = envelope(message=message, status_code=status)
    return finish_json(body, _raw_headers(said), gzip=gzip, https=https)


def _raw_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
