"""Reserve, then settle (SPEC §8): the balance never goes below zero, every charge is the
actual cost, the request counts once, and the extended invariant holds at every step."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from relay_support import (
    MODEL,
    Funded,
    assert_consistent,
    balance,
    funded,
    key_now,
    price_model,
    reserve_for,
)
from sqlalchemy import select

from quotaledger.billing import pricing
from quotaledger.billing.reservations import reserve
from quotaledger.billing.settlement import Outcome, settle
from quotaledger.errors import AuthenticationFailed, IdempotencyConflict, InsufficientQuota
from quotaledger.identity import keys
from quotaledger.identity.keys import KeyLimits
from quotaledger.store.database import Database
from quotaledger.store.tables import usage
from quotaledger.token_usage import TokenUsage, UsageSource

OK = Outcome(200, TokenUsage(input=100, output=50, source=UsageSource.UPSTREAM),
             end_reason="stop", upstream_model="m-2026", channel="main", is_stream=True,
             latency_ms=1200, ttft_ms=300, session_id="sess-1")  # fmt: skip
OK_COST = 100 + 4 * 50


@pytest.fixture(autouse=True)
def _priced(database: Database) -> None:
    price_model(database)


def _log(database: Database, request_id: str) -> dict:  # type: ignore[type-arg]
    with database.read() as connection:
        row = connection.execute(select(usage).where(usage.c.request_id == request_id)).one()
    return dict(row._mapping)


def test_a_settled_request_pays_its_cost_and_gets_the_rest_back(database: Database) -> None:
    who = funded(database, 10_000, KeyLimits(quota=5_000))

    reserved = reserve_for(database, who, 1_000, "req-1")
    assert (reserved.amount, balance(database, who)) == (1_000, 9_000)
    assert key_now(database, who).remain_quota == 4_000
    assert_consistent(database)  # the open reservation is part of the invariant

    settled = settle(database, "req-1", who.user_id, OK)

    assert (settled.charged, settled.written_off, settled.quota_remaining) == (OK_COST, 0, 9_700)
    assert balance(database, who) == 10_000 - OK_COST
    key = key_now(database, who)
    assert (key.remain_quota, key.used_quota, key.request_count) == (5_000 - OK_COST, OK_COST, 1)
    assert key.last_used_at is not None
    log = _log(database, "req-1")
    assert log | {"id": 0, "created_at": 0} == log | {
        "id": 0, "user_id": who.user_id, "request_id": "req-1", "model": MODEL,
        "prompt_tokens": 100, "completion_tokens": 50, "quota": OK_COST, "quota_after": 9_700,
        "created_at": 0, "key_id": who.key.id, "key_name": "k", "upstream_model": "m-2026",
        "channel": "main", "is_stream": True, "cached_tokens": 0, "cache_write_tokens": 0,
        "cache_write_1h_tokens": 0, "quota_reserved": 1_000, "written_off": 0,
        "usage_source": "upstream", "end_reason": "stop", "status": 200, "latency_ms": 1200,
        "ttft_ms": 300, "session_id": "sess-1",
    }  # fmt: skip
    assert_consistent(database)


def test_settling_twice_charges_once(database: Database) -> None:
    who = funded(database, 10_000)
    reserve_for(database, who, 1_000, "req-1")

    first = settle(database, "req-1", who.user_id, OK)
    again = settle(database, "req-1", who.user_id, Outcome(200, TokenUsage(output=999)))

    assert again.replayed and not first.replayed
    assert (again.charged, again.reserved, again.quota_remaining) == (
        first.charged, first.reserved, first.quota_remaining,
    )  # fmt: skip
    assert balance(database, who) == 10_000 - OK_COST
    assert_consistent(database)


def test_a_request_id_is_reserved_once(database: Database) -> None:
    who = funded(database, 10_000)
    reserve_for(database, who, 1_000, "req-1")

    with pytest.raises(IdempotencyConflict):
        reserve_for(database, who, 1_000, "req-1")
    assert balance(database, who) == 9_000
    assert_consistent(database)


@pytest.mark.parametrize(
    ("quota", "limits", "where"),
    [
        (999, KeyLimits(), "the account"),
        (10_000, KeyLimits(quota=999), "this API key"),
        (10_000, KeyLimits(period="day", period_quota=999), "this API key's daily limit"),
        (10_000, KeyLimits(period="month", period_quota=999), "this API key's monthly limit"),
    ],
)
def test_a_reservation_no_funding_row_can_cover_is_refused_naming_it(
    database: Database, quota: int, limits: KeyLimits, where: str
) -> None:
    who = funded(database, quota, limits)

    with pytest.raises(InsufficientQuota) as refused:
        reserve_for(database, who, 1_000)

    assert refused.value.funding == where and refused.value.available == 999
    assert where in str(refused.value)
    assert balance(database, who) == quota
    key = key_now(database, who)
    assert (key.period_used, key.remain_quota) == (0, limits.quota or 0)
    assert_consistent(database)


def test_a_flexible_reservation_takes_what_the_tightest_row_covers(database: Database) -> None:
    who = funded(database, 10_000, KeyLimits(quota=400))

    assert reserve_for(database, who, 1_000, minimum=100).amount == 400
    with pytest.raises(InsufficientQuota, match="this API key"):
        reserve_for(database, who, 1_000, minimum=1)
    assert balance(database, who) == 9_600
    assert_consistent(database)


def test_an_estimate_too_low_is_charged_as_far_as_the_balance_goes_and_the_rest_written_off(
    database: Database,
) -> None:
    who = funded(database, 350)
    reserve_for(database, who, 100, "req-1")  # 250 left on the account

    settled = settle(database, "req-1", who.user_id, Outcome(200, TokenUsage(input=500)))

    assert (settled.charged, settled.written_off, settled.quota_remaining) == (350, 150, 0)
    assert balance(database, who) == 0
    assert _log(database, "req-1")["written_off"] == 150
    assert_consistent(database)


def test_an_excess_never_takes_a_key_past_its_budget_or_period(database: Database) -> None:
    who = funded(database, 10_000, KeyLimits(quota=300, period="day", period_quota=200))
    reserve_for(database, who, 100, "req-1")

    settled = settle(database, "req-1", who.user_id, Outcome(200, TokenUsage(input=500)))

    assert (settled.charged, settled.written_off) == (200, 300)  # the period's 200 is the cap
    key = key_now(database, who)
    assert (key.period_used, key.remain_quota) == (200, 100)
    assert_consistent(database)


def test_a_failed_answer_with_nothing_delivered_costs_nothing_and_is_not_a_request(
    database: Database,
) -> None:
    who = funded(database, 10_000)
    reserve_for(database, who, 1_000, "req-1")

    settled = settle(database, "req-1", who.user_id,
                     Outcome(502, end_reason="upstream_error", channel="main"))  # fmt: skip

    assert (settled.charged, balance(database, who)) == (0, 10_000)
    key = key_now(database, who)
    assert (key.request_count, key.used_quota) == (0, 0)
    log = _log(database, "req-1")
    assert (log["status"], log["quota"], log["end_reason"]) == (502, 0, "upstream_error")
    assert log["usage_source"] is None  # nothing was counted
    assert_consistent(database)


def test_a_stream_cut_after_content_is_charged_for_what_was_delivered(database: Database) -> None:
    who = funded(database, 10_000)
    reserve_for(database, who, 1_000, "req-1")

    settled = settle(
        database, "req-1", who.user_id,
        Outcome(200, TokenUsage(input=100, output=10, source=UsageSource.LOCAL),
                end_reason="upstream_error", is_stream=True),
    )  # fmt: skip

    assert settled.charged == 140
    assert key_now(database, who).request_count == 1
    assert _log(database, "req-1")["usage_source"] == "local"  # the usage's own source
    assert_consistent(database)


def test_a_per_call_price_is_charged_only_for_an_answer(database: Database) -> None:
    pricing.set_price(database, pricing.make_price("img", per_call_usd="0.04"))
    pricing.set_group_ratio(database, "vip", "1.5")
    who = funded(database, 100_000)

    for request_id, status in (("ok", 200), ("failed", 500)):
        keys_ = {"user_id": who.user_id, "key_id": who.key.id}
        reserve(database, request_id, model="img", group="vip", amount=40_000, **keys_)
        settle(database, request_id, who.user_id, Outcome(status))

    assert _log(database, "ok")["quota"] == 30_000  # 0.04 x 500,000 x 1.5
    assert _log(database, "failed")["quota"] == 0
    assert balance(database, who) == 70_000
    assert_consistent(database)


def test_a_200_stream_that_delivered_nothing_is_logged_200_and_charged_nothing(
    database: Database,
) -> None:
    pricing.set_price(database, pricing.make_price("img", per_call_usd="0.04"))
    who = funded(database, 100_000)
    keys_ = {"user_id": who.user_id, "key_id": who.key.id}
    reserve(database, "cut", model="img", group="default", amount=20_000, **keys_)

    cut = Outcome(200, end_reason="upstream_failed", is_stream=True, nothing_delivered=True)
    settle(database, "cut", who.user_id, cut)

    row = _log(database, "cut")
    assert (row["status"], row["quota"]) == (200, 0)
    assert balance(database, who) == 100_000  # not the per-call price: nothing came
    assert key_now(database, who).request_count == 1  # the client got a 200
    assert_consistent(database)


def test_a_key_disabled_or_deleted_after_admission_cannot_reserve_but_settles(
    database: Database,
) -> None:
    who = funded(database, 10_000)
    reserve_for(database, who, 1_000, "open")

    keys.delete_key(database, who.key.id)

    with pytest.raises(AuthenticationFailed):
        reserve_for(database, who, 1_000)
    assert settle(database, "open", who.user_id, OK).charged == OK_COST
    assert _log(database, "open")["key_name"] == "k"
    assert_consistent(database)


def _at(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("period", "before", "after"),
    [
        ("day", _at(2026, 11, 30, 23, 59, 59), _at(2026, 12, 1)),
        ("month", _at(2026, 12, 31, 23, 59, 59), _at(2027, 1, 1)),
        ("month", _at(2028, 2, 29, 23, 59, 59), _at(2028, 3, 1)),
    ],
)
def test_a_periodic_limit_resets_exactly_at_the_period_start(
    database: Database, period: str, before: float, after: float
) -> None:
    who = funded(database, 10_000, KeyLimits(period=period, period_quota=1_000))
    reserve_for(database, who, 600, "old", clock=lambda: before)
    with pytest.raises(InsufficientQuota, match="limit"):
        reserve_for(database, who, 600, clock=lambda: before)

    reserve_for(database, who, 600, "new", clock=lambda: after)  # a new period: room again

    key = key_now(database, who)
    assert (key.period_used, key.period_used_now(after), key.period_used_now(after + 86400 * 40)) \
        == (600, 600, 0)  # fmt: skip
    # The reservation of the old period settles without touching the new period's count.
    settle(database, "old", who.user_id, Outcome(200, TokenUsage(input=10)))
    assert key_now(database, who).period_used == 600
    settle(database, "new", who.user_id, Outcome(200, TokenUsage(input=10)))
    assert key_now(database, who).period_used == 10
    assert_consistent(database)


def test_an_unlimited_key_spends_only_the_account(database: Database) -> None:
    who: Funded = funded(database, 1_000)

    reserve_for(database, who, 1_000, "req-1")
    settle(database, "req-1", who.user_id, OK)

    key = key_now(database, who)
    assert key.unlimited and key.remain_quota == 0 and key.used_quota == OK_COST
    assert_consistent(database)


@pytest.mark.parametrize(
    ("amount", "minimum", "request_id", "field"),
    [(100, 101, "r", "amount"), (-1, 0, "r", "amount"), (1, 1, "", "request_id"),
     (1, 1, "x" * 129, "request_id")],
)  # fmt: skip
def test_a_nonsensical_reservation_is_refused_before_any_write(
    database: Database, amount: int, minimum: int, request_id: str, field: str
) -> None:
    from quotaledger.errors import InvalidInput

    who = funded(database, 10_000)

    with pytest.raises(InvalidInput, match=field):
        reserve(database, request_id, user_id=who.user_id, key_id=who.key.id, model=MODEL,
                group="default", amount=amount, minimum=minimum)  # fmt: skip
    assert balance(database, who) == 10_000
