"""The quota ledger: grants in, usage out, each change in one transaction.

The invariant, for every user at every commit (SPEC §1):
    granted_total - sum(usage.quota) == quota
    sum(usage.quota) == used_quota,  count(usage) == request_count,  quota >= 0

A charge is one guarded `UPDATE users ... WHERE quota >= :cost` (the check and the debit
cannot be separated by another writer) plus the usage row, in the same transaction; the
`CHECK (quota >= 0)` constraint is the backstop. The usage row's unique
`(user_id, request_id)` makes a charge happen at most once: a replay, even a concurrent
one on another instance, finds the first row and returns the first answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from quotaledger.billing.pricing import cost_in_quota, price_from_columns
from quotaledger.errors import (
    IdempotencyConflict,
    InsufficientQuota,
    InvalidInput,
    NotFound,
    PermissionDenied,
    QuotaLedgerError,
)
from quotaledger.money import MAX_QUOTA
from quotaledger.store.compiled import CompiledStatement
from quotaledger.store.database import Database, now
from quotaledger.store.tables import grants, groups, prices, usage, users
from quotaledger.text import check_text

MAX_TOKENS = 10**12


@dataclass(frozen=True)
class UsageRequest:
    """One request to charge, as the operator's gateway reports it."""

    username: str
    model: str
    request_id: str
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def validate(self) -> UsageRequest:
        for text_field in ("username", "model", "request_id"):
            check_text(text_field, getattr(self, text_field))
        if not 1 <= len(self.request_id) <= 128:
            raise InvalidInput("request_id", "must be 1-128 characters")
        for field in ("prompt_tokens", "completion_tokens"):
            value = getattr(self, field)
            if not 0 <= value <= MAX_TOKENS:
                raise InvalidInput(field, f"must be an integer between 0 and {MAX_TOKENS}")
        return self


@dataclass(frozen=True)
class Charge:
    """The answer to a charge; a replay gets the same one."""

    request_id: str
    quota_charged: int
    quota_remaining: int
    replayed: bool = False


def grant_in(connection: Connection, user_id: int, quota: int, note: str = "") -> int:
    """Add `quota` to a user (a top-up), recorded as a grant. Returns the new balance."""
    if not 0 < quota <= MAX_QUOTA:
        raise InvalidInput("quota", "must be a positive whole number of quota")
    # Guarded like a charge: the balance and the total granted stay 64-bit integers.
    new_quota = connection.execute(
        update(users)
        .where(
            users.c.id == user_id,
            users.c.quota <= MAX_QUOTA - quota,
            users.c.granted_total <= MAX_QUOTA - quota,
        )
        .values(quota=users.c.quota + quota, granted_total=users.c.granted_total + quota)
        .returning(users.c.quota)
    ).scalar()
    if new_quota is None:
        exists = connection.execute(select(users.c.id).where(users.c.id == user_id)).first()
        if exists is None:
            raise NotFound(f"no user with id {user_id}")
        raise InvalidInput("quota", "this top-up would take the balance past the largest amount")
    connection.execute(
        insert(grants).values(user_id=user_id, quota=quota, note=note[:200], created_at=now())
    )
    return int(new_quota)


def top_up(database: Database, username: str, quota: int, note: str = "top-up") -> int:
    """Grant `quota` to `username`; returns the new balance."""
    check_text("username", username)
    with database.write() as connection:
        user_id = connection.execute(
            select(users.c.id).where(users.c.username == username)
        ).scalar()
        if user_id is None:
            raise NotFound(f"no user named {username!r}")
        return grant_in(connection, user_id, quota, note)


def charge(database: Database, request: UsageRequest) -> Charge:
    """Charge one request exactly once. Raises `InsufficientQuota` (nothing charged),
    `IdempotencyConflict` (the request_id was used with another payload), `NotFound`,
    `PermissionDenied` (disabled account) or `InvalidInput` (unpriced model)."""
    outcome = charge_batch(database, [request])[0]
    if isinstance(outcome, QuotaLedgerError):
        raise outcome
    return outcome


ChargeOutcome = Charge | QuotaLedgerError


async def charge_async(database: Database, request: UsageRequest) -> Charge:
    """`charge` for code on the event loop: requests that arrive while a batch commits
    share the next transaction (`Database.group_commit`); each is answered after the
    commit that holds it. Raises as `charge` does, or `DatabaseBusy`."""
    outcome = await database.group_commit(charge_batch, request)
    if isinstance(outcome, QuotaLedgerError):
        raise outcome
    return outcome


