"""What the admin API's routes share (SPEC §13): the admin caller (a system token, or a
browser session whose writes carry the CSRF header), paging, and the audit entry every
write leaves (who, what, when, from which address)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from quotaledger.identity import audit_trail
from quotaledger.server.auth import Caller, authenticate, require_admin
from quotaledger.server.calls import Call
from quotaledger.server.newapi_docs import API_READ, API_WRITE
from quotaledger.server.services import Services

Page = Annotated[int | None, Query(ge=1, le=1_000_000)]
Size = Annotated[int, Query(ge=1, le=100)]
Keyword = Annotated[str | None, Query(max_length=128)]
ADMIN_REFUSAL = "this needs an admin account"
# The statuses the admin routes answer with, for /openapi.json (and the contract test).
ONE = (*API_READ, 404)
WRITE = (*API_WRITE, 409)
CHANNEL_WRITE = (*WRITE, 503)  # 503: no QUOTALEDGER_SECRET_KEY to encrypt a channel key


async def admin_caller(request: Request) -> Caller:
    """An admin, by system token or by session (CSRF checked on a session's writes, in
    `auth.session_caller`); 401 anonymous, 403 anyone else."""
    caller = await authenticate(Call.of(request))
    require_admin(caller.account)
    return caller


# A dependency, so that anyone but an admin gets 401/403 before any 422.
AdminCaller = Annotated[Caller, Depends(admin_caller)]


def services_of(request: Request) -> Services:
    services: Services = request.app.state.ql
    return services


def database_of(request: Request) -> Any:
    return services_of(request).database


def page_data(items: list[Any], total: int, page: int, page_size: int) -> dict[str, Any]:
    """new-api's list answer: `{items, total, page, page_size}`."""
    return {"items": items, "total": total, "page": page, "page_size": page_size}


def actor(request: Request, caller: Caller) -> audit_trail.Actor:
    account = caller.account
    return audit_trail.Actor(account.id, account.username, Call.of(request).client_address())


async def audit(
    request: Request, caller: Caller, action: str, target: object = "", **detail: Any
) -> None:
    """Record an admin write that succeeded. `detail` never holds a secret."""
    await run_in_threadpool(
        audit_trail.record, database_of(request), actor(request, caller), action, str(target),
        **detail,
    )  # fmt: skip
