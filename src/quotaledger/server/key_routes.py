"""new-api's token routes (SPEC §9) over our API keys (`keys.py`): `GET/POST/PUT /api/token/`,
`GET/DELETE /api/token/{id}`, `GET /api/token/search`, `POST /api/token/batch`.

A key answers with new-api's field names and types, then ours (the periodic limit, the
request count). Differences, on purpose: a key is shown once, in `POST`'s answer, and never
again: `key` is masked (`sk-ql-**********` + its last 4 characters) and new-api's reveal
routes (`POST /api/token/{id}/key`, `POST /api/token/batch/keys`) answer 410 with the reason.
Fields new-api clients send that mean nothing here (`cross_group_retry`, `auto_groups`...)
are ignored; a `PUT` changes only the fields it sends.
"""

from __future__ import annotations

import re
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from quotaledger import tokens
from quotaledger.alerting import states as alert_states
from quotaledger.errors import InvalidInput
from quotaledger.identity import keys
from quotaledger.identity.keys import ApiKey, KeyLimits
from quotaledger.money import MAX_QUOTA, format_usd
from quotaledger.relay import rates
from quotaledger.relay.limits import Rates
from quotaledger.server.auth import Caller, any_caller
from quotaledger.server.errors import HTTPError
from quotaledger.server.newapi_docs import API_READ, API_WRITE, described
from quotaledger.server.responses import ok
from quotaledger.server.services import Services

router = APIRouter()
AnyCaller = Annotated[Caller, Depends(any_caller)]
Page = Annotated[int | None, Query(ge=1, le=1_000_000)]
Size = Annotated[int | None, Query(ge=1, le=100)]
Name = Annotated[str | None, Query(max_length=64)]
KeyId = Annotated[int, Path(ge=1, le=2**62)]
BodyId = Annotated[int, Field(ge=1, le=2**62)]

# new-api's token statuses.
STATUS = {"enabled": 1, "disabled": 2, "expired": 3, "exhausted": 4}
NEVER_REVEALED = (
    "API keys are shown once, when they are created, and never again: only their SHA-256 "
    "is kept. Create a new key (and delete the old one) if this one is lost."
)
MASK = "**********"


def _database(request: Request) -> Any:
    services: Services = request.app.state.ql
    return services.database


def key_item(key: ApiKey, now: float) -> dict[str, Any]:
    """A key as new-api shows a token (masked), then our fields."""
    state = key.state(now)
    period_used = key.period_used_now(now)
    return {
        "id": key.id,
        "user_id": key.user_id,
        "key": keys.KEY_PREFIX + MASK + key.hint.lstrip("…"),
        "status": STATUS.get(state, 2),
        "name": key.name,
        "created_time": key.created_at,
        "accessed_time": key.last_used_at or key.created_at,
        "expired_time": key.expires_at if key.expires_at is not None else -1,
        "remain_quota": key.remain_quota,
        "unlimited_quota": key.unlimited,
        "model_limits_enabled": key.models is not None,
        "model_limits": ",".join(sorted(key.models or ())),
        "allow_ips": "\n".join(str(n) for n in key.networks or ()),
        "used_quota": key.used_quota,
        "group": key.group or "",
        # ours
        "hint": key.hint,
        "state": state,
        "request_count": key.request_count,
        "remain_quota_usd": format_usd(key.remain_quota),
        "used_quota_usd": format_usd(key.used_quota),
        "period": key.period,
        "period_quota": key.period_quota,
        "period_used": period_used,
        "period_remaining": key.period_remaining(now),
        "period_resets_at": key.period_resets_at(now),
        # SPEC §12's rate limits (new-api has none): 0 means no limit of that kind.
        "rate_limit_rpm": key.rpm or 0,
        "rate_limit_tpm": key.tpm or 0,
        "rate_limit_concurrency": key.concurrency or 0,
    }


