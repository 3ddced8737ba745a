"""Reservations under concurrency, on SQLite and PostgreSQL: with demand above the balance
exactly the covered requests get a reservation, nothing goes below zero, and settling and
sweeping from several threads (and two engines, as two instances would) settles each
reservation exactly once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest
from relay_support import (
    Funded,
    assert_consistent,
    balance,
    funded,
    key_now,
    price_model,
    reserve_for,
)

from quotaledger.billing.reservations import Reservation, record_progress
from quotaledger.billing.settlement import Outcome, settle, sweep
from quotaledger.errors import InsufficientQuota
from quotaledger.identity.keys import KeyLimits
from quotaledger.settings import Settings
from quotaledger.store.database import Database
from quotaledger.token_usage import TokenUsage

T = TypeVar("T")


@pytest.fixture
def second_instance(settings: Settings, database: Database):  # type: ignore[no-untyped-def]
    """Another engine on the same database: what a second `serve` process has."""
    other = Database.from_settings(settings)
    yield other
    other.dispose()


def _all_at_once(count: int, work: Callable[[int], T]) -> list[T | Exception]:
    """Run `work(i)` for i in range(count) on `count` threads released together."""
    barrier = threading.Barrier(count)

    def run(i: int) -> T | Exception:
        barrier.wait()
        try:
            return work(i)
        except InsufficientQuota as exc:
            return exc

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


@pytest.mark.parametrize(
    ("quota", "limits"),
    [(20 * 100, None), (10**9, KeyLimits(quota=20 * 100)),
     (10**9, KeyLimits(period="day", period_quota=20 * 100))],
    ids=["account", "key", "key-period"],
)  # fmt: skip
def test_a_hundred_concurrent_reservations_against_twenty_get_exactly_twenty(
    database: Database, second_instance: Database, quota: int, limits: KeyLimits | None
) -> None:
    who = funded(database, quota, limits)
    engines = (database, second_instance)

    results = _all_at_once(100, lambda i: reserve_for(engines[i % 2], who, 100, f"req-{i}"))

    granted = [r for r in results if isinstance(r, Reservation)]
    refused = [r for r in results if isinstance(r, InsufficientQuota)]
    assert (len(granted), len(refused)) == (20, 80)
    key = key_now(database, who)
    assert min(balance(database, who), key.remain_quota, key.period_used) >= 0
    assert balance(database, who) == quota - 2_000
    assert_consistent(database)


@pytest.mark.slow
def test_concurrent_settles_and_sweeps_settle_each_reservation_once(
    database: Database, second_instance: Database
) -> None:
    price_model(database)
    who: Funded = funded(database, 100_000, KeyLimits(quota=50_000))
    for i in range(40):
        reserve_for(database, who, 1_000, f"req-{i}", clock=lambda: 1_000.0)
    for i in range(0, 40, 2):  # half reported progress before "their instance died"
        record_progress(database, f"req-{i}", TokenUsage(input=10, output=5), 200,
                        clock=lambda: 1_000.0)  # fmt: skip
    engines = (database, second_instance)
    outcome = Outcome(200, TokenUsage(input=100, output=100))

    def settle_or_sweep(i: int) -> object:
        if i % 4 == 3:
            return sweep(engines[i % 2], 900, clock=lambda: 1_900.0)
        return settle(engines[i % 2], f"req-{i % 40}", who.user_id, outcome)

    _all_at_once(60, settle_or_sweep)
    sweep(database, 900, clock=lambda: 1_900.0)

    assert_consistent(database)
    with database.read() as connection:
        from sqlalchemy import func, select

        from quotaledger.store.tables import reservations, usage

        assert connection.execute(select(func.count()).select_from(reservations)).scalar() == 0
        assert connection.execute(select(func.count()).select_from(usage)).scalar() == 40
