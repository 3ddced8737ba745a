"""Settling a reservation (SPEC §8): once, idempotent by request id, in one transaction.

`settle` deletes the reservation row first: that DELETE is the gate that makes settling
happen exactly once, whether the request itself, a retry of it or a sweeper on another
instance gets there first. It then locks the user (as `reserve` does), charges the actual
cost, gives back the rest of the reservation (or charges the excess, only as far as every
funding row covers it, writing off the remainder), counts the request when the client got
a 2xx, updates the key's counters and writes the log row. `sweep` settles reservations
whose request died with its instance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, NamedTuple

from sqlalchemy import Connection, Row, bindparam, delete, func, insert, select, update

from quotaledger.billing.pricing import (
    OPTIONAL_COLUMNS,
    Price,
    price_from_columns,
    price_tier,
    relay_cost,
)
from quotaledger.billing.reservations import Clock
from quotaledger.errors import InvalidInput, NotFound
from quotaledger.money import MAX_QUOTA
from quotaledger.store.compiled import CompiledStatement
from quotaledger.store.database import Database
from quotaledger.store.group_commit import apply_items
from quotaledger.store.tables import api_keys, groups, prices, reservations, usage, users
from quotaledger.token_usage import TokenUsage, UsageSource


@dataclass(frozen=True)
class Outcome:
    """How a relayed request ended: what to charge and what the log row says."""

    status: int | None  # the HTTP status the client got; None: unknown (swept)
    # What was counted, and where from (`usage.source`, logged as the usage source); None:
    # nothing was (refused upstream, nothing delivered, swept without progress).
    usage: TokenUsage | None = None
    end_reason: str | None = None  # e.g. stop, upstream_error, client_disconnect, swept
    upstream_model: str | None = None
    channel: str | None = None
    is_stream: bool = False
    latency_ms: int | None = None
    ttft_ms: int | None = None
    session_id: str | None = None
    client_format: str | None = None  # the client's wire format (chat, messages, gemini...)
    channel_format: str | None = None  # the channel's (openai, openai-chat, anthropic, gemini)
    dropped: str | None = None  # fields the conversion could not carry, comma-separated
    # Why the usage charged is not the one the upstream reported (`billing.believable`):
    # e.g. "output_above_cap", "prompt_below_estimate"; None when it is (or none came).
    usage_note: str | None = None
    # A stream whose 2xx head had gone out when its upstream failed, before any content: the
    # row keeps the status the client saw, yet nothing is charged (SPEC §8, failures).
    nothing_delivered: bool = False

    @property
    def answered(self) -> bool:
        """A 2xx answer: the request counts (`request_count`)."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def billable(self) -> bool:
        """Answered with something delivered: a per-call price applies (and, the price
        deleted meanwhile, the reservation is charged)."""
        return self.answered and not self.nothing_delivered


@dataclass(frozen=True)
class Settlement:
    request_id: str
    reserved: int
    charged: int
    written_off: int
    quota_remaining: int  # the account's balance right after this settlement
    replayed: bool = False  # settled before (by the request itself or by a sweeper)
    # Whose balances moved, for the alerts (server/alert_watch.py): a limited key's budget
    # right after, None for an unlimited key (and for a replay).
    user_id: int | None = None
    key_id: int | None = None
    key_remaining: int | None = None


# ------------------------------------------------------------------ settle

_CLOSE = CompiledStatement(
    delete(reservations)
    .where(reservations.c.request_id == bindparam("rid"))
    .returning(
        reservations.c.user_id,
        reservations.c.key_id,
        reservations.c.model,
        reservations.c.price_format,
        reservations.c.group,
        reservations.c.amount,
        reservations.c.key_funded,
        reservations.c.period_start,
    )
)


class _Closed(NamedTuple):
    """A row returned by `_CLOSE`."""

    user_id: int
    key_id: int
    model: str
    price_format: str
    group: str
    amount: int
    key_funded: bool
    period_start: int | None


_SETTLE_CONTEXT = CompiledStatement(
    select(
        users.c.quota,
        api_keys.c.name,
        api_keys.c.remain_quota,
        api_keys.c.period_quota,
        api_keys.c.period_used,
        api_keys.c.period_start,
        groups.c.ratio,
        prices.c.model,
        prices.c.per_call_usd,
        prices.c.input_usd_per_mtok,
        prices.c.output_usd_per_mtok,
        *(prices.c[column] for column in OPTIONAL_COLUMNS),
    )
    .select_from(
        users.join(api_keys, api_keys.c.user_id == users.c.id)
        .outerjoin(groups, groups.c.name == bindparam("group"))
        .outerjoin(prices, prices.c.model == bindparam("model"))
    )
    .where(users.c.id == bindparam("user_id"), api_keys.c.id == bindparam("key_id"))
    .with_for_update(of=[users, api_keys])
)


