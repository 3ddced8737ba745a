"""The operator's dashboard over every user's log (SPEC §13): requests, tokens, quota
charged and errors by class over a time window, broken down by model, by channel and by
UTC day. Read from the `usage` table; one query per breakdown."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select

from quotaledger.errors import InvalidInput
from quotaledger.store.database import Database
from quotaledger.store.tables import usage

DAY = 86_400
MAX_DAYS = 90
_STATUS = func.coalesce(usage.c.status, 200)
_ERROR_CLASS = case(
    (_STATUS.between(200, 299), "ok"),
    (_STATUS == 429, "429"),
    (_STATUS.between(400, 499), "4xx"),
    else_="5xx",
)
_MEASURES = (
    func.count().label("requests"),
    func.coalesce(func.sum(usage.c.prompt_tokens + usage.c.completion_tokens), 0).label("tokens"),
    func.coalesce(func.sum(usage.c.quota), 0).label("quota"),
    func.count().filter(~_STATUS.between(200, 299)).label("errors"),
)


def _rows(database: Database, start: int, end: int, group: Any | None) -> list[dict[str, Any]]:
    columns = (*((group.label("key"),) if group is not None else ()), *_MEASURES)
    statement = select(*columns).where(usage.c.created_at >= start, usage.c.created_at < end)
    if group is not None:
        statement = statement.group_by(group).order_by(func.sum(usage.c.quota).desc(), group)
    with database.read() as connection:
        rows = connection.execute(statement).all()
    return [
        {str(name): (int(v) if name != "key" else v) for name, v in row._asdict().items()}
        for row in rows
    ]


def dashboard(database: Database, days: int, now: int) -> dict[str, Any]:
    """The last `days` UTC days, today included: totals; by model, channel and day; errors
    by class (`429`, `4xx`, `5xx`; `ok` is the answered requests)."""
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput("days", f"must be between 1 and {MAX_DAYS}")
    end = (now // DAY + 1) * DAY  # the end of today (UTC): rows stamped later are not shown
    start = end - days * DAY
    day = usage.c.created_at - usage.c.created_at % DAY
    by_class = {row["key"]: row["requests"] for row in _rows(database, start, end, _ERROR_CLASS)}
    return {
        "days": days,
        "start": start,
        "totals": _rows(database, start, end, None)[0],
        "by_model": _rows(database, start, end, usage.c.model),
        "by_channel": _rows(database, start, end, func.coalesce(usage.c.channel, "")),
        "by_day": sorted(_rows(database, start, end, day), key=lambda row: row["key"]),
        "errors_by_class": {name: by_class.get(name, 0) for name in ("429", "4xx", "5xx")},
    }
