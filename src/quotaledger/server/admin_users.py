"""new-api's user routes for admins (SPEC §13): `GET /api/user/` (`p`, `page_size`),
`GET /api/user/search`, `GET /api/user/{id}`, `POST /api/user/` (create),
`POST /api/user/manage` (`{id, action}`: disable, enable, promote, demote, delete); ours:
`POST /api/user/grant` (a grant or a deduction with its reason), `POST
/api/user/reset_password` (a random password shown once, every session ended), the keys
of every user (`GET/PUT /api/admin/keys/`); and a user's own password change,
new-api's `PUT /api/user/self` (`{original_password, password}`).
"""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from quotaledger import passwords
from quotaledger.alerting import states as alert_states
from quotaledger.billing import ledger
from quotaledger.errors import AuthenticationFailed, InvalidInput
from quotaledger.identity import account_admin, accounts, keys
from quotaledger.identity.accounts import Account
from quotaledger.money import MAX_QUOTA, format_usd, usd_to_quota
from quotaledger.server import api
from quotaledger.server.admin_common import (
    ONE,
    WRITE,
    AdminCaller,
    Keyword,
    Page,
    Size,
    audit,
    database_of,
    page_data,
    services_of,
)
from quotaledger.server.auth import Caller, any_caller
from quotaledger.server.calls import Call
from quotaledger.server.key_routes import key_item
from quotaledger.server.newapi_docs import described
from quotaledger.server.responses import ok

router = APIRouter()
security_log = logging.getLogger("quotaledger.security")
UserId = Annotated[int, Field(ge=1, le=2**62)]


def user_item(account: Account) -> dict[str, Any]:
    """An account with new-api's user fields (role and status as its integers)."""
    return {**account.as_api_json(), "email": "", "remark": "", "granted_total":
            account.granted_total}  # fmt: skip


async def _page(request: Request, p: int | None, size: int, keyword: str | None) -> Response:
    number = p or 1
    found, total = await run_in_threadpool(
        account_admin.account_page, database_of(request), number, size, keyword
    )
    return ok(page_data([user_item(a) for a in found], total, number, size))


@router.get("/api/user/", **described("Every account (admin), by id: new-api's users"))
@router.get("/api/user", include_in_schema=False)
async def list_users(
    request: Request, caller: AdminCaller, p: Page = None, page: Page = None, page_size: Size = 20
) -> Response:
    return await _page(request, p or page, page_size, None)


@router.get("/api/user/search", **described("Accounts whose name holds the keyword, or its id"))
async def search_users(
    request: Request, caller: AdminCaller, keyword: Keyword = None, p: Page = None,
    page: Page = None, page_size: Size = 20,
) -> Response:  # fmt: skip
    return await _page(request, p or page, page_size, keyword)


@router.get("/api/user/{user_id:int}", **described("One account (admin), with its ledger", ONE))
async def get_user(
    request: Request, caller: AdminCaller, user_id: Annotated[int, Path(ge=1, le=2**62)]
) -> Response:
    database = database_of(request)
    account = await run_in_threadpool(account_admin.get_account, database, user_id)
    entries = await run_in_threadpool(ledger.ledger_entries, database, user_id)
    return ok({**user_item(account), "ledger": entries})


class CreateBody(BaseModel):
    """new-api's new user (and ours: group, role, starting quota); no password: a random
    one, shown once in the answer."""

    model_config = ConfigDict(extra="ignore")
    username: str = Field(min_length=1, max_length=64)
    password: str | None = Field(None, max_length=1024)
    display_name: str | None = None
    group: str = Field("default", min_length=1, max_length=64)
    role: Literal[1, 10, "user", "admin"] = 1
    quota: int = Field(0, ge=0, le=MAX_QUOTA)


@router.post("/api/user/", **described("Create an account (admin)", WRITE))
@router.post("/api/user", include_in_schema=False)
async def create_user(request: Request, body: CreateBody, caller: AdminCaller) -> Response:
    password = body.password or passwords.random_password()
    role = "admin" if body.role in (10, "admin") else "user"
    account = await run_in_threadpool(
        lambda: accounts.create_account(
            database_of(request), body.username, password, group=body.group, role=role,
            quota=body.quota,
        )
    )  # fmt: skip
    await audit(request, caller, "user.create", account.username, role=role, group=body.group,
                quota=body.quota)  # fmt: skip
    shown = {} if body.password else {"password": password}  # a generated one: shown once
    return ok({**user_item(account), **shown})


class ManageBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: UserId
    action: Literal["disable", "enable", "promote", "demote", "delete"]


@router.post(
    "/api/user/manage",
    **described("disable, enable, promote, demote or delete an account (admin)", WRITE),
)
async def manage_user(request: Request, body: ManageBody, caller: AdminCaller) -> Response:
    database, me = database_of(request), caller.account.id
    account = await run_in_threadpool(account_admin.get_account, database, body.id)
    if body.action == "delete":
        await run_in_threadpool(lambda: account_admin.delete_account(database, body.id, by=me))
        await audit(request, caller, "user.delete", account.username)
        return ok()
    if body.action in ("promote", "demote"):
        role = "admin" if body.action == "promote" else "user"
        account = await run_in_threadpool(
            lambda: account_admin.set_role(database, body.id, role, by=me)
        )
    else:
        if body.id == me and body.action == "disable":
            raise InvalidInput("id", "you cannot disable your own account")
        status = f"{body.action}d"
        account = await run_in_threadpool(accounts.set_status, database, account.username, status)
    await audit(request, caller, f"user.{body.action}", account.username)
    return ok(user_item(account))


class GrantBody(BaseModel):
    """A grant (positive) or a deduction (negative), in quota or USD, with its reason."""

    model_config = ConfigDict(extra="forbid")
    id: UserId
    quota: int | None = Field(None, ge=-MAX_QUOTA, le=MAX_QUOTA)
    usd: Decimal | None = Field(None, ge=-Decimal(10**12), le=Decimal(10**12), allow_inf_nan=False)
    reason: str = Field(min_length=1, max_length=200)

    def amount(self) -> int:
        if (self.quota is None) == (self.usd is None):
            raise InvalidInput("quota", "send either quota or usd")
        if self.quota is not None:
            return self.quota
        assert self.usd is not None
        quota = usd_to_quota(abs(self.usd))
        return quota if self.usd > 0 else -quota


@router.post(
    "/api/user/grant",
    **described("Grant or deduct quota with a reason (admin): a ledger entry", WRITE),
)
async def grant(request: Request, body: GrantBody, caller: AdminCaller) -> Response:
    amount = body.amount()
    database = database_of(request)
    account = await run_in_threadpool(account_admin.get_account, database, body.id)
    balance = await run_in_threadpool(
        lambda: ledger.adjust(database, body.id, amount, body.reason, by=caller.account.username)
    )
    services_of(request).alerts.check(alert_states.account_subject(body.id))
    action = "user.grant" if amount > 0 else "user.deduct"
    await audit(request, caller, action, account.username, quota=amount, reason=body.reason)
    return ok({"id": body.id, "quota_changed": amount, "quota": balance,
               "quota_usd": format_usd(balance)})  # fmt: skip


class IdBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: UserId


@router.post(
    "/api/user/reset_password",
    **described("A new random password (admin), shown once; every session ends", WRITE),
)
async def reset_password(request: Request, body: IdBody, caller: AdminCaller) -> Response:
    database = database_of(request)
    account = await run_in_threadpool(account_admin.get_account, database, body.id)
    password = await run_in_threadpool(account_admin.reset_password, database, body.id)
    await audit(request, caller, "user.reset_password", account.username)
    return ok({"id": body.id, "username": account.username, "password": password})


# ------------------------------------------------------------------ every user's keys


@router.get("/api/admin/keys/", **described("Every user's API keys (admin), newest first"))
async def all_keys(
    request: Request, caller: AdminCaller, keyword: Keyword = None, p: Page = None,
    page: Page = None, page_size: Size = 20,
) -> Response:  # fmt: skip
    number = p or page or 1
    found, total = await run_in_threadpool(
        keys.all_keys_page, database_of(request), number, page_size, keyword
    )
    now = time.time()
    items = [{**key_item(key, now), "username": key.owner} for key in found]
    return ok(page_data(items, total, number, page_size))


class KeyStatusBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: UserId
    status: Literal[1, 2]


@router.put(
    "/api/admin/keys/", **described("Enable (1) or disable (2) any user's key (admin)", WRITE)
)
async def key_status(request: Request, body: KeyStatusBody, caller: AdminCaller) -> Response:
    status = "enabled" if body.status == 1 else "disabled"
    key = await run_in_threadpool(keys.set_key_status, database_of(request), body.id, status)
    await audit(request, caller, f"key.{status[:-1]}", f"{key.owner}/{key.name}", id=key.id)
    return ok({**key_item(key, time.time()), "username": key.owner})


# ------------------------------------------------------------------ one's own password


class PasswordChange(BaseModel):
    """new-api's self update, for the password: the current one and the new one."""

    model_config = ConfigDict(extra="ignore")
    original_password: str = Field(min_length=1, max_length=1024)
    password: str = Field(min_length=1, max_length=1024)


@router.put(
    "/api/user/self",
    **described(
        "Change one's password (the current one required); every other session ends",
        WRITE,
    ),
)
async def change_password(
    request: Request, body: PasswordChange, caller: Annotated[Caller, Depends(any_caller)]
) -> Response:
    """Throttled as logins are: the current password is a password guess."""
    call, account = Call.of(request), caller.account
    await api.throttle_password_attempt(call, account.username)
    try:
        ended = await run_in_threadpool(
            lambda: account_admin.change_password(
                database_of(request), account, body.original_password, body.password,
                keep_session=caller.session_id,
            )
        )  # fmt: skip
    except AuthenticationFailed:
        await api.record_password_failure(call, account.username, "password_change_failed")
        raise
    await api.password_accepted(call, account.username)
    security_log.info(
        "password_changed user=%r address=%s sessions_ended=%d",
        account.username, call.client_address(), ended,
    )  # fmt: skip
    return ok({"sessions_ended": ended})
