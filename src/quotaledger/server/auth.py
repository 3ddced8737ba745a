"""Who is calling: a system token (`Authorization: <token>` or `Bearer <token>`) or a
browser session cookie, and the checks that go with each (CSRF for sessions,
`New-Api-User`, enabled account, admin role)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from quotaledger import accounts, sessions, tokens
from quotaledger.accounts import MALFORMED_REFUSAL, Account
from quotaledger.errors import AuthenticationFailed, PermissionDenied
from quotaledger.server import proxies
from quotaledger.server.errors import HTTPError
from quotaledger.server.state import AppState

SESSION_COOKIE = "ql_session"
CSRF_COOKIE = "ql_csrf"
CSRF_HEADER = "x-csrf-token"
MISSING_CREDENTIALS = "missing credentials: send Authorization: <system token>"
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


@dataclass(frozen=True)
class Caller:
    account: Account
    via: Literal["token", "session"]
    session_id: str | None = None


def bearer_token(request: Request) -> str | None:
    """The token from `Authorization`, raw (as the reference page sends it) or `Bearer`."""
    header = request.headers.get("authorization")
    return None if header is None else token_from_header(header)


def token_from_header(authorization: str) -> str:
    header = authorization.strip()
    scheme, _, rest = header.partition(" ")
    if rest and scheme.lower() == "bearer":
        return rest.strip()
    return header


async def authenticate(
    request: Request, *, allow_session: bool = True, allow_token: bool = True
) -> Caller:
    """The caller, or `AuthenticationFailed` (401) / `PermissionDenied` (403)."""
    state: AppState = request.app.state.ql
    token = bearer_token(request) if allow_token else None
    claimed = request.headers.get("new-api-user")
    if token is not None:
        address = functools.partial(client_address, request)
        return Caller(await account_by_token(state, token, address, claimed), "token")
    if allow_session and (session_id := request.cookies.get(SESSION_COOKIE)):
        caller = await _session_caller(request, state, session_id)
        check_caller(caller.account, claimed)
        return caller
    if allow_token:
        raise AuthenticationFailed(MISSING_CREDENTIALS)
    raise AuthenticationFailed("not logged in: this needs a browser session")


async def account_by_token(
    state: AppState, token: str | None, address: Callable[[], str], claimed: str | None
) -> Account:
    """The caller a token names (401/403 otherwise), for routes that take tokens only."""
    if token is None:
        raise AuthenticationFailed(MISSING_CREDENTIALS)
    account, _ = await token_account(state, token, address)
    check_caller(account, claimed)
    return account


def require_admin(account: Account) -> Account:
    if not account.is_admin:
        raise PermissionDenied("this route needs an admin token")
    return account


async def token_account(
    state: AppState, token: str, address: Callable[[], str], *, limit_token: bool = False
) -> tuple[Account, dict[str, str]]:
    """The token's account, and the rate-limit headers to answer with when `limit_token`
    (the balance query counts each token's requests).

    The checks run cheapest first, so that junk costs less than a real query: a
    malformed token is refused without counting anything; with the balance limit on, a
    token already known to be over its own limit gets 429 from memory; an address that had
    too many tokens refused gets 429 (forged well-formed tokens are free to make, so a
    per-token limit alone would never stop someone trying them); then the token's own
    limit is counted; then the one database read. A refused token counts against its
    address. (`address` is a function: most requests never need it.)
    """
    if not tokens.is_well_formed(token):
        raise AuthenticationFailed(MALFORMED_REFUSAL)
    # The digest is the lookup key and the rate-limit key: a raw token never sits in Redis.
    digest = tokens.hash_token(token)
    limiter = state.limiter
    if not limiter.is_enabled("balance"):
        return await accounts.account_for_token_digest_async(state.database, digest), {}
    if limit_token:
        limiter.check_known_over("balance", digest)
    key = f"bad-token:{address()}"
    if not await limiter.allows("balance", key):
        raise HTTPError(
            429, "too many refused tokens from this address: try again later", {"Retry-After": "60"}
        )
    headers = await limiter.check("balance", digest) if limit_token else {}
    try:
        return await accounts.account_for_token_digest_async(state.database, digest), headers
    except AuthenticationFailed:
        await limiter.count("balance", key)
        raise


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


def check_caller(account: Account, claimed: str | None) -> None:
    """403 for a disabled account or a `New-Api-User` header (`claimed`) naming someone
    else."""
    if not account.is_enabled:
        raise PermissionDenied("this account is disabled")
    if claimed is not None and claimed.strip() != str(account.id):
        raise PermissionDenied("New-Api-User does not match the token's user")


async def authenticate_session(request: Request) -> Caller:
    """A logged-in browser session (a token does not count here)."""
    return await authenticate(request, allow_token=False)


async def authenticate_admin(request: Request) -> Caller:
    caller = await authenticate(request, allow_session=False)
    require_admin(caller.account)
    return caller


def client_address(request: Request) -> str:
    """The real client address (see `proxies.client_address`)."""
    state: AppState = request.app.state.ql
    return proxies.client_address(request.scope, state.settings.trusted_proxies)


def is_https(request: Request) -> bool:
    """Whether the client reached us over TLS (cookies then get `Secure`)."""
    state: AppState = request.app.state.ql
    return proxies.is_https(request.scope, state.settings.trusted_proxies)
