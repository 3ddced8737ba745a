"""Reserve, then settle: how the relay spends quota without ever going below zero (SPEC §8).

Before a request goes upstream, `reserve` takes an amount from every row that funds it (the
account; the key's own budget unless unlimited; the key's period when it has one), in ONE
transaction of guarded UPDATEs, and records a reservation row. After the answer,
`settlement.settle` deletes that row (exactly once: the DELETE is the gate, so a replay or
a racing sweeper finds nothing to settle), charges the actual cost, gives back the rest,
counts the request when the client got a 2xx, and writes the log row, again in ONE
transaction. A cost above the reservation is charged only as far as every funding row
covers it; the rest is written off and recorded on the log row. A reservation whose
request died with its instance is settled by `settlement.sweep` after the TTL, to the
progress recorded so far (`record_progress`), else released.

The extended invariant (`audit.check_invariant`), for every user and every limited key:
    granted - charged - open reservations == quota >= 0

Locks: every transaction that changes a user's funding rows first locks the user and the
key row together, with one `SELECT ... FOR UPDATE OF users, api_keys` (both: on PostgreSQL
a row read through a join but not locked may be a stale version after the lock wait). On
SQLite `BEGIN IMMEDIATE` already holds the only write lock. `settle` deletes its own
reservation row before taking those locks, and no transaction takes them the other way
round, so reservations and settlements cannot deadlock.

The relay reserves and settles through `reserve_async` and `settlement.settle_async`: those
that arrive while a batch commits share the next transaction (`Database.group_commit`), in
(user, request) order, reservations and settlements together (`group_commit.apply_items`),
so a burst of requests costs one commit (one fsync) per batch, not two per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

from sqlalchemy import Connection, bindparam, case, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from quotaledger.errors import (
    AuthenticationFailed,
    IdempotencyConflict,
    InsufficientQuota,
    InvalidInput,
    NotFound,
)
from quotaledger.money import MAX_QUOTA
from quotaledger.periods import period_start
from quotaledger.store.compiled import CompiledStatement
from quotaledger.store.database import Database
from quotaledger.store.group_commit import apply_in_order, apply_items
from quotaledger.store.tables import api_keys, reservations, users
from quotaledger.token_usage import TokenUsage

Clock = Callable[[], float]


@dataclass(frozen=True)
class Reservation:
    request_id: str
    amount: int


# ------------------------------------------------------------------ reserve

_RESERVE_CONTEXT = CompiledStatement(
    select(
        users.c.quota,
        api_keys.c.status,
        api_keys.c.deleted_at,
        api_keys.c.unlimited,
        api_keys.c.remain_quota,
        api_keys.c.period,
        api_keys.c.period_quota,
        api_keys.c.period_used,
        api_keys.c.period_start,
    )
    .select_from(users.join(api_keys, api_keys.c.user_id == users.c.id))
    .where(users.c.id == bindparam("user_id"), api_keys.c.id == bindparam("key_id"))
    .with_for_update(of=[users, api_keys])
)


class _Funding(NamedTuple):
    """A row of `_RESERVE_CONTEXT`."""

    quota: int
    key_status: str
    deleted_at: int | None
    unlimited: bool
    remain_quota: int
    period: str | None
    period_quota: int | None
    period_used: int
    period_start: int


_TAKE_FROM_ACCOUNT_UPDATE = (
    update(users)
    .where(users.c.id == bindparam("user_id"), users.c.quota >= bindparam("amount"))
    .values(quota=users.c.quota - bindparam("amount"))
)
_TAKE_FROM_ACCOUNT = CompiledStatement(_TAKE_FROM_ACCOUNT_UPDATE)
# The period's count restarts when the period named by `new_period_start` is not the
# stored one; for a key without a period the caller passes the stored start (no change).
_PERIOD_BASE = case(
    (api_keys.c.period_start == bindparam("new_period_start"), api_keys.c.period_used), else_=0
)
_TAKE_FROM_KEY_UPDATE = (
    update(api_keys)
    .where(
        api_keys.c.id == bindparam("key_id"),
        api_keys.c.remain_quota >= bindparam("key_amount"),
        _PERIOD_BASE + bindparam("period_amount") <= bindparam("period_limit"),
    )
    .values(
        remain_quota=api_keys.c.remain_quota - bindparam("key_amount"),
        period_used=_PERIOD_BASE + bindparam("period_amount"),
        period_start=bindparam("new_period_start"),
    )
)
_TAKE_FROM_KEY = CompiledStatement(_TAKE_FROM_KEY_UPDATE)
_RESERVATION_COLUMNS = [
    "request_id", "user_id", "key_id", "model", "price_format", "group", "amount",
    "key_funded", "period_start", "created_at", "active_at",
]  # fmt: skip
# A request_id already reserved inserts nothing (and the whole reservation rolls back).
_RECORD_RESERVATION = {
    dialect: CompiledStatement(
        insert_for(reservations).on_conflict_do_nothing(index_elements=["request_id"]),
        column_keys=_RESERVATION_COLUMNS,
    )
    for dialect, insert_for in (("sqlite", sqlite_insert), ("postgresql", postgresql_insert))
}


def _take_and_record(with_key: bool) -> CompiledStatement:
    """PostgreSQL: the account's UPDATE, the key's (`with_key`) and the reservation's INSERT
    in ONE statement (data-modifying CTEs), one round trip instead of two or three while
    the user's lock is held; it returns how many rows each matched, as the separate
    statements' rowcounts do on SQLite (the INSERT: 0 for a request_id already reserved)."""
    account = _TAKE_FROM_ACCOUNT_UPDATE.returning(users.c.id).cte("account_row")
    record = (
        postgresql_insert(reservations)
        .values({name: bindparam(name) for name in _RESERVATION_COLUMNS})
        .on_conflict_do_nothing(index_elements=["request_id"])
        .returning(reservations.c.request_id)
        .cte("reservation_row")
    )
    ctes = [account, record]
    if with_key:
        ctes.insert(1, _TAKE_FROM_KEY_UPDATE.returning(api_keys.c.id).cte("key_row"))
    return CompiledStatement(
        select(*(select(func.count()).select_from(cte).scalar_subquery() for cte in ctes))
    )


