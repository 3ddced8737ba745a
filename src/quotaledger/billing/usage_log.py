"""The usage log as its owner reads it: pages of rows with filters, totals, hourly buckets.

One log row per charged or refused relay request (`settlement`) and per admin charge
(`ledger.charge_in`), all in the `usage` table. new-api's log (SPEC §9) is read through the
same filters: a row's *type* is new-api's 2 (consume) when the client got a 2xx answer and
5 (error) otherwise; a row's *group* is its key's group, else its owner's (the row does not
store the group it was priced in; a user moved to another group sees old rows under the
new one). Grants are not log rows here (new-api's type 1 finds none).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, not_, select, true

from quotaledger.errors import InvalidInput
from quotaledger.store.database import Database
from quotaledger.store.tables import api_keys, usage, users

TYPE_CONSUME = 2  # new-api's LogTypeConsume
TYPE_ERROR = 5  # new-api's LogTypeError
TYPES = (0, 1, 2, 3, 4, 5, 6)  # new-api's log types; 0: all
MAX_SPAN = 30 * 86_400  # the longest range of hourly buckets, as new-api allows


@dataclass(frozen=True)
class LogFilter:
    """new-api's log filters; None or 0 leaves a filter off."""

    type: int = 0
    start_timestamp: int = 0
    end_timestamp: int = 0
    token_name: str | None = None
    model_name: str | None = None
    group: str | None = None
    request_id: str | None = None

    def validate(self) -> LogFilter:
        if self.type not in TYPES:
            raise InvalidInput("type", "must be one of new-api's log types, 0-6")
        if self.start_timestamp and self.start_timestamp > (self.end_timestamp or 2**62):
            raise InvalidInput("start_timestamp", "must not be after end_timestamp")
        return self


@dataclass(frozen=True)
class AdminLogFilter(LogFilter):
    """The operator's filters over every user's log (SPEC §13), besides new-api's: the
    user (`username`), the channel (by name) and the status the client saw (`status`:
    a code such as 429, or a class: `2xx`, `4xx`, `5xx`)."""

    username: str | None = None
    channel: str | None = None
    status: str | None = None

    def validate(self) -> AdminLogFilter:
        super().validate()
        if self.status and not _STATUS_PATTERN.fullmatch(self.status):
            raise InvalidInput("status", "a status code (429) or a class (2xx, 4xx, 5xx)")
        return self


_STATUS_PATTERN = re.compile(r"[1-5](?:xx|\d\d)")
_group_of_row = func.coalesce(api_keys.c.group, users.c.group)
_ANSWERED = func.coalesce(usage.c.status, 200).between(200, 299)
_ROW_COLUMNS = (
    usage.c.id, usage.c.request_id, usage.c.model, usage.c.prompt_tokens,
    usage.c.completion_tokens, usage.c.quota, usage.c.created_at, usage.c.key_name,
    usage.c.upstream_model, usage.c.channel, usage.c.is_stream, usage.c.cached_tokens,
    usage.c.cache_write_tokens, usage.c.cache_write_1h_tokens, usage.c.quota_reserved,
    usage.c.written_off, usage.c.usage_source, usage.c.end_reason, usage.c.status,
    usage.c.latency_ms, usage.c.ttft_ms, _group_of_row.label("group"), usage.c.session_id,
    usage.c.usage_note, usage.c.web_search_calls, usage.c.price_tier,
)  # fmt: skip


def _from(wanted: LogFilter | None = None) -> Any:
    """The log rows, joined to what a row's group is read from: always for the rows shown,
    for counts and sums only when filtering by group (the join reads each row's key id,
    which no index holds: 2.5x slower counts, `benchmarks/usage_log_queries.py`)."""
    if wanted is not None and not wanted.group:
        return usage
    return usage.join(users, users.c.id == usage.c.user_id).outerjoin(
        api_keys, api_keys.c.id == usage.c.key_id
    )


def _conditions(user_id: int | None, wanted: LogFilter) -> list[ColumnElement[bool]]:
    """The filters as conditions; `user_id` None: every user's rows (the operator's)."""
    found: list[ColumnElement[bool]] = [] if user_id is None else [usage.c.user_id == user_id]
    if isinstance(wanted, AdminLogFilter):
        found += _admin_conditions(wanted)
    if wanted.type == TYPE_CONSUME:
        found.append(_ANSWERED)
    elif wanted.type == TYPE_ERROR:
        found.append(not_(_ANSWERED))
    elif wanted.type != 0:
        found.append(~true())  # a type the usage log has no rows of
    if wanted.start_timestamp:
        found.append(usage.c.created_at >= wanted.start_timestamp)
    if wanted.end_timestamp:
        found.append(usage.c.created_at <= wanted.end_timestamp)
    if wanted.token_name:
        found.append(usage.c.key_name == wanted.token_name)
    if wanted.model_name:
        found.append(_model_condition(wanted.model_name))
    if wanted.group:
        found.append(_group_of_row == wanted.group)
    if wanted.request_id:
        found.append(usage.c.request_id == wanted.request_id)
    return found


def _admin_conditions(wanted: AdminLogFilter) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    if wanted.username:
        owner = select(users.c.id).where(users.c.username == wanted.username).scalar_subquery()
        found.append(usage.c.user_id == owner)
    if wanted.channel:
        found.append(usage.c.channel == wanted.channel)
    if wanted.status:
        status = func.coalesce(usage.c.status, 200)
        if wanted.status.endswith("xx"):
            low = int(wanted.status[0]) * 100
            found.append(status.between(low, low + 99))
        else:
            found.append(status == int(wanted.status))
    return found