class KeyBody(BaseModel):
    """new-api's token fields (and our periodic limit); anything else is ignored."""

    model_config = ConfigDict(extra="ignore")
    id: BodyId | None = None
    name: str | None = Field(None, max_length=64)
    status: Literal[1, 2] | None = None
    expired_time: int | None = Field(None, ge=-1, le=2**40)
    remain_quota: int | None = Field(None, ge=0, le=MAX_QUOTA)
    unlimited_quota: bool | None = None
    model_limits_enabled: bool | None = None
    model_limits: str | None = Field(None, max_length=20_000)
    allow_ips: str | None = Field(None, max_length=20_000)
    group: str | None = Field(None, max_length=64)
    period: Literal["day", "month"] | None = None
    period_quota: int | None = Field(None, gt=0, le=MAX_QUOTA)
    rate_limit_rpm: int | None = Field(None, ge=0, le=2**53)  # 0 or null: no limit
    rate_limit_tpm: int | None = Field(None, ge=0, le=2**53)
    rate_limit_concurrency: int | None = Field(None, ge=0, le=2**53)

    def rates(self, current: Rates) -> Rates | None:
        """The key's rate limits after this body (None: it sent none of them)."""
        sent = self.model_fields_set
        if not sent & {"rate_limit_rpm", "rate_limit_tpm", "rate_limit_concurrency"}:
            return None

        def pick(name: str, old: int | None) -> int | None:
            return (getattr(self, name) or None) if name in sent else old

        return Rates(
            pick("rate_limit_rpm", current.rpm), pick("rate_limit_tpm", current.tpm),
            pick("rate_limit_concurrency", current.concurrency),
        )  # fmt: skip

    def changes(self) -> dict[str, Any]:
        """The `keys.update_key` changes this body asks for (only the fields it sent)."""
        sent = self.model_fields_set
        found: dict[str, Any] = {}
        if "name" in sent and self.name is not None:
            found["name"] = self.name
        if sent & {"unlimited_quota", "remain_quota"}:
            found["quota"] = None if self.unlimited_quota else (self.remain_quota or 0)
        if "expired_time" in sent:
            found["expires_at"] = None if self.expired_time in (None, -1, 0) else self.expired_time
        if sent & {"model_limits_enabled", "model_limits"}:
            found["models"] = self._models()
        if "allow_ips" in sent:
            found["networks"] = _split(self.allow_ips) or None
        if "group" in sent:
            found["group"] = self.group or None
        if sent & {"period", "period_quota"}:
            found["period"] = (self.period, self.period_quota) if self.period else None
        return found

    def _models(self) -> tuple[str, ...] | None:
        enabled = self.model_limits_enabled
        if enabled is None:  # only model_limits sent: a list limits, an empty one does not
            enabled = bool(_split(self.model_limits))
        return tuple(_split(self.model_limits)) if enabled else None

    def limits(self) -> KeyLimits:
        """A new key's limits; without `remain_quota` or `unlimited_quota`, unlimited."""
        changes = self.changes()
        period = changes.get("period")
        return KeyLimits(
            quota=changes.get("quota"),
            expires_at=changes.get("expires_at"),
            models=changes.get("models"),
            networks=changes.get("networks"),
            group=changes.get("group"),
            period=period[0] if period else None,
            period_quota=period[1] if period else None,
        )


def _split(text: str | None) -> list[str]:
    """new-api's lists: comma-separated models, newline-separated addresses (either here)."""
    return [part for part in re.split(r"[\s,]+", text or "") if part]


# ------------------------------------------------------------------ reading


async def _page(
    request: Request, caller: Caller, p: int | None, page: int | None, size: int | None,
    name: str | None = None, digest: str | None = None,
) -> Response:  # fmt: skip
    number, page_size = p or page or 1, size or 20
    found, total = await run_in_threadpool(
        keys.key_page, _database(request), caller.account.id, number, page_size,
        name=name, digest=digest,
    )  # fmt: skip
    now = time.time()
    items = [key_item(key, now) for key in found]
    return ok({"items": items, "total": total, "page": number, "page_size": page_size})


@router.get("/api/token/", **described("The caller's API keys, newest first (new-api's tokens)"))
@router.get("/api/token", include_in_schema=False)
async def list_keys(
    request: Request, caller: AnyCaller, p: Page = None, page: Page = None,
    page_size: Size = None, size: Size = None,
) -> Response:  # fmt: skip
    return await _page(request, caller, p, page, page_size or size)


@router.get("/api/token/search", **described("The caller's keys by name, or by the full key"))
async def search_keys(
    request: Request, caller: AnyCaller, keyword: Name = None,
    token: Annotated[str | None, Query(max_length=128)] = None, p: Page = None,
    page: Page = None, page_size: Size = None,
) -> Response:  # fmt: skip
    """`keyword`: a name, or a `%` pattern. `token`: a whole key (only its hash is kept,
    so a part of a key finds nothing)."""
    digest = tokens.hash_token(token.strip()) if token else None  # a partial key: no match
    return await _page(request, caller, p, page, page_size, keyword or None, digest)


@router.get("/api/token/{key_id}", **described("One of the caller's API keys", (*API_READ, 404)))
async def get_key(request: Request, key_id: KeyId, caller: AnyCaller) -> Response:
    key = await run_in_threadpool(
        keys.get_key, _database(request), key_id, user_id=caller.account.id
    )
    if key.deleted_at is not None:
        raise HTTPError(404, f"no API key with id {key_id}")
    return ok(key_item(key, time.time()))


# ------------------------------------------------------------------ writing


@router.post(
    "/api/token/", **described("Create an API key: the key is in this answer, only here", API_WRITE)
)
@router.post("/api/token", include_in_schema=False)
async def create_key(request: Request, body: KeyBody, caller: AnyCaller) -> Response:
    if not body.name:
        raise InvalidInput("name", "must be 1-64 characters")
    database = _database(request)
    key, raw = await run_in_threadpool(
        keys.create_key, database, caller.account.id, body.name, body.limits()
    )
    key = await _with_rates(database, key, body)
    return ok({**key_item(key, time.time()), "key": raw})


async def _with_rates(database: Any, key: ApiKey, body: KeyBody) -> ApiKey:
    """`key` after the rate limits `body` sets, if any (SPEC §12)."""
    new = body.rates(Rates(key.rpm, key.tpm, key.concurrency))
    if new is None:
        return key
    await run_in_threadpool(rates.set_key_rates, database, key.id, new)
    return await run_in_threadpool(keys.get_key, database, key.id)


@router.put(
    "/api/token/", **described("Change an API key (status_only=true: enable or disable)", API_WRITE)
)
@router.put("/api/token", include_in_schema=False)
async def update_key(
    request: Request, body: KeyBody, caller: AnyCaller, status_only: str | None = None
) -> Response:
    if body.id is None:
        raise InvalidInput("id", "name the key to change")
    database = _database(request)
    if status_only:
        if body.status is None:
            raise InvalidInput("status", "must be 1 (enabled) or 2 (disabled)")
        status = "enabled" if body.status == 1 else "disabled"
        key = await run_in_threadpool(
            keys.set_key_status, database, body.id, status, user_id=caller.account.id
        )
        return ok(key_item(key, time.time()))
    key = await run_in_threadpool(
        keys.update_key, database, body.id, caller.account.id, body.changes()
    )
    key = await _with_rates(database, key, body)
    services: Services = request.app.state.ql
    services.alerts.check(alert_states.key_subject(key.id))  # its budget may have moved
    if body.status is not None:
        status = "enabled" if body.status == 1 else "disabled"
        key = await run_in_threadpool(
            keys.set_key_status, database, body.id, status, user_id=caller.account.id
        )
    return ok(key_item(key, time.time()))


@router.delete(
    "/api/token/{key_id}", **described("Delete an API key (it never works again)", API_WRITE)
)
async def delete_key(request: Request, key_id: KeyId, caller: AnyCaller) -> Response:
    await run_in_threadpool(keys.delete_key, _database(request), key_id, user_id=caller.account.id)
    return ok()


class BatchBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    ids: list[BodyId] = Field(min_length=1, max_length=1000)


@router.post("/api/token/batch", **described("Delete several API keys; data: how many", API_WRITE))
async def delete_keys(request: Request, body: BatchBody, caller: AnyCaller) -> Response:
    count = await run_in_threadpool(
        keys.delete_keys, _database(request), body.ids, caller.account.id
    )
    return ok(count)


@router.post("/api/token/batch/keys", include_in_schema=False)
@router.post("/api/token/{key_id}/key", include_in_schema=False)
async def reveal_key(caller: AnyCaller) -> Response:
    """new-api shows a token's key again; here it is gone (410), and says so."""
    raise HTTPError(410, NEVER_REVEALED)
