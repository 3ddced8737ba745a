"""Who is calling: a system token (`Authorization: <token>` or `Bearer <token>`) or a
browser session cookie, and the checks that go with each (CSRF for sessions,
`New-Api-User`, enabled account, admin role)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from quotaledger import tokens
from quotaledger.errors import AuthenticationFailed, PermissionDenied
from quotaledger.identity import accounts, sessions
from quotaledger.identity.accounts import MALFORMED_REFUSAL, Account
from quotaledger.server.calls import Call
from quotaledger.server.errors import within_limit

SESSION_COOKIE = "ql_session"
CSRF_COOKIE = "ql_csrf"
MISSING_CREDENTIALS = "missing credentials: send Authorization: <system token>"
ADDRESS_REFUSAL = "too many refused tokens from this address: try again later"
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


@dataclass(frozen=True)
class Caller:
    account: Account
    via: Literal["token", "session"]
    session_id: str | None = None


async def authenticate(
    call: Call, *, allow_session: bool = True, allow_token: bool = True
) -> Caller:
    """The caller, or `AuthenticationFailed` (401) / `PermissionDenied` (403)."""
    token = call.head.token if allow_token else None
    if token is not None:
        return Caller(await account_by_token(call), "token")
    if allow_session and (session_id := call.cookie(SESSION_COOKIE)):
        caller = await session_caller(call, session_id)
        check_caller(caller.account, call.head.new_api_user)
        return caller
    if allow_token:
        raise AuthenticationFailed(MISSING_CREDENTIALS)
    raise AuthenticationFailed("not logged in: this needs a browser session")


async def account_by_token(call: Call) -> Account:
    """The caller the token names (401/403 otherwise), for routes that take tokens only."""
    token = call.head.token
    if token is None:
        raise AuthenticationFailed(MISSING_CREDENTIALS)
    account, _ = await token_account(call, token)
    check_caller(account, call.head.new_api_user)
    return account


def require_admin(account: Account) -> Account:
    if not account.is_admin:
        raise PermissionDenied("this route needs an admin token")
    return account


async def token_account(
    call: Call, token: str, *, limit_token: bool = False
) -> tuple[Account, dict[str, str]]:
    """The token's account, and the rate-limit headers to answer with when `limit_token`
    (the balance query counts each token's requests).

    The checks run cheapest first, so that junk costs less than a real query: a
    malformed token is refused without counting anything. Refused tokens count against
    their address (forged well-formed tokens are free to make, so a per-token limit alone
    would never stop someone trying them), and an address over that limit gets 429. On the
    balance query the address is checked first, then a token already known to be over its
    own limit gets 429 from memory, then the token's own limit is counted, then the one
    database read. Routes that are not limited (usage charges, top-ups: the operator's own
    gateway) read the token first: a valid one passes whatever else came from its address.
    """
    if not tokens.is_well_formed(token):
        raise AuthenticationFailed(MALFORMED_REFUSAL)
    # The digest is the lookup key and the rate-limit key: a raw token never sits in Redis.
    digest = tokens.hash_token(token)
    services = call.services
    limiter = services.limiter
    if not limiter.is_enabled("balance"):
        return await accounts.account_for_token_digest_async(services.database, digest), {}
    headers: dict[str, str] = {}
    if limit_token:
        within_limit(limiter.known_over("balance", digest))
        gate, decision = await limiter.hit_gated("balance", digest, _address_key(call))
        within_limit(gate, ADDRESS_REFUSAL)
        headers = within_limit(decision)
    try:
        return await accounts.account_for_token_digest_async(services.database, digest), headers
    except AuthenticationFailed:
        if not limit_token:
            await _address_gate(call)
        await limiter.count("balance", _address_key(call))
        raise


async def _address_gate(call: Call) -> None:
    """429 for an address that had too many tokens refused."""
    over = await call.services.limiter.over("balance", _address_key(call))
    within_limit(over, ADDRESS_REFUSAL)


def _address_key(call: Call) -> str:
    return f"bad-token:{call.client_address()}"


async def session_caller(call: Call, session_id: str) -> Caller:
    database = call.services.database
    found = await run_in_threadpool(sessions.account_for_session, database, session_id)
    if found is None:
        raise AuthenticationFailed("session expired: log in again")
    account, csrf_hash = found
    if call.method not in _SAFE_METHODS and not sessions.csrf_matches(
        csrf_hash, call.head.csrf_token
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


# Dependencies for the framework's routes.


async def any_caller(request: Request) -> Caller:
    return await authenticate(Call.of(request))


async def session_only(request: Request) -> Caller:
    """A logged-in browser session (a token does not count here)."""
    return await authenticate(Call.of(request), allow_token=False)


async def admin_only(request: Request) -> Caller:
    caller = await authenticate(Call.of(request), allow_session=False)
    require_admin(caller.account)
    return caller
