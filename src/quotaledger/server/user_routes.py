"""new-api's user routes besides the balance (SPEC §9): the caller's groups and the models
they may call; and `GET /api/user/token`, new-api's way to make a system token, answered 405
with the reason (here the password is checked again: `POST` with the password)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from quotaledger import pricing
from quotaledger.server.auth import Caller, any_caller
from quotaledger.server.errors import HTTPError
from quotaledger.server.responses import ok
from quotaledger.server.services import Services

router = APIRouter()
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


@router.get("/api/user/self/groups", summary="The caller's groups: {name: {ratio, desc}}")
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


@router.get("/api/user/models", summary="The models the caller may call through the relay")
async def user_models(request: Request, caller: AnyCaller) -> Response:
    return await _models(request, caller)


@router.get("/api/user/self/models", summary="The models the caller may call (same answer)")
async def self_models(request: Request, caller: AnyCaller) -> Response:
    return await _models(request, caller)


@router.get("/api/user/token", include_in_schema=False)
async def token_by_get() -> Response:
    raise HTTPError(405, ISSUED_BY_POST_ONLY, {"Allow": "POST"})
