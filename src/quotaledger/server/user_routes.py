"""new-api's user routes besides the balance (SPEC §9): the caller's groups and the models
they may call; redeeming a code (`POST /api/user/topup`); and `GET /api/user/token`,
new-api's way to make a system token, answered 405 with the reason (here the password is
checked again: `POST` with the password)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from quotaledger.alerting import states as alert_states
from quotaledger.billing import pricing, redemptions
from quotaledger.server.auth import Caller, any_caller
from quotaledger.server.calls import Call
from quotaledger.server.errors import HTTPError, within_limit
from quotaledger.server.newapi_docs import API_WRITE, described
from quotaledger.server.responses import ok
from quotaledger.server.services import Services

router = APIRouter()
security_log = logging.getLogger("quotaledger.security")
AnyCaller = Annotated[Caller, Depends(any_caller)]
ISSUED_BY_POST_ONLY = (
    "GET /api/user/token does not issue tokens here: a system token is issued only after the "
    'password is checked again, by POST /api/user/token with {"password": ...} from a '
    "logged-in session (or the Account Settings page)"
)


def _services(request: Request) -> Services:
    services: Services = request.app.state.ql
    return services


def usable_groups(own_group: str) -> list[str]:
    """The pricing groups a user's keys may use: their own, and `default` (`keys.create_key`
    accepts exactly these)."""
    return sorted({own_group, "default"})


@router.get("/api/user/self/groups", **described("The caller's groups: {name: {ratio, desc}}"))
async def self_groups(request: Request, caller: AnyCaller) -> Response:
    ratios = await run_in_threadpool(pricing.list_group_ratios, _services(request).database)
    own = caller.account.group
    data = {
        name: {
            "ratio": float(ratios.get(name, 1)),
            "desc": "your group" if name == own else "the default group",
        }
        for name in usable_groups(own)
    }
    return ok(data)


async def _models(request: Request, caller: Caller) -> Response:
    offers = await _services(request).relay.offers.get()
    return ok(sorted(offers.models))


@router.get("/api/user/models", **described("The models the caller may call through the relay"))
async def user_models(request: Request, caller: AnyCaller) -> Response:
    return await _models(request, caller)


@router.get("/api/user/self/models", **described("The models the caller may call (the same)"))
async def self_models(request: Request, caller: AnyCaller) -> Response:
    return await _models(request, caller)


@router.get("/api/user/token", include_in_schema=False)
async def token_by_get() -> Response:
    raise HTTPError(405, ISSUED_BY_POST_ONLY, {"Allow": "POST"})


class RedeemBody(BaseModel):
    """new-api's top-up body: the code as `key`."""

    model_config = ConfigDict(extra="ignore")
    key: str = Field(min_length=1, max_length=128)


@router.post(
    "/api/user/topup",
    **described("Redeem a redemption code; data: the quota added", (*API_WRITE, 409)),
)
async def redeem(request: Request, body: RedeemBody, caller: AnyCaller) -> Response:
    """Every attempt counts against the account's and the address's limits (defaults 10/min
    and 30/min), so that guessing codes is slow whichever accounts or addresses it uses."""
    call = Call.of(request)
    limiter, address = call.services.limiter, call.client_address()
    account = caller.account
    within_limit(await limiter.hit("redeem", f"user:{account.id}"))
    within_limit(await limiter.hit("redeem_address", address))
    try:
        quota = await run_in_threadpool(
            redemptions.redeem, call.services.database, account.id, body.key
        )
    except Exception:
        security_log.warning("redeem_failed user=%r address=%s", account.username, address)
        raise
    security_log.info("redeemed user=%r quota=%d", account.username, quota)
    call.services.alerts.check(alert_states.account_subject(account.id))  # a resolved alert?
    return ok(quota)