def _model_condition(model_name: str) -> ColumnElement[bool]:
    """An exact name, or new-api's `LIKE` pattern when it holds a `%` (`gpt-4%`)."""
    if "%" in model_name:
        return usage.c.model.like(model_name)
    return usage.c.model == model_name


def log_page(
    database: Database, user_id: int, wanted: LogFilter, page: int, page_size: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of the user's log rows matching `wanted`, newest first, and their total."""
    conditions = _conditions(user_id, wanted.validate())
    with database.read() as connection:
        total = connection.execute(
            select(func.count()).select_from(_from(wanted)).where(*conditions)
        ).scalar_one()
        rows = connection.execute(
            select(*_ROW_COLUMNS)
            .select_from(_from())
            .where(*conditions)
            .order_by(usage.c.id.desc())
            .limit(page_size)
            .offset((page - 1) * page_size)
        ).all()
    return [dict(row._mapping) for row in rows], int(total)


def log_rows_before(
    database: Database, user_id: int, wanted: LogFilter, before_id: int | None, limit: int
) -> list[dict[str, Any]]:
    """Up to `limit` of the user's log rows matching `wanted` with an id below `before_id`
    (None: from the newest), newest first: keyset paging, so reading a long log page by
    page costs the same per page however deep it goes (no OFFSET, no count)."""
    conditions = _conditions(user_id, wanted.validate())
    if before_id is not None:
        conditions.append(usage.c.id < before_id)
    with database.read() as connection:
        rows = connection.execute(
            select(*_ROW_COLUMNS)
            .select_from(_from())
            .where(*conditions)
            .order_by(usage.c.id.desc())
            .limit(limit)
        ).all()
    return [dict(row._mapping) for row in rows]


@dataclass(frozen=True)
class LogStat:
    quota: int  # charged, over the filters
    rpm: int  # requests answered in the last 60 s (new-api's rpm)
    tpm: int  # their prompt + completion tokens


def log_stat(database: Database, user_id: int, wanted: LogFilter, now: int) -> LogStat:
    """new-api's `{quota, rpm, tpm}`: the quota over the filters; requests and tokens per
    minute over the last 60 seconds, with the filters other than time (as new-api)."""
    return _stat(database, user_id, wanted, now)


def _stat(database: Database, user_id: int | None, wanted: LogFilter, now: int) -> LogStat:
    conditions = _conditions(user_id, wanted.validate())
    recent = dataclasses.replace(
        wanted, type=TYPE_CONSUME, start_timestamp=now - 60, end_timestamp=0
    )
    tokens = func.coalesce(func.sum(usage.c.prompt_tokens + usage.c.completion_tokens), 0)
    with database.read() as connection:
        quota = connection.execute(
            select(func.coalesce(func.sum(usage.c.quota), 0))
            .select_from(_from(wanted))
            .where(*conditions)
        ).scalar_one()
        rpm, tpm = connection.execute(
            select(func.count(), tokens)
            .select_from(_from(recent))
            .where(*_conditions(user_id, recent))
        ).one()
    return LogStat(int(quota), int(rpm), int(tpm))


def hourly_usage(database: Database, user_id: int, start: int, end: int) -> list[dict[str, Any]]:
    """new-api's dashboard data: per hour (bucket start, UTC) and model, the requests
    answered, quota charged and tokens used, oldest first."""
    if end < start:
        raise InvalidInput("start_timestamp", "must not be after end_timestamp")
    if end - start > MAX_SPAN:
        raise InvalidInput("end_timestamp", "the range may span 30 days at most")
    hour = usage.c.created_at - usage.c.created_at % 3600
    tokens = func.sum(usage.c.prompt_tokens + usage.c.completion_tokens)
    statement = (
        select(
            usage.c.model.label("model_name"),
            hour.label("created_at"),
            func.count().label("count"),
            func.sum(usage.c.quota).label("quota"),
            tokens.label("token_used"),
        )
        .where(
            usage.c.user_id == user_id,
            usage.c.created_at >= start,
            usage.c.created_at <= end,
            _ANSWERED,
        )
        .group_by(usage.c.model, hour)
        .order_by(hour, usage.c.model)
    )
    with database.read() as connection:
        rows = connection.execute(statement).all()
    return [
        {
            name: value if name == "model_name" else int(value)
            for name, value in row._mapping.items()
        }
        for row in rows
    ]


def all_users_log_page(
    database: Database, wanted: AdminLogFilter, page: int, page_size: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of every user's log rows matching `wanted`, newest first (with each row's
    user id and username), and their total: the operator's log (SPEC §13)."""
    conditions = _conditions(None, wanted.validate())
    with database.read() as connection:
        total = connection.execute(
            select(func.count()).select_from(_from(wanted)).where(*conditions)
        ).scalar_one()
        rows = connection.execute(
            select(*_ROW_COLUMNS, usage.c.user_id, users.c.username)
            .select_from(_from())
            .where(*conditions)
            .order_by(usage.c.id.desc())
            .limit(page_size)
            .offset((page - 1) * page_size)
        ).all()
    return [dict(row._mapping) for row in rows], int(total)


def all_users_log_stat(database: Database, wanted: AdminLogFilter, now: int) -> LogStat:
    """`log_stat` over every user's rows."""
    return _stat(database, None, wanted, now)