def charge_batch(database: Database, requests: list[UsageRequest]) -> list[ChargeOutcome]:
    """Charge several requests in ONE transaction (group commit): one fsync for the batch
    instead of one per charge. A refused charge (insufficient quota, conflict, unknown
    user...) writes nothing, so the others still commit. Outcomes come back in the order of
    `requests`; a charge is acknowledged only by the caller, after this function returned,
    i.e. after the commit. An unexpected error fails the whole batch (nothing commits).

    Requests are applied sorted by (username, request_id) so that concurrent batches on
    several instances lock users in one order and cannot deadlock.
    """
    outcomes: dict[int, ChargeOutcome] = {}
    order = sorted(
        range(len(requests)), key=lambda i: (requests[i].username, requests[i].request_id)
    )
    with database.write() as connection:
        for index in order:
            try:
                outcomes[index] = charge_in(connection, requests[index].validate())
            except _Replayed as replayed:
                outcomes[index] = replayed.charge
            except QuotaLedgerError as exc:
                outcomes[index] = exc
    return [outcomes[i] for i in range(len(requests))]


# The statements of a charge, built once (building them per call costs more than running
# them on SQLite). One read gathers the user (locked on PostgreSQL; SQLite's BEGIN
# IMMEDIATE already holds the only write lock), their group's ratio and the model's price.
_CHARGE_CONTEXT = CompiledStatement(
    select(
        users.c.id,
        users.c.status,
        users.c.quota,
        groups.c.ratio,
        prices.c.model,
        prices.c.per_call_usd,
        prices.c.input_usd_per_mtok,
        prices.c.output_usd_per_mtok,
    )
    .select_from(
        users.outerjoin(groups, groups.c.name == users.c.group).outerjoin(
            prices, prices.c.model == bindparam("model")
        )
    )
    .where(users.c.username == bindparam("username"))
    .with_for_update(of=users)
)


class _Context(NamedTuple):
    """A row of `_CHARGE_CONTEXT`, in its column order."""

    id: int
    status: str
    quota: int
    ratio: str | None
    model: str | None
    per_call_usd: str | None
    input_usd_per_mtok: str | None
    output_usd_per_mtok: str | None


_DEBIT = CompiledStatement(
    update(users)
    .where(users.c.id == bindparam("user_id"), users.c.quota >= bindparam("cost"))
    .values(
        quota=users.c.quota - bindparam("cost"),
        used_quota=users.c.used_quota + bindparam("cost"),
        request_count=users.c.request_count + 1,
    )
)
# The usage row first: if its (user_id, request_id) is already there, nothing is written
# and the request is a replay; otherwise the debit follows in the same transaction.
_USAGE_COLUMNS = [
    "user_id", "request_id", "model", "prompt_tokens", "completion_tokens", "quota",
    "quota_after", "created_at",
]  # fmt: skip
_RECORD = {
    dialect: CompiledStatement(
        insert_for(usage)
        .on_conflict_do_nothing(index_elements=["user_id", "request_id"])
        .returning(usage.c.id),
        column_keys=_USAGE_COLUMNS,
    )
    for dialect, insert_for in (("sqlite", sqlite_insert), ("postgresql", postgresql_insert))
}


def charge_in(connection: Connection, request: UsageRequest) -> Charge:
    """Charge `request` inside the caller's transaction. The common case is three
    statements: the context read (which locks the user), the usage row, the guarded
    debit. A refusal writes nothing; a replay (the usage row already there) neither."""
    row = _CHARGE_CONTEXT.execute(
        connection, {"username": request.username, "model": request.model}
    ).fetchone()
    if row is None:
        raise NotFound(f"no user named {request.username!r}")
    context = _Context(*row)
    if context.status != "enabled":
        refusal: QuotaLedgerError = PermissionDenied(f"user {request.username!r} is disabled")
        raise _replay_or(connection, context.id, request, refusal)
    if context.model is None:
        refusal = InvalidInput("model", f"no price is set for model {request.model!r}")
        raise _replay_or(connection, context.id, request, refusal)
    cost = cost_in_quota(  # raises InvalidInput for a cost past the largest amount
        price_from_columns(context),
        request.prompt_tokens,
        request.completion_tokens,
        Decimal(context.ratio) if context.ratio is not None else Decimal(1),
    )
    if context.quota < cost:
        refusal = InsufficientQuota(cost, int(context.quota))
        raise _replay_or(connection, context.id, request, refusal)
    remaining = int(context.quota) - cost
    recorded = (
        _RECORD[connection.dialect.name]
        .execute(
            connection,
            {
                "user_id": context.id,
                "request_id": request.request_id,
                "model": request.model,
                "prompt_tokens": request.prompt_tokens,
                "completion_tokens": request.completion_tokens,
                "quota": cost,
                "quota_after": remaining,
                "created_at": now(),
            },
        )
        .fetchone()
    )
    if recorded is None:  # already charged: the first answer, or 409 for another payload
        replay = _replay_in(connection, context.id, request)
        if replay is None:
            raise RuntimeError("usage row conflicted but cannot be read")
        return replay
    debited = _DEBIT.execute(connection, {"user_id": context.id, "cost": cost}).rowcount
    if debited != 1:  # cannot happen under the lock; never let it commit if it does
        raise RuntimeError("the balance changed under a held lock: charge abandoned")
    return Charge(request.request_id, cost, remaining)


class _Replayed(QuotaLedgerError):
    """Carries a replay's first answer out of `charge_in` past a refusal."""

    def __init__(self, charge: Charge) -> None:
        super().__init__("replayed")
        self.charge = charge


def _replay_or(
    connection: Connection, user_id: int, request: UsageRequest, error: QuotaLedgerError
) -> QuotaLedgerError:
    """A refusal does not apply to a replay: a request_id already charged gets its first
    answer even if the account is now disabled or short of quota."""
    replay = _replay_in(connection, user_id, request)
    return error if replay is None else _Replayed(replay)


def _replay_in(connection: Connection, user_id: int, request: UsageRequest) -> Charge | None:
    """The first answer for this request_id, or None if it is new."""
    row = connection.execute(
        select(
            usage.c.model,
            usage.c.prompt_tokens,
            usage.c.completion_tokens,
            usage.c.quota,
            usage.c.quota_after,
        ).where(usage.c.user_id == user_id, usage.c.request_id == request.request_id)
    ).first()
    if row is None:
        return None
    if (row.model, row.prompt_tokens, row.completion_tokens) != (
        request.model,
        request.prompt_tokens,
        request.completion_tokens,
    ):
        raise IdempotencyConflict(
            f"request_id {request.request_id!r} was already used with a different payload"
        )
    return Charge(request.request_id, int(row.quota), int(row.quota_after), replayed=True)


def deduct_in(connection: Connection, user_id: int, quota: int, note: str = "") -> int:
    """Take `quota` back from a user, recorded as a negative grant with its reason (SPEC
    §13): the invariant holds as for a grant. Never below zero. Returns the new balance."""
    if not 0 < quota <= MAX_QUOTA:
        raise InvalidInput("quota", "must be a positive whole number of quota")
    new_quota = connection.execute(
        update(users)
        .where(users.c.id == user_id, users.c.quota >= quota)
        .values(quota=users.c.quota - quota, granted_total=users.c.granted_total - quota)
        .returning(users.c.quota)
    ).scalar()
    if new_quota is None:
        exists = connection.execute(select(users.c.quota).where(users.c.id == user_id)).first()
        if exists is None:
            raise NotFound(f"no user with id {user_id}")
        raise InvalidInput(
            "quota", f"the balance is {exists[0]:,} quota: less than the {quota:,} to deduct"
        )
    connection.execute(
        insert(grants).values(user_id=user_id, quota=-quota, note=note[:200], created_at=now())
    )
    return int(new_quota)


def adjust(
    database: Database, user_id: int, quota: int, reason: str, *, by: str | None = None
) -> int:
    """A grant (`quota` > 0) or a deduction (`quota` < 0) with its reason, one ledger entry;
    returns the new balance. The reason is required: the entry must say why (and `by`
    whom, when given)."""
    reason = check_text("reason", reason.strip())
    if not 1 <= len(reason) <= 160:
        raise InvalidInput("reason", "say why, in 1-160 characters")
    if by:
        reason = f"{reason} (by {by})"
    with database.write() as connection:
        if quota > 0:
            return grant_in(connection, user_id, quota, reason)
        if quota < 0:
            return deduct_in(connection, user_id, -quota, reason)
    raise InvalidInput("quota", "must not be zero")


def ledger_entries(database: Database, user_id: int, limit: int = 50) -> list[dict[str, Any]]:
    """The user's latest grants and deductions, newest first."""
    with database.read() as connection:
        rows = connection.execute(
            select(grants.c.id, grants.c.quota, grants.c.note, grants.c.created_at)
            .where(grants.c.user_id == user_id)
            .order_by(grants.c.id.desc())
            .limit(limit)
        ).all()
    return [{str(k): v for k, v in row._asdict().items()} for row in rows]