_TAKE_AND_RECORD = {with_key: _take_and_record(with_key) for with_key in (False, True)}


def reserve(
    database: Database,
    request_id: str,
    *,
    user_id: int,
    key_id: int,
    model: str,
    group: str,
    amount: int,
    minimum: int | None = None,
    price_format: str = "openai",
    clock: Clock = time.time,
) -> Reservation:
    """Reserve up to `amount` quota, and at least `minimum` (default: all of `amount`), for
    one request, from the account, the key's budget (unless unlimited) and the key's
    current period (if it has one), in one transaction. Returns what was reserved: less
    than `amount` when a funding row covers less (the caller then lowers the output cap,
    see `pricing.affordable_output_tokens`).

    Raises `InsufficientQuota` naming the row that cannot cover `minimum` (nothing is
    reserved), `AuthenticationFailed` if the key was disabled or deleted since admission,
    `IdempotencyConflict` if `request_id` is already reserved.
    """
    least = amount if minimum is None else minimum
    ask = ReserveRequest(request_id, user_id, key_id, model, group, amount, least, price_format)
    ask.validate()
    with database.write() as connection:
        return reserve_in(connection, ask, int(clock()))


# Refusals raised before a reservation writes anything: in a batch they are that
# reservation's outcome and the others still commit. Anything else (an IdempotencyConflict
# comes after the UPDATEs) fails the batch, which `GroupCommit` then retries one by one.
_REFUSED_UNWRITTEN: tuple[type[Exception], ...] = (
    NotFound,
    AuthenticationFailed,
    InsufficientQuota,
)


