"""Who is calling: a system token (`Authorization: <token>` or `Bearer <token>`) or a
browser session cookie, and the checks that go with each (CSRF for sessions,
`New-Api-User`, enabled account, admin role)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from quotaledger import sessions, tokens
from quotaledger.accounts import Account
from quotaledger.errors import AuthenticationFailed, PermissionDenied
from quotaledger.server.state import AppState

SESSION_COOKIE = "ql_session"
CSRF_COOKIE = "ql_csrf"
CSRF_HEADER = "x-csrf-token"
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


@dataclass(frozen=True)
class Caller:
    account: Account
    via: Literal["token", "session"]
    session_id: str | None = None


def bearer_token(request: Request) -> str | None:
    """The token from `Authorization`, raw (as the reference page sends it) or `Bearer`."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    header = header.strip()
    scheme, _, rest = header.partition(" ")
    if rest and scheme.lower() == "bearer":
        return rest.strip()
    return header


def token_rate_key(token: str) -> str:
    # Keyed by the digest: a raw token never sits in Redis or in memory dumps of counters.
    return tokens.hash_token(token)


async def authenticate(
    request: Request, *, allow_session: bool = True, allow_token: bool = True
) -> Caller:
    """The caller, or `AuthenticationFailed` (401) / `PermissionDenied` (403)."""
    state: AppState = request.app.state.ql
    token = bearer_token(request) if allow_token else None
    if token is not None:
        caller = Caller(await state.account_for_token(token), "token")
    elif allow_session and (session_id := request.cookies.get(SESSION_COOKIE)):
        caller = await _session_caller(request, state, session_id)
    elif allow_token:
        raise AuthenticationFailed("missing credentials: send Authorization: <system token>")
    else:
        raise AuthenticationFailed("not logged in: this needs a browser session")
    check_caller(request, caller.account)
    return caller


async def _session_caller(request: Request, state: AppState, session_id: str) -> Caller:
    found = await run_in_threadpool(sessions.account_for_session, state.database, session_id)
    if found is None:
        raise AuthenticationFailed("session expired: log in again")
    account, csrf_hash = found
    if request.method not in _SAFE_METHODS and not sessions.csrf_matches(
        csrf_hash, request.headers.get(CSRF_HEADER)
    ):
        raise PermissionDenied("missing or wrong X-CSRF-Token header")
    return Caller(account, "session", session_id)


def check_caller(request: Request, account: Account) -> None:
    """403 for a disabled account or a `New-Api-User` header naming someone else."""
    if not account.is_enabled:
        raise PermissionDenied("this account is disabled")
    claimed = request.headers.get("new-api-user")
    if claimed is not None and claimed.strip() != str(account.id):
        raise PermissionDenied("New-Api-User does not match the token's user")


async def authenticate_session(request: Request) -> Caller:
    """A logged-in browser session (a token does not count here)."""
    return await authenticate(request, allow_token=False)


async def authenticate_admin(request: Request) -> Caller:
    caller = await authenticate(request, allow_session=False)
    if not caller.account.is_admin:
        raise PermissionDenied("this route needs an admin token")
    return caller


def client_address(request: Request) -> str:
    """The real client address: `X-Forwarded-For` is believed only from trusted proxies,
    read from the right, skipping the proxies themselves."""
    state: AppState = request.app.state.ql
    peer = request.client.host if request.client else "unknown"
    proxies = state.settings.trusted_proxies
    if not proxies or not _is_in(peer, proxies):
        return peer
    forwarded = request.headers.get("x-forwarded-for", "")
    for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
        if not _is_in(hop, proxies):
            return hop
    return peer


def is_https(request: Request) -> bool:
    """Whether the client reached us over TLS: directly, or through a trusted proxy that
    says so in `X-Forwarded-Proto` (cookies then get `Secure`)."""
    if request.url.scheme == "https":
        return True
    state: AppState = request.app.state.ql
    peer = request.client.host if request.client else ""
    proxies = state.settings.trusted_proxies
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return bool(proxies) and _is_in(peer, proxies) and forwarded == "https"


def _is_in(
    address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)
