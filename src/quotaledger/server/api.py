"""The JSON API of SPEC §4 that the framework serves (FastAPI): log, login and token,
top-up, pricing, status, health and metrics. Handlers are thin: authenticate, call the
domain, answer with the envelope; refusals are raised and answered by the front door. The
balance and usage charges are answered by `balance.py` and `charges.py`, through the
front door."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from quotaledger import __version__
from quotaledger.billing import ledger, pricing
from quotaledger.errors import AuthenticationFailed, InvalidInput
from quotaledger.identity import accounts, sessions
from quotaledger.money import MAX_QUOTA, QUOTA_PER_USD, format_usd, usd_to_quota
from quotaledger.server import openapi
from quotaledger.server.auth import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    Caller,
    admin_only,
    any_caller,
    session_only,
)
from quotaledger.server.bodies import parse_json
from quotaledger.server.calls import Call
from quotaledger.server.errors import HTTPError, within_limit
from quotaledger.server.responses import EnvelopeResponse, ok
from quotaledger.server.services import Services

router = APIRouter()
security_log = logging.getLogger("quotaledger.security")

AnyCaller = Annotated[Caller, Depends(any_caller)]
SessionCaller = Annotated[Caller, Depends(session_only)]
# A dependency, so that a caller without an admin token gets 401/403 before any 422.
AdminCaller = Annotated[Caller, Depends(admin_only)]


def _services(request: Request) -> Services:
    services: Services = request.app.state.ql
    return services


# ---------------------------------------------------------------- login and token


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class PasswordBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str = Field(min_length=1, max_length=1024)


async def _throttle_password_attempt(call: Call, username: str) -> None:
    """Before a password is checked: refused at once while its account and address (or the
    address) waits out its wrong passwords (`login_throttle`), then counted against the
    attempt rates, 5/min per account and address and 20/min per address (defaults)."""
    services = call.services
    address = call.client_address()
    try:
        wait = await services.logins.wait(username, address)
        if wait:
            # The same words for every account, known or not.
            message = f"too many failed attempts: try again in {wait} s"
            raise HTTPError(429, message, {"Retry-After": str(wait)})
        within_limit(await services.limiter.hit("login", f"{address}|{username.lower()}"))
        within_limit(await services.limiter.hit("login_address", address))
    except HTTPError:
        services.metrics.security_events.labels("lockout").inc()
        security_log.warning("lockout user=%r address=%s", username, address)
        raise


async def _record_failure(call: Call, username: str, event: str) -> None:
    services = call.services
    address = call.client_address()
    await services.logins.failed(username, address)
    services.metrics.security_events.labels(event).inc()
    security_log.warning("%s user=%r address=%s", event, username, address)


async def _password_accepted(call: Call, username: str) -> None:
    """The right password: the account's wrong ones from this address are forgotten."""
    await call.services.logins.succeeded(username, call.client_address())


# For the other routes that check a password again (the password change, admin_users.py).
throttle_password_attempt = _throttle_password_attempt
record_password_failure = _record_failure
password_accepted = _password_accepted


@router.post("/api/user/login", **openapi.with_body(openapi.LOGIN, LoginBody))
async def login(request: Request) -> Response:
    call = Call.of(request)
    body = parse_json(LoginBody, await request.body())
    services = call.services
    await _throttle_password_attempt(call, body.username)
    try:
        account = await run_in_threadpool(
            accounts.authenticate, services.database, body.username, body.password
        )
    except AuthenticationFailed:
        await _record_failure(call, body.username, "login_failed")
        raise
    await _password_accepted(call, body.username)
    max_age = services.settings.session_max_age
    new = await run_in_threadpool(sessions.start_session, services.database, account, max_age)
    security_log.info("login user=%r address=%s", account.username, call.client_address())
    response = ok(account.as_api_json())
    _set_session_cookies(response, new, max_age, secure=call.is_https())
    return response


def _set_session_cookies(
    response: Response, new: sessions.NewSession, max_age: int, *, secure: bool
) -> None:
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
async def logout(request: Request, caller: SessionCaller) -> Response:
    assert caller.session_id is not None
    await run_in_threadpool(sessions.end_session, _services(request).database, caller.session_id)
    response = ok()
    response.delete_cookie(SESSION_COOKIE, samesite="strict")
    response.delete_cookie(CSRF_COOKIE, samesite="strict")
    return response


@router.post("/api/user/token", **openapi.with_body(openapi.ISSUE_TOKEN, PasswordBody))
async def issue_token(request: Request, caller: SessionCaller) -> Response:
    call = Call.of(request)
    body = parse_json(PasswordBody, await request.body())
    account = caller.account
    await _throttle_password_attempt(call, account.username)
    try:
        token = await run_in_threadpool(
            accounts.issue_token, call.services.database, account, body.password
        )
    except AuthenticationFailed:
        await _record_failure(call, account.username, "token_password_failed")
        raise
    await _password_accepted(call, account.username)
    replaced = "replaced" if account.token_hint else "issued"
    call.services.metrics.security_events.labels(f"token_{replaced}").inc()
    security_log.info(
        "token_%s user=%r address=%s", replaced, account.username, call.client_address()
    )
    return ok({"token": token})


# ---------------------------------------------------------------- admin


class TopUpBody(BaseModel):
    """Exactly one of `quota` or `usd`."""

    model_config = ConfigDict(
        extra="forbid",
        title="Top-up",
        json_schema_extra={"oneOf": [{"required": ["quota"]}, {"required": ["usd"]}]},
    )
    # None only when left out (and then not in the schema): `_one_amount` checks the pair.
    quota: Annotated[int, Field(gt=0, le=MAX_QUOTA)] | SkipJsonSchema[None] = None
    usd: (
        Annotated[Decimal, Field(gt=0, le=Decimal(10**12), allow_inf_nan=False)]
        | SkipJsonSchema[None]
    ) = None

    @model_validator(mode="after")
    def _one_amount(self) -> TopUpBody:
        if self.quota is not None and self.usd is not None:
            raise PydanticCustomError("top_up", "send either usd or quota, not both")
        if self.quota is None and self.usd is None:
            raise PydanticCustomError("top_up", "send usd or quota")
        return self


@router.post("/api/user/{username}/topup", **openapi.with_body(openapi.TOPUP, TopUpBody))
async def top_up(request: Request, username: str, caller: AdminCaller) -> Response:
    body = parse_json(TopUpBody, await request.body())
    quota = body.quota if body.usd is None else usd_to_quota(body.usd)
    if quota is None or quota <= 0:
        raise InvalidInput("usd", "amount is below one quota unit")
    balance = await run_in_threadpool(
        ledger.top_up,
        _services(request).database,
        username,
        quota,
        f"top-up by {caller.account.username}",
    )
    data = {"username": username, "quota_granted": quota, "quota": balance}
    return ok({**data, "quota_usd": format_usd(balance)})


# ---------------------------------------------------------------- public


@router.get("/api/pricing", **openapi.PRICING)
async def pricing_list(request: Request) -> Response:
    database = _services(request).database
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
        await run_in_threadpool(accounts.count_accounts, _services(request).database)
    except Exception:
        return EnvelopeResponse(None, message="database unavailable", status_code=503)
    return ok({"status": "ok", "database": "ok"})


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    services = _services(request)
    if services.settings.metrics == "off":
        raise HTTPError(404, "not found")
    if services.settings.metrics == "admin":
        await admin_only(request)
    return Response(services.metrics.render(), media_type="text/plain; version=0.0.4")