@dataclass(frozen=True)
class ReserveRequest:
    """`reserve`'s arguments, for `reserve_async` (group commit: a `BatchItem`)."""

    refusals: ClassVar[tuple[type[Exception], ...]] = _REFUSED_UNWRITTEN

    request_id: str
    user_id: int
    key_id: int
    model: str
    group: str
    amount: int
    minimum: int
    price_format: str = "openai"

    def validate(self) -> ReserveRequest:
        if not 0 <= self.minimum <= self.amount <= MAX_QUOTA:
            raise InvalidInput("amount", "need 0 <= minimum <= amount <= the largest quota")
        if not 1 <= len(self.request_id) <= 128:
            raise InvalidInput("request_id", "must be 1-128 characters")
        return self

    def order_key(self) -> tuple[int, str]:
        return (self.user_id, self.request_id)

    def apply_in(self, connection: Connection, now: int) -> Reservation:
        return reserve_in(connection, self, now)


def reserve_in(connection: Connection, ask: ReserveRequest, now: int) -> Reservation:
    """`reserve` inside the caller's transaction. Every refusal but `IdempotencyConflict`
    is raised before anything is written."""
    row = _RESERVE_CONTEXT.execute(
        connection, {"user_id": ask.user_id, "key_id": ask.key_id}
    ).fetchone()
    if row is None:
        raise NotFound(f"no API key {ask.key_id} of user {ask.user_id}")
    funding = _Funding(*row)
    if funding.key_status != "enabled" or funding.deleted_at is not None:
        raise AuthenticationFailed("this API key is no longer enabled")
    current = period_start(now, funding.period) if funding.period else funding.period_start
    taken = _affordable(funding, current, ask.amount, ask.minimum)
    row_values = {
        "request_id": ask.request_id, "user_id": ask.user_id, "key_id": ask.key_id,
        "model": ask.model, "price_format": ask.price_format, "group": ask.group,
        "amount": taken, "key_funded": not funding.unlimited,
        "period_start": current if funding.period else None,
        "created_at": now, "active_at": now,
    }  # fmt: skip
    if connection.dialect.name == "postgresql":
        recorded = _take_and_record_postgresql(connection, funding, current, taken, row_values)
    else:
        _take(connection, ask.user_id, ask.key_id, funding, current, taken)
        cursor = _RECORD_RESERVATION["sqlite"].execute(connection, row_values)
        recorded = cursor.rowcount == 1
    if not recorded:
        raise IdempotencyConflict(f"request_id {ask.request_id!r} is already reserved")
    return Reservation(ask.request_id, taken)


def _take_and_record_postgresql(
    connection: Connection, funding: _Funding, current: int, amount: int,
    row_values: dict[str, object],
) -> bool:  # fmt: skip
    """`_take` and the reservation's INSERT in one statement; whether the row was recorded.
    (`amount` is the account UPDATE's parameter and the row's: the same value.)"""
    key_params = _take_params(funding, current, amount)
    with_key = key_params["key_amount"] != 0 or key_params["period_amount"] != 0
    params = {**row_values, **key_params}
    counts = _TAKE_AND_RECORD[with_key].execute(connection, params).fetchone()
    if counts[0] != 1 or (with_key and counts[1] != 1):
        raise RuntimeError("a funding row changed under a held lock: reservation abandoned")
    return bool(counts[-1] == 1)


def _take_params(funding: _Funding, current: int, amount: int) -> dict[str, int]:
    """The parameters of the key's guarded UPDATE but its id (amounts 0: it funds nothing)."""
    limit = funding.period_quota if funding.period_quota is not None else MAX_QUOTA
    return {
        "key_amount": 0 if funding.unlimited else amount,
        "period_amount": amount if funding.period is not None else 0,
        "period_limit": limit, "new_period_start": current,
    }  # fmt: skip


async def reserve_async(
    database: Database, ask: ReserveRequest, *, alone: bool = False
) -> Reservation:
    """`reserve` for code on the event loop: reservations that arrive while a batch commits
    share the next transaction (`Database.group_commit`; `alone`: see there); each is
    answered after the commit that holds it. Raises as `reserve` does, or `DatabaseBusy`."""
    outcome: Reservation | Exception = await database.group_commit(
        apply_items, ask.validate(), alone=alone
    )
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


_ADJECTIVE = {"day": "daily", "month": "monthly"}