class _Context(NamedTuple):
    """A row of `_SETTLE_CONTEXT`."""

    quota: int
    key_name: str
    remain_quota: int
    period_quota: int | None
    period_used: int
    period_start: int
    ratio: str | None
    model: str | None
    per_call_usd: str | None
    input_usd_per_mtok: str | None
    output_usd_per_mtok: str | None
    cache_read_usd_per_mtok: str | None
    cache_write_usd_per_mtok: str | None
    cache_write_1h_usd_per_mtok: str | None
    long_input_usd_per_mtok: str | None
    long_output_usd_per_mtok: str | None
    long_cache_read_usd_per_mtok: str | None
    long_cache_write_usd_per_mtok: str | None
    long_cache_write_1h_usd_per_mtok: str | None
    web_search_usd_per_kcall: str | None
    long_context_threshold: int | None
    max_output_tokens: int | None


_SETTLE_ACCOUNT_UPDATE = (
    update(users)
    .where(users.c.id == bindparam("user_id"), users.c.quota + bindparam("refund") >= 0)
    .values(
        quota=users.c.quota + bindparam("refund"),
        used_quota=users.c.used_quota + bindparam("charged"),
        request_count=users.c.request_count + bindparam("counted"),
    )
)
_SETTLE_ACCOUNT = CompiledStatement(_SETTLE_ACCOUNT_UPDATE)
_SETTLE_KEY_UPDATE = (
    update(api_keys)
    .where(
        api_keys.c.id == bindparam("key_id"),
        api_keys.c.remain_quota + bindparam("key_refund") >= 0,
        api_keys.c.period_used + bindparam("period_delta") >= 0,
    )
    .values(
        remain_quota=api_keys.c.remain_quota + bindparam("key_refund"),
        used_quota=api_keys.c.used_quota + bindparam("charged"),
        request_count=api_keys.c.request_count + bindparam("counted"),
        period_used=api_keys.c.period_used + bindparam("period_delta"),
        last_used_at=bindparam("used_at"),
    )
)
_SETTLE_KEY = CompiledStatement(_SETTLE_KEY_UPDATE)
_LOG_COLUMNS = [
    "user_id", "request_id", "model", "prompt_tokens", "completion_tokens", "quota",
    "quota_after", "created_at", "key_id", "key_name", "upstream_model", "channel",
    "is_stream", "cached_tokens", "cache_write_tokens", "cache_write_1h_tokens",
    "quota_reserved", "written_off", "usage_source", "end_reason", "status", "latency_ms",
    "ttft_ms", "session_id", "client_format", "channel_format", "dropped_fields",
    "usage_note", "web_search_calls", "price_tier",
]  # fmt: skip
_LOG = CompiledStatement(insert(usage), column_keys=_LOG_COLUMNS)


def _settle_writes() -> CompiledStatement:
    """PostgreSQL: the account's and the key's UPDATEs and the log row's INSERT in ONE
    statement (data-modifying CTEs), one round trip instead of three while the user's lock
    is held; it returns how many rows each UPDATE matched (their guards), as the separate
    statements' rowcounts do on SQLite. The parameters are the three statements' together
    (`user_id` and `key_id` mean the same in each)."""
    account = _SETTLE_ACCOUNT_UPDATE.returning(users.c.id).cte("account_row")
    key = _SETTLE_KEY_UPDATE.returning(api_keys.c.id).cte("key_row")
    log = (
        insert(usage)
        .values({name: bindparam(name) for name in _LOG_COLUMNS})
        .returning(usage.c.id)
        .cte("log_row")
    )
    return CompiledStatement(
        select(*(select(func.count()).select_from(cte).scalar_subquery()
                 for cte in (account, key, log)))
    )  # fmt: skip


_SETTLE_WRITES = _settle_writes()


def settle(
    database: Database,
    request_id: str,
    user_id: int,
    outcome: Outcome,
    *,
    clock: Clock = time.time,
) -> Settlement:
    """Settle the reservation of `request_id` (made for `user_id`) once: charge what
    `outcome` cost (SPEC §8a prices, the reservation's group ratio; nothing for a per-call
    price unless answered 2xx with something delivered; the reserved amount if the price
    was deleted meanwhile), give back the rest, count the request if answered 2xx, write
    the log row.
    Settling again, or after a sweeper did, changes nothing and returns the first
    settlement with `replayed=True`. `NotFound` if `request_id` was never reserved."""
    with database.write() as connection:
        return settle_in(connection, SettleRequest(request_id, user_id, outcome), int(clock()))


@dataclass(frozen=True)
class SettleRequest:
    """`settle`'s arguments, for `settle_async` (group commit: a `BatchItem`)."""

    refusals: ClassVar[tuple[type[Exception], ...]] = (NotFound,)  # raised before any write

    request_id: str
    user_id: int
    outcome: Outcome

    def order_key(self) -> tuple[int, str]:
        return (self.user_id, self.request_id)

    def apply_in(self, connection: Connection, now: int) -> Settlement:
        return settle_in(connection, self, now)


def settle_in(connection: Connection, ask: SettleRequest, now: int) -> Settlement:
    """`settle` inside the caller's transaction; `NotFound` is raised before any write."""
    request_id, outcome = ask.request_id, ask.outcome
    closed_row = _CLOSE.execute(connection, {"rid": request_id}).fetchone()
    if closed_row is None:
        return _settled_before(connection, request_id, ask.user_id)
    closed = _Closed(*closed_row)
    context = _Context(
        *_SETTLE_CONTEXT.execute(
            connection,
            {"user_id": closed.user_id, "key_id": closed.key_id,
             "group": closed.group, "model": closed.model},
        ).fetchone()
    )  # fmt: skip
    price = _price(context)
    charged, written_off = _charge(closed, context, price, outcome)
    quota_after = int(context.quota) + int(closed.amount) - charged
    log_row = _log_row(request_id, closed, context, outcome, charged, written_off,
                       quota_after, now)  # fmt: skip
    if price is not None and outcome.usage is not None and price.per_call_usd is None:
        log_row["price_tier"] = price_tier(price, outcome.usage)
    _apply(connection, closed, context, charged, outcome.answered, now, log_row)
    key_after = int(context.remain_quota) + int(closed.amount) - charged
    return Settlement(
        request_id, int(closed.amount), charged, written_off, quota_after,
        user_id=closed.user_id, key_id=closed.key_id,
        key_remaining=key_after if closed.key_funded else None,
    )  # fmt: skip


async def settle_async(
    database: Database, request_id: str, user_id: int, outcome: Outcome, *, alone: bool = False
) -> Settlement:
    """`settle` for code on the event loop: settlements that arrive while a batch commits
    share the next transaction (`Database.group_commit`) with reservations arriving too
    (`group_commit.apply_items`; `alone`: see `Database.group_commit`); each is answered
    after the commit that holds it. Raises as `settle` does, or `DatabaseBusy`."""
    ask = SettleRequest(request_id, user_id, outcome)
    settled: Settlement | Exception = await database.group_commit(apply_items, ask, alone=alone)
    if isinstance(settled, Exception):
        raise settled
    return settled


def _price(context: _Context) -> Price | None:
    # None: the price was deleted while the request ran.
    return None if context.model is None else price_from_columns(context)


def _cost(closed: _Closed, context: _Context, price: Price | None, outcome: Outcome) -> int:
    if price is None:
        return int(closed.amount) if outcome.billable else 0
    if price.per_call_usd is not None and not outcome.billable:
        return 0
    ratio = Decimal(context.ratio) if context.ratio is not None else Decimal(1)
    try:
        # The cache prices of the channel that answered (the reservation guessed one).
        price_format = outcome.channel_format or closed.price_format
        return relay_cost(price, outcome.usage or TokenUsage(), ratio, price_format)
    except InvalidInput:  # past the largest amount: whatever the funding rows cover
        return MAX_QUOTA


def _charge(
    closed: _Closed, context: _Context, price: Price | None, outcome: Outcome
) -> tuple[int, int]:
    """(charged, written off): the cost, with any excess over the reservation charged only
    as far as every funding row still covers it."""
    cost, reserved = _cost(closed, context, price, outcome), int(closed.amount)
    if cost <= reserved:
        return cost, 0
    rooms = [int(context.quota)]
    if closed.key_funded:
        rooms.append(int(context.remain_quota))
    if _same_period(closed, context) and context.period_quota is not None:
        rooms.append(int(context.period_quota) - int(context.period_used))
    extra = max(0, min(cost - reserved, *rooms))
    return reserved + extra, cost - reserved - extra


def _same_period(closed: _Closed, context: _Context) -> bool:
    # A reservation from a period that has since ended leaves the new period's count alone.
    return closed.period_start is not None and closed.period_start == context.period_start


