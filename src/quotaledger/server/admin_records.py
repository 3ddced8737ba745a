"""The admin API's other routes (SPEC §13): new-api's redemption codes
(`GET/POST/PUT /api/redemption/`) and every user's log (`GET /api/log/`, `GET
/api/log/stat`); ours where new-api has none: the log as CSV (`/api/log/export.csv`), the
dashboard (`/api/admin/dashboard`), prices and group ratios (`/api/admin/prices/`,
`/api/admin/groups/`) and the audit trail (`GET /api/audit/`).

Codes are shown once, in `POST`'s answer; in lists `key` is "" and `hint` its last
characters (new-api shows codes again: here only their hash is kept).
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from quotaledger.billing import pricing, redemptions, usage_log, usage_report
from quotaledger.billing.redemptions import Redemption
from quotaledger.errors import InvalidInput
from quotaledger.identity import audit_trail
from quotaledger.money import MAX_QUOTA, format_usd, usd_to_quota
from quotaledger.server import log_export
from quotaledger.server.admin_common import (
    WRITE,
    AdminCaller,
    Keyword,
    Page,
    Size,
    audit,
    database_of,
    page_data,
)
from quotaledger.server.newapi_docs import described
from quotaledger.server.responses import ok
from quotaledger.server.usage_routes import Text, Timestamp, log_item

router = APIRouter()
CODE_STATUS = {"unused": 1, "disabled": 2, "redeemed": 3, "expired": 2}


# ------------------------------------------------------------------ redemption codes


def code_item(code: Redemption, now: float) -> dict[str, Any]:
    """A code as new-api lists one (never the code), then ours."""
    return {
        "id": code.id, "user_id": 0, "key": "", "status": CODE_STATUS[code.state(now)],
        "name": code.name, "quota": code.quota, "created_time": code.created_at,
        "redeemed_time": code.redeemed_at or 0, "used_user_id": 0,
        "expired_time": code.expires_at or 0,
        # ours
        "hint": code.hint, "state": code.state(now), "redeemed_by": code.redeemed_by,
        "quota_usd": format_usd(code.quota),
    }  # fmt: skip


@router.get("/api/redemption/", **described("Every redemption code (admin), newest first"))
@router.get("/api/redemption", include_in_schema=False)
async def list_codes(
    request: Request, caller: AdminCaller, p: Page = None, page: Page = None,
    page_size: Size = 20, keyword: Keyword = None,
) -> Response:  # fmt: skip
    found = await run_in_threadpool(redemptions.list_codes, database_of(request))
    found.reverse()
    if keyword:
        found = [c for c in found if keyword in c.name or keyword == c.hint or keyword == str(c.id)]
    number, now = p or page or 1, time.time()
    shown = found[(number - 1) * page_size : number * page_size]
    return ok(page_data([code_item(c, now) for c in shown], len(found), number, page_size))


class CodesBody(BaseModel):
    """new-api's batch: `{name, count, quota, expired_time}` (0: never); `usd` ours."""

    model_config = ConfigDict(extra="ignore")
    name: str = Field("", max_length=64)
    count: int = Field(1, ge=1, le=redemptions.MAX_COUNT)
    quota: int | None = Field(None, gt=0, le=MAX_QUOTA)
    usd: Decimal | None = Field(None, gt=0, le=Decimal(10**12), allow_inf_nan=False)
    expired_time: int = Field(0, ge=0, le=2**40)


@router.post(
    "/api/redemption/",
    **described("Create codes (admin): data lists them, shown only here", WRITE),
)
@router.post("/api/redemption", include_in_schema=False)
async def create_codes(request: Request, body: CodesBody, caller: AdminCaller) -> Response:
    quota = body.quota if body.usd is None else usd_to_quota(body.usd)
    if not quota:
        raise InvalidInput("quota", "send quota or usd")
    made = await run_in_threadpool(
        lambda: redemptions.create_codes(
            database_of(request), quota, body.count, name=body.name,
            expires_at=body.expired_time or None,
        )
    )  # fmt: skip
    await audit(request, caller, "redemption.create", body.name or f"{body.count} codes",
                count=body.count, quota=quota, ids=[code.id for code, _ in made])  # fmt: skip
    return ok([raw for _, raw in made])


class CodeStatusBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: int = Field(ge=1, le=2**62)
    status: int | None = None


@router.put("/api/redemption/", **described("Disable a code (admin): status 2", WRITE))
@router.put("/api/redemption", include_in_schema=False)
async def update_code(
    request: Request, body: CodeStatusBody, caller: AdminCaller, status_only: str | None = None
) -> Response:
    """Only disabling is possible here (`status` 2): a code's value and name are fixed."""
    if body.status != 2:
        raise InvalidInput("status", "only 2 (disabled): a code cannot be changed otherwise")
    code = await run_in_threadpool(redemptions.disable_code, database_of(request), body.id)
    await audit(request, caller, "redemption.disable", code.id, name=code.name)
    return ok(code_item(code, time.time()))


# ------------------------------------------------------------------ every user's log


def admin_filter(
    type: Annotated[int, Query(ge=0, le=6)] = 0,
    start_timestamp: Timestamp = 0,
    end_timestamp: Timestamp = 0,
    token_name: Text = None,
    model_name: Text = None,
    group: Text = None,
    request_id: Text = None,
    username: Text = None,
    channel: Text = None,
    status: Annotated[str | None, Query(max_length=3)] = None,
) -> usage_log.AdminLogFilter:
    """new-api's admin log filters (`username`, `channel` by name), and ours (`status`)."""
    return usage_log.AdminLogFilter(
        type, start_timestamp, end_timestamp, token_name or None, model_name or None,
        group or None, request_id or None, username or None, channel or None, status or None,
    )  # fmt: skip


AdminFilter = Annotated[usage_log.AdminLogFilter, Depends(admin_filter)]


@router.get("/api/log/", **described("Every user's log rows (admin), newest first"))
@router.get("/api/log", include_in_schema=False)
async def all_logs(
    request: Request, caller: AdminCaller, wanted: AdminFilter, p: Page = None,
    page: Page = None, page_size: Size = 20,
) -> Response:  # fmt: skip
    number = p or page or 1
    rows, total = await run_in_threadpool(
        usage_log.all_users_log_page, database_of(request), wanted, number, page_size
    )
    items = [
        {**log_item(row), "user_id": row["user_id"], "username": row["username"]} for row in rows
    ]
    return ok(page_data(items, total, number, page_size))


@router.get("/api/log/stat", **described("{quota, rpm, tpm} over every user's rows (admin)"))
async def all_logs_stat(request: Request, caller: AdminCaller, wanted: AdminFilter) -> Response:
    stat = await run_in_threadpool(
        usage_log.all_users_log_stat, database_of(request), wanted, int(time.time())
    )
    return ok({"quota": stat.quota, "rpm": stat.rpm, "tpm": stat.tpm})


@router.get("/api/log/export.csv", summary="Every user's log as CSV (admin), over the filters",
            response_class=StreamingResponse)  # fmt: skip
async def export_logs(request: Request, caller: AdminCaller, wanted: AdminFilter) -> Response:
    wanted.validate()
    rows, _ = await run_in_threadpool(
        usage_log.all_users_log_page, database_of(request), wanted, 1, EXPORT_MAX
    )
    header = ["username", *log_export.HEADER]
    lines = [header, *([log_export.defused(r["username"]), *log_export.csv_row(r)] for r in rows)]
    headers = {"Content-Disposition": 'attachment; filename="quotaledger-all-logs.csv"',
               "Cache-Control": "no-store"}  # fmt: skip
    return Response(log_export.csv_text(lines), media_type="text/csv; charset=utf-8",
                    headers=headers)  # fmt: skip


EXPORT_MAX = 100_000  # rows in one CSV; narrow the filters for more


# ------------------------------------------------------------------ dashboard, prices, audit