def _affordable(funding: _Funding, current: int, amount: int, minimum: int) -> int:
    """min(amount, what each funding row can cover); `InsufficientQuota` below `minimum`."""
    rooms = [(int(funding.quota), "the account")]
    if not funding.unlimited:
        rooms.append((int(funding.remain_quota), "this API key"))
    if funding.period is not None and funding.period_quota is not None:
        used = funding.period_used if funding.period_start == current else 0
        rooms.append(
            (
                int(funding.period_quota) - int(used),
                f"this API key's {_ADJECTIVE[funding.period]} limit",
            )
        )
    room, where = min(rooms, key=lambda pair: pair[0])
    if room < minimum:
        raise InsufficientQuota(minimum, max(room, 0), where)
    return min(amount, room)


def _take(
    connection: Connection, user_id: int, key_id: int, funding: _Funding, current: int, amount: int
) -> None:
    """The guarded UPDATEs; under the user lock they cannot fail, and must not commit if
    they do."""
    taken = _TAKE_FROM_ACCOUNT.execute(connection, {"user_id": user_id, "amount": amount})
    if taken.rowcount != 1:
        raise RuntimeError("the balance changed under a held lock: reservation abandoned")
    params = _take_params(funding, current, amount)
    if params["key_amount"] == 0 and params["period_amount"] == 0:
        return
    if _TAKE_FROM_KEY.execute(connection, {**params, "key_id": key_id}).rowcount != 1:
        raise RuntimeError("the key's budget changed under a held lock: reservation abandoned")


# ------------------------------------------------------------------ progress


_RECORD_PROGRESS = CompiledStatement(
    update(reservations)
    .where(reservations.c.request_id == bindparam("rid"))
    .values(
        input_tokens=bindparam("input"),
        cached_tokens=bindparam("cached"),
        cache_write_tokens=bindparam("write"),
        cache_write_1h_tokens=bindparam("write_1h"),
        output_tokens=bindparam("output"),
        progress_status=bindparam("status"),
        active_at=bindparam("at"),
    )
)


def record_progress(
    database: Database,
    request_id: str,
    usage_so_far: TokenUsage,
    status: int | None = None,
    *,
    clock: Clock = time.time,
) -> bool:
    """Record the usage counted so far (totals, not increments) and the status the client
    got, so that a sweeper can settle this request if its instance dies; also keeps a long
    stream's reservation from being swept. One write transaction: call it every few
    seconds of a stream, not per event. False if the reservation is no longer open."""
    with database.write() as connection:
        return _record_progress_in(connection, Progress(request_id, usage_so_far, status), clock())


@dataclass(frozen=True, slots=True)
class Progress:
    """One stream's usage so far, to record (`record_progress`)."""

    request_id: str
    usage_so_far: TokenUsage
    status: int | None = None


def _record_progress_in(connection: Connection, progress: Progress, now: float) -> bool:
    u = progress.usage_so_far
    cursor = _RECORD_PROGRESS.execute(
        connection,
        {
            "rid": progress.request_id, "input": u.input, "cached": u.cache_read,
            "write": u.cache_write_5m, "write_1h": u.cache_write_1h,
            "output": u.output, "status": progress.status, "at": int(now),
        },
    )  # fmt: skip
    return bool(cursor.rowcount == 1)


def record_progress_batch(database: Database, items: list[Progress]) -> list[bool | Exception]:
    """Several streams' progress in ONE transaction (group commit), in request order."""
    now = time.time()
    return apply_in_order(
        database,
        items,
        order=lambda item: (item.request_id,),
        apply=lambda connection, item: _record_progress_in(connection, item, now),
        refusals=(),
    )


async def record_progress_async(
    database: Database, request_id: str, usage_so_far: TokenUsage, status: int | None = None
) -> bool:
    """`record_progress` for code on the event loop, group-committed: the streams opened
    together beat together, and 1,000 beats were 1,000 fsync'd transactions from the
    thread pool (~0.7 ms of CPU per stream, and the loop waiting on the GIL meanwhile)."""
    item = Progress(request_id, usage_so_far, status)
    outcome = await database.group_commit(record_progress_batch, item)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome
