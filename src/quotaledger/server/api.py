"""The JSON API of SPEC §4. Handlers are thin: authenticate, call the domain, answer with
the envelope. Domain errors become HTTP statuses in `errors.py`."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from quotaledger import __version__, accounts, ledger, pricing, sessions
from quotaledger.accounts import Account
from quotaledger.errors import AuthenticationFailed, InvalidInput, QuotaLedgerError
from quotaledger.money import MAX_QUOTA, QUOTA_PER_USD, format_usd, usd_to_quota
from quotaledger.server import openapi
from quotaledger.server.auth import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    Caller,
    account_by_token,
    authenticate,
    authenticate_admin,
    authenticate_session,
    bearer_token,
    check_caller,
    client_address,
    is_https,
    require_admin,
    token_account,
)
from quotaledger.server.errors import HTTPError, describe_validation_errors, response_for
from quotaledger.server.responses import EnvelopeResponse, envelope, ok
from quotaledger.server.state import AppState, FixedPrices

router = APIRouter()
security_log = logging.getLogger("quotaledger.security")


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.ql
    return state


def account_json(account: Account, fixed_prices: dict[str, str] | None = None) -> dict[str, Any]:
    """An account as the API shows it: never a password hash, never a token."""
    data: dict[str, Any] = {
        "id": account.id,
        "username": account.username,
        "display_name": account.display_name,
        "group": account.group,
        "role": account.role,
        "status": account.status,
        "quota": account.quota,
        "used_quota": account.used_quota,
        "request_count": account.request_count,
        "quota_usd": format_usd(account.quota),
        "used_quota_usd": format_usd(account.used_quota),
        "token_hint": account.token_hint,
        "token_created_at": account.token_created_at,
    }
    if fixed_prices is not None:
        data["ModelFixedPrice"] = fixed_prices
    return data


# ---------------------------------------------------------------- balance


# `GET /api/user/self` with a token is answered by `HotRoutes` in front of everything (same
# checks: `balance_by_token`); the route below serves browser sessions and documents both.


@router.get("/api/user/self", **openapi.USER_SELF)
async def user_self(request: Request) -> Response:
    try:
        return await _balance(request)
    except (QuotaLedgerError, HTTPError) as refusal:
        return response_for(refusal)


async def _balance(request: Request) -> Response:
    state = _state(request)
    token = bearer_token(request)
    if token is not None:
        address = functools.partial(client_address, request)
        claimed = request.headers.get("new-api-user")
        account, headers = await balance_by_token(state, token, address, claimed)
    else:
        account = (await authenticate(request)).account
        headers = {}
        if state.limiter.is_enabled("balance"):
            headers = await state.limiter.check("balance", f"user:{account.id}")
    body = balance_body(account, await state.fixed_prices())
    return Response(body, media_type="application/json", headers=headers)


async def balance_by_token(
    state: AppState, token: str, address: Callable[[], str], claimed: str | None
) -> tuple[Account, dict[str, str]]:
    """The token's account and the rate-limit headers for its balance answer, or the
    refusal (401, 403, 429)."""
    account, headers = await token_account(state, token, address, limit_token=True)
    check_caller(account, claimed)
    return account, headers


def balance_body(account: Account, fixed_prices: FixedPrices) -> bytes:
    """The balance answer's JSON. Monitors poll balances that rarely change between two
    polls: an answer is encoded once per (account row, prices) and reused while both stay
    the same (the row is still read from the database on every query). Answers with more
    than `_REMEMBERED_PRICES` per-call prices are not kept: the rest take ~4 MiB at most."""
    if len(fixed_prices) > _REMEMBERED_PRICES:
        return _encode_balance(account, fixed_prices)
    return _remembered_balance(account, fixed_prices)


_REMEMBERED_PRICES = 64


def _encode_balance(account: Account, fixed_prices: FixedPrices) -> bytes:
    return envelope(account_json(account, dict(fixed_prices)))


_remembered_balance = functools.lru_cache(maxsize=1024)(_encode_balance)


@router.get("/api/log/self", **openapi.LOG_SELF)
async def log_self(
    request: Request,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    caller = await authenticate(request)
    records, total = await run_in_threadpool(
        ledger.usage_page, _state(request).database, caller.account.id, page, page_size
    )
    items = [{**record.__dict__, "quota_usd": format_usd(record.quota)} for record in records]
    return ok({"items": items, "total": total, "page": page, "page_size": page_size})


# ---------------------------------------------------------------- login and token


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class PasswordBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str = Field(min_length=1, max_length=1024)


async def _throttle_password_attempt(request: Request, username: str) -> None:
    """5/min per account and 20/min per client address (defaults), then a growing delay
    after repeated failures so that guessing gets slower the longer it goes on."""
    state = _state(request)
    address = client_address(request)
    try:
        await state.limiter.check("login", username.lower())
        await state.limiter.check("login_address", address)
    except HTTPError:
        state.metrics.security_events.labels("lockout").inc()
        security_log.warning("lockout user=%r address=%s", username, address)
        raise
    failures = await state.limiter.failures(username.lower())
    if failures >= 3:
        await asyncio.sleep(min(0.25 * 2 ** (failures - 3), 8.0))


async def _record_failure(request: Request, username: str, event: str) -> None:
    state = _state(request)
    await state.limiter.record_failure(username.lower())
    state.metrics.security_events.labels(event).inc()
    security_log.warning("%s user=%r address=%s", event, username, client_address(request))


@router.post("/api/user/login", **openapi.LOGIN)
async def login(request: Request, body: LoginBody) -> Response:
    state = _state(request)
    await _throttle_password_attempt(request, body.username)
    try:
        account = await run_in_threadpool(
            accounts.authenticate, state.database, body.username, body.password
        )
    except AuthenticationFailed:
        await _record_failure(request, body.username, "login_failed")
        raise
    await state.limiter.clear_failures(body.username.lower())
    new = await run_in_threadpool(
        sessions.start_session, state.database, account, state.settings.session_max_age
    )
    security_log.info("login user=%r address=%s", account.username, client_address(request))
    response = ok(account_json(account))
    _set_session_cookies(request, response, new, state.settings.session_max_age)
    return response


def _set_session_cookies(
    request: Request, response: Response, new: sessions.NewSession, max_age: int
) -> None:
    secure = is_https(request)
    response.set_cookie(
        SESSION_COOKIE,
        new.session_id,
        max_age=max_age,
        httponly=True,
        secure=secure,
        samesite="strict",
    )
    response.set_cookie(
        CSRF_COOKIE,
        new.csrf_token,
        max_age=max_age,
        httponly=False,
        secure=secure,
        samesite="strict",
    )


@router.post("/api/user/logout", **openapi.LOGOUT)
async def logout(request: Request) -> Response:
    caller = await authenticate_session(request)
    assert caller.session_id is not None
    await run_in_threadpool(sessions.end_session, _state(request).database, caller.session_id)
    response = ok()
    response.delete_cookie(SESSION_COOKIE, samesite="strict")
    response.delete_cookie(CSRF_COOKIE, samesite="strict")
    return response


@router.post("/api/user/token", **openapi.ISSUE_TOKEN)
async def issue_token(request: Request, body: PasswordBody) -> Response:
    state = _state(request)
    account = (await authenticate_session(request)).account
    await _throttle_password_attempt(request, account.username)
    try:
        token = await run_in_threadpool(
            accounts.issue_token, state.database, account, body.password
        )
    except AuthenticationFailed:
        await _record_failure(request, account.username, "token_password_failed")
        raise
    replaced = "replaced" if account.token_hint else "issued"
    state.metrics.security_events.labels(f"token_{replaced}").inc()
    security_log.info(
        "token_%s user=%r address=%s", replaced, account.username, client_address(request)
    )
    return ok({"token": token})


# ---------------------------------------------------------------- admin


# A dependency, so that a caller without an admin token gets 401/403 before any 422.
AdminCaller = Annotated[Caller, Depends(authenticate_admin)]


class UsageBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    model: str = Field(min_length=1, max_length=128)
    request_id: str = Field(min_length=1, max_length=128)
    prompt_tokens: int = Field(default=0, ge=0, le=ledger.MAX_TOKENS)
    completion_tokens: int = Field(default=0, ge=0, le=ledger.MAX_TOKENS)


@router.post("/api/usage", **openapi.usage(UsageBody.model_json_schema()))
async def charge_usage(request: Request) -> Response:
    """Served by `HotRoutes` in plain ASGI, with the same `charge_by_token`; this route
    publishes its OpenAPI description."""
    address = functools.partial(client_address, request)
    claimed = request.headers.get("new-api-user")
    try:
        data = await charge_by_token(
            _state(request), bearer_token(request), address, claimed, await request.body()
        )
    except (QuotaLedgerError, HTTPError) as refusal:
        return response_for(refusal)
    return ok(data)


async def charge_by_token(
    state: AppState,
    token: str | None,
    address: Callable[[], str],
    claimed: str | None,
    body: bytes,
) -> dict[str, Any]:
    """Charge one usage record for the operator's gateway (an admin token): 401/403 come
    before any 422, then 402/409 from the ledger (which change nothing)."""
    require_admin(await account_by_token(state, token, address, claimed))
    try:
        usage = UsageBody.model_validate_json(body)
    except ValidationError as exc:
        raise HTTPError(422, describe_validation_errors(exc.errors())) from None
    request = ledger.UsageRequest(
        username=usage.username,
        model=usage.model,
        request_id=usage.request_id,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
    )
    try:
        result = await ledger.charge_async(state.database, request)
    except QuotaLedgerError as exc:
        state.metrics.charges.labels(type(exc).__name__).inc()
        raise
    state.metrics.charges.labels("replayed" if result.replayed else "charged").inc()
    if not result.replayed:
        state.metrics.quota_charged.inc(result.quota_charged)
    return {
        "request_id": result.request_id,
        "quota_charged": result.quota_charged,
        "quota_remaining": result.quota_remaining,
    }


class QuotaTopUp(BaseModel):
    model_config = ConfigDict(extra="forbid", title="Top up in quota")
    quota: int = Field(gt=0, le=MAX_QUOTA)


class UsdTopUp(BaseModel):
    model_config = ConfigDict(extra="forbid", title="Top up in USD")
    usd: Decimal = Field(gt=0, le=Decimal(10**12), allow_inf_nan=False)


@router.post("/api/user/{username}/topup", **openapi.TOPUP)
async def top_up(
    request: Request, username: str, body: QuotaTopUp | UsdTopUp, caller: AdminCaller
) -> Response:
    """Exactly one of `quota` or `usd` (the body schema says so too)."""
    quota = body.quota if isinstance(body, QuotaTopUp) else usd_to_quota(body.usd)
    if quota <= 0:
        raise InvalidInput("usd", "amount is below one quota unit")
    balance = await run_in_threadpool(
        ledger.top_up,
        _state(request).database,
        username,
        quota,
        f"top-up by {caller.account.username}",
    )
    data = {"username": username, "quota_granted": quota, "quota": balance}
    return ok({**data, "quota_usd": format_usd(balance)})


# ---------------------------------------------------------------- public


@router.get("/api/pricing", **openapi.PRICING)
async def pricing_list(request: Request) -> Response:
    database = _state(request).database
    prices = await run_in_threadpool(pricing.list_prices, database)
    ratios = await run_in_threadpool(pricing.list_group_ratios, database)
    models = [p.as_row() for p in prices]
    return ok({"models": models, "group_ratios": {k: str(v) for k, v in ratios.items()}})


@router.get("/api/status", **openapi.STATUS)
async def status() -> Response:
    return ok(
        {
            "system_name": "quotaledger",
            "version": __version__,
            "quota_per_unit": QUOTA_PER_USD,
            "display_in_currency": True,
        }
    )


@router.get("/healthz", **openapi.HEALTHZ)
async def healthz(request: Request) -> Response:
    try:
        await run_in_threadpool(accounts.count_accounts, _state(request).database)
    except Exception:
        return EnvelopeResponse(None, message="database unavailable", status_code=503)
    return ok({"status": "ok", "database": "ok"})


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    state = _state(request)
    if state.settings.metrics == "off":
        raise HTTPError(404, "not found")
    if state.settings.metrics == "admin":
        await authenticate_admin(request)
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")