@router.get("/api/admin/dashboard", **described("Requests, tokens, quota and errors (admin)"))
async def dashboard(
    request: Request, caller: AdminCaller, days: Annotated[int, Query(ge=1, le=90)] = 7
) -> Response:
    report = await run_in_threadpool(
        usage_report.dashboard, database_of(request), days, int(time.time())
    )
    return ok(report)


@router.get("/api/admin/prices/", **described("Every price field and group ratio (admin)"))
async def prices(request: Request, caller: AdminCaller) -> Response:
    database = database_of(request)
    found = await run_in_threadpool(pricing.list_prices, database)
    ratios = await run_in_threadpool(pricing.list_group_ratios, database)
    empty: dict[str, str | int | None] = dict.fromkeys(PRICE_FIELDS)
    rows = [empty | p.as_row() for p in found]
    return ok({"models": rows, "group_ratios": {k: str(v) for k, v in ratios.items()}})


# Every field of a price (`pricing.Price`): a PUT replaces the whole price, so what the
# console does not send is unset, as with `price set`.
PRICE_FIELDS = ("model", "per_call_usd", "input_usd_per_mtok", "output_usd_per_mtok",
                *pricing.OPTIONAL_COLUMNS)  # fmt: skip
Usd = Annotated[str | None, Field(None, max_length=40)]
Tokens = Annotated[int | None, Field(None, gt=0, le=100_000_000)]


class PriceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1, max_length=128)
    per_call_usd: Usd = None
    input_usd_per_mtok: Usd = None
    output_usd_per_mtok: Usd = None
    cache_read_usd_per_mtok: Usd = None
    cache_write_usd_per_mtok: Usd = None
    cache_write_1h_usd_per_mtok: Usd = None
    long_context_threshold: Tokens = None
    long_input_usd_per_mtok: Usd = None
    long_output_usd_per_mtok: Usd = None
    long_cache_read_usd_per_mtok: Usd = None
    long_cache_write_usd_per_mtok: Usd = None
    long_cache_write_1h_usd_per_mtok: Usd = None
    web_search_usd_per_kcall: Usd = None
    max_output_tokens: Tokens = None


@router.put("/api/admin/prices/", **described("Set a model's price (admin)", WRITE))
async def set_price(request: Request, body: PriceBody, caller: AdminCaller) -> Response:
    fields: dict[str, Any] = {
        k: (v.strip() or None) if isinstance(v, str) else v for k, v in body.model_dump().items()
    }
    model = fields.pop("model") or ""
    new = pricing.make_price(model, **fields)
    await run_in_threadpool(pricing.set_price, database_of(request), new)
    await audit(request, caller, "price.set", model, **new.as_row())
    return ok(new.as_row())


@router.delete("/api/admin/prices/", **described("Delete a model's price (admin)", WRITE))
async def delete_price(
    request: Request, caller: AdminCaller, model: Annotated[str, Query(max_length=128)]
) -> Response:
    await run_in_threadpool(pricing.delete_price, database_of(request), model)
    await audit(request, caller, "price.delete", model)
    return ok()


class GroupBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    ratio: str = Field(min_length=1, max_length=40)


@router.put("/api/admin/groups/", **described("Set a group's price ratio (admin)", WRITE))
async def set_group(request: Request, body: GroupBody, caller: AdminCaller) -> Response:
    ratio = await run_in_threadpool(
        pricing.set_group_ratio, database_of(request), body.name, body.ratio
    )
    await audit(request, caller, "group.set", body.name, ratio=str(ratio))
    return ok({"name": body.name, "ratio": str(ratio)})


@router.get("/api/audit/", **described("Every admin action, newest first (admin)"))
async def audit_entries(
    request: Request, caller: AdminCaller, p: Page = None, page: Page = None,
    page_size: Size = 20, actor: Keyword = None, action: Keyword = None, keyword: Keyword = None,
) -> Response:  # fmt: skip
    number = p or page or 1
    items, total = await run_in_threadpool(
        lambda: audit_trail.trail_page(
            database_of(request), number, page_size, actor=actor, action=action,
            keyword=keyword,
        )
    )  # fmt: skip
    return ok(page_data(items, total, number, page_size))