def _apply(
    connection: Connection, closed: _Closed, context: _Context, charged: int, answered: bool,
    now: int, log_row: dict[str, Any],
) -> None:  # fmt: skip
    """The account's and the key's UPDATEs and the log row: three statements on SQLite (no
    round trips there), one on PostgreSQL (`_SETTLE_WRITES`)."""
    refund = int(closed.amount) - charged  # negative when an excess is charged
    counted = 1 if answered else 0
    params: dict[str, Any] = {"user_id": closed.user_id, "refund": refund,
                              "charged": charged, "counted": counted}  # fmt: skip
    key_params = {
        "key_id": closed.key_id, "key_refund": refund if closed.key_funded else 0,
        "charged": charged, "counted": counted, "used_at": now,
        "period_delta": -refund if _same_period(closed, context) else 0,
    }  # fmt: skip
    if connection.dialect.name == "postgresql":
        matched = _SETTLE_WRITES.execute(connection, {**log_row, **params, **key_params})
        account_rows, key_rows, _ = matched.fetchone()
        if account_rows != 1 or key_rows != 1:
            raise RuntimeError("a funding row changed under a held lock: settlement abandoned")
        return
    if _SETTLE_ACCOUNT.execute(connection, params).rowcount != 1:
        raise RuntimeError("the balance changed under a held lock: settlement abandoned")
    if _SETTLE_KEY.execute(connection, key_params).rowcount != 1:
        raise RuntimeError("the key's budget changed under a held lock: settlement abandoned")
    _LOG.execute(connection, log_row)


def _log_row(
    request_id: str, closed: _Closed, context: _Context, outcome: Outcome, charged: int,
    written_off: int, quota_after: int, now: int,
) -> dict[str, Any]:  # fmt: skip
    u = outcome.usage or TokenUsage()
    return {
        "user_id": closed.user_id, "request_id": request_id, "model": closed.model,
        "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
        "quota": charged, "quota_after": quota_after, "created_at": now,
        "key_id": closed.key_id, "key_name": context.key_name,
        "upstream_model": outcome.upstream_model, "channel": outcome.channel,
        "is_stream": outcome.is_stream, "cached_tokens": u.cache_read,
        "cache_write_tokens": u.cache_write_5m,
        "cache_write_1h_tokens": u.cache_write_1h, "quota_reserved": closed.amount,
        "written_off": written_off,
        "usage_source": None if outcome.usage is None else str(outcome.usage.source),
        "end_reason": outcome.end_reason, "status": outcome.status,
        "latency_ms": outcome.latency_ms, "ttft_ms": outcome.ttft_ms,
        "session_id": outcome.session_id, "client_format": outcome.client_format,
        "channel_format": outcome.channel_format,
        "dropped_fields": None if outcome.dropped is None else outcome.dropped[:512],
        "usage_note": None if outcome.usage_note is None else outcome.usage_note[:64],
        "web_search_calls": u.web_search, "price_tier": None,
    }  # fmt: skip


_SETTLED_BEFORE = CompiledStatement(
    select(usage.c.quota_reserved, usage.c.quota, usage.c.written_off, usage.c.quota_after).where(
        usage.c.user_id == bindparam("user_id"), usage.c.request_id == bindparam("rid")
    )
)


def _settled_before(connection: Connection, request_id: str, user_id: int) -> Settlement:
    # On the driver's cursor, as every statement of a batch (`Database.batch_write`).
    row = _SETTLED_BEFORE.execute(connection, {"user_id": user_id, "rid": request_id}).fetchone()
    if row is None:
        raise NotFound(f"no reservation for request_id {request_id!r}")
    reserved, charged, written_off, quota_after = (int(v) for v in row)
    return Settlement(request_id, reserved, charged, written_off, quota_after, replayed=True)


# ------------------------------------------------------------------ sweep


def sweep(
    database: Database, older_than: int, *, clock: Clock = time.time, limit: int = 100
) -> list[Settlement]:
    """Settle up to `limit` reservations idle for `older_than` seconds or more (their
    instance died, or lost the database): to the progress recorded, else released.
    Several instances may sweep at once: each reservation is settled exactly once, and
    only the settlements made by this call are returned."""
    cutoff = int(clock()) - older_than
    with database.read() as connection:
        stale = connection.execute(
            select(
                reservations.c.request_id,
                reservations.c.user_id,
                reservations.c.input_tokens,
                reservations.c.cached_tokens,
                reservations.c.cache_write_tokens,
                reservations.c.cache_write_1h_tokens,
                reservations.c.output_tokens,
                reservations.c.progress_status,
            )
            .where(reservations.c.active_at <= cutoff)
            .order_by(reservations.c.active_at)
            .limit(limit)
        ).all()
    done = []
    for row in stale:
        outcome = Outcome(row.progress_status, _progress(row), end_reason="swept")
        settled = settle(database, row.request_id, row.user_id, outcome, clock=clock)
        if not settled.replayed:
            done.append(settled)
    return done


def _progress(row: Row[*tuple[Any, ...]]) -> TokenUsage | None:
    """The usage a reservation's progress columns record (the relay's own count), or None
    when no progress was ever recorded."""
    progress = TokenUsage(
        input=row.input_tokens, cache_read=row.cached_tokens,
        cache_write_5m=row.cache_write_tokens, cache_write_1h=row.cache_write_1h_tokens,
        output=row.output_tokens, source=UsageSource.LOCAL,
    )  # fmt: skip
    recorded = row.progress_status is not None or progress.total_tokens > 0
    return progress if recorded else None
