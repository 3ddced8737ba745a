"""CSV export of the caller's log (SPEC §10): `GET /api/log/self/export.csv`, with the
filters of `GET /api/log/self` (new-api's names).

The answer streams: rows are read `BATCH` at a time by id (keyset, `usage_log.log_rows_before`)
and written out batch by batch, so a log of any length never sits in memory at once and
each query costs the same. Text cells a spreadsheet would run as a formula (`=`, `+`, `-`,
`@`, tab, carriage return first) get a leading `'` (OWASP's CSV injection advice).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from quotaledger.billing import usage_log
from quotaledger.money import format_usd
from quotaledger.server.services import Services
from quotaledger.server.usage_routes import AnyCaller, Filter

router = APIRouter()
BATCH = 500
HEADER = (
    "time_utc", "request_id", "key_name", "model", "prompt_tokens", "completion_tokens",
    "quota", "usd", "status", "group",
)  # fmt: skip
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def defused(cell: Any) -> Any:
    """A text cell that cannot start a spreadsheet formula; numbers pass unchanged."""
    if isinstance(cell, str) and cell.startswith(_FORMULA_STARTS):
        return "'" + cell
    return cell


def csv_row(row: dict[str, Any]) -> list[Any]:
    when = datetime.fromtimestamp(row["created_at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
    status = row["status"] if row["status"] is not None else 200
    cells = [
        when, row["request_id"], row["key_name"] or "", row["model"], row["prompt_tokens"],
        row["completion_tokens"], row["quota"], format_usd(row["quota"]), status, row["group"],
    ]  # fmt: skip
    return [defused(cell) for cell in cells]


def csv_text(rows: Iterable[list[Any]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


async def csv_chunks(
    database: Any, user_id: int, wanted: usage_log.LogFilter
) -> AsyncIterator[str]:
    """The header, then one chunk per batch of rows, newest first."""
    yield csv_text([list(HEADER)])
    before: int | None = None
    while True:
        rows = await run_in_threadpool(
            usage_log.log_rows_before, database, user_id, wanted, before, BATCH
        )
        if rows:
            yield csv_text(csv_row(row) for row in rows)
        if len(rows) < BATCH:
            return
        before = rows[-1]["id"]


@router.get(
    "/api/log/self/export.csv",
    summary="The caller's log as CSV, over the log filters",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "The rows, newest first"}},
)
async def export_log(request: Request, caller: AnyCaller, wanted: Filter) -> StreamingResponse:
    services: Services = request.app.state.ql
    wanted.validate()  # a bad filter is a 422 before the answer starts, not a broken file
    chunks = csv_chunks(services.database, caller.account.id, wanted)
    headers = {
        "Content-Disposition": 'attachment; filename="quotaledger-log.csv"',
        "Cache-Control": "no-store",
    }
    return StreamingResponse(chunks, media_type="text/csv; charset=utf-8", headers=headers)
