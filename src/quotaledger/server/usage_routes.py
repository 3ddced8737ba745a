"""new-api's usage routes (SPEC §9): `GET /api/log/self`, `/api/log/self/stat` and
`/api/data/self`, for the system token or a browser session. Rows are the relay's and the
admin charge path's alike (`usage_log`)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from quotaledger.billing import usage_log
from quotaledger.money import format_usd
from quotaledger.server.auth import Caller, any_caller
from quotaledger.server.newapi_docs import described
from quotaledger.server.responses import ok
from quotaledger.server.services import Services

router = APIRouter()
AnyCaller = Annotated[Caller, Depends(any_caller)]
Page = Annotated[int | None, Query(ge=1, le=1_000_000)]
Timestamp = Annotated[int, Query(ge=0, le=2**40)]
Text = Annotated[str | None, Query(max_length=128)]


def _database(request: Request) -> Any:
    services: Services = request.app.state.ql
    return services.database


def log_filter(
    type: Annotated[int, Query(ge=0, le=6)] = 0,
    start_timestamp: Timestamp = 0,
    end_timestamp: Timestamp = 0,
    token_name: Text = None,
    model_name: Text = None,
    group: Text = None,
    request_id: Text = None,
) -> usage_log.LogFilter:
    """new-api's log filters, by its parameter names."""
    return usage_log.LogFilter(
        type, start_timestamp, end_timestamp, token_name, model_name, group, request_id
    )


Filter = Annotated[usage_log.LogFilter, Depends(log_filter)]


@router.get("/api/log/self", **described("The caller's log rows, newest first (new-api's log)"))
async def log_self(
    request: Request,
    caller: AnyCaller,
    wanted: Filter,
    p: Page = None,
    page: Page = None,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    """`p` is new-api's name for the page (`page` is accepted too); a page past the end
    is empty, so a client that pages until it gets fewer than `page_size` rows stops."""
    number = p or page or 1
    rows, total = await run_in_threadpool(
        usage_log.log_page, _database(request), caller.account.id, wanted, number, page_size
    )
    items = [log_item(row) for row in rows]
    return ok({"items": items, "total": total, "page": number, "page_size": page_size})


def log_item(row: dict[str, Any]) -> dict[str, Any]:
    """A log row with new-api's field names and types, then ours."""
    status = row["status"] if row["status"] is not None else 200
    latency = row["latency_ms"]
    return {
        # new-api's fields
        "id": row["id"],
        "type": usage_log.TYPE_CONSUME if 200 <= status < 300 else usage_log.TYPE_ERROR,
        "created_at": row["created_at"],
        "content": "",
        "token_name": row["key_name"] or "",
        "model_name": row["model"],
        "channel_name": row["channel"] or "",
        "quota": row["quota"],
        "prompt_tokens": row["prompt_tokens"],
        "completion_tokens": row["completion_tokens"],
        "use_time": round(latency / 1000) if latency is not None else 0,
        "is_stream": bool(row["is_stream"]),
        "request_id": row["request_id"],
        "group": row["group"],
        # ours
        "upstream_model": row["upstream_model"],
        "cached_tokens": row["cached_tokens"],
        "cache_write_tokens": row["cache_write_tokens"],
        "cache_write_1h_tokens": row["cache_write_1h_tokens"],
        "quota_reserved": row["quota_reserved"],
        "quota_charged": row["quota"],
        "quota_written_off": row["written_off"],
        "quota_usd": format_usd(row["quota"]),
        "usage_source": row["usage_source"],
        "end_reason": row["end_reason"],
        "status": status,
        "latency_ms": latency,
        "ttft_ms": row["ttft_ms"],
        "session_id": row.get("session_id"),  # Claude Code's X-Claude-Code-Session-Id
        "usage_note": row.get("usage_note"),
        "web_search_calls": row.get("web_search_calls") or 0,
        "price_tier": row.get("price_tier"),
    }


@router.get("/api/log/self/stat", **described("Quota over the log filters; rpm and tpm"))
async def log_self_stat(request: Request, caller: AnyCaller, wanted: Filter) -> Response:
    stat = await run_in_threadpool(
        usage_log.log_stat, _database(request), caller.account.id, wanted, int(time.time())
    )
    return ok({"quota": stat.quota, "rpm": stat.rpm, "tpm": stat.tpm})


@router.get("/api/data/self", **described("Usage per hour and model (new-api's dashboard data)"))
async def data_self(
    request: Request,
    caller: AnyCaller,
    start_timestamp: Timestamp | None = None,
    end_timestamp: Timestamp | None = None,
) -> Response:
    """Both bounds default to the last 24 hours; the range may span 30 days."""
    end = end_timestamp if end_timestamp is not None else int(time.time())
    start = start_timestamp if start_timestamp is not None else end - 86_400
    rows = await run_in_threadpool(
        usage_log.hourly_usage, _database(request), caller.account.id, start, end
    )
    return ok(rows)
