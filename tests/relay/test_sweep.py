"""The sweeper: a reservation left open past the TTL (its instance died) is settled to the
progress recorded, else released; a request still reporting progress is never swept; a
late settle after a sweep changes nothing."""

from __future__ import annotations

import asyncio

import pytest
from relay_support import assert_consistent, balance, funded, key_now, price_model, reserve_for
from sqlalchemy import select

from quotaledger.billing.reservations import record_progress, record_progress_async
from quotaledger.billing.settlement import Outcome, settle, sweep
from quotaledger.store.database import Database
from quotaledger.store.tables import usage
from quotaledger.token_usage import TokenUsage

TTL = 900
T0 = 1_800_000_000.0


@pytest.fixture(autouse=True)
def _priced(database: Database) -> None:
    price_model(database)


def _at(seconds: float):  # type: ignore[no-untyped-def]
    return lambda: T0 + seconds


def test_an_abandoned_reservation_is_settled_to_its_progress_after_the_ttl(
    database: Database,
) -> None:
    who = funded(database, 10_000)
    reserve_for(database, who, 1_000, "streaming", clock=_at(0))
    record_progress(database, "streaming", TokenUsage(input=100, output=20), 200,
                    clock=_at(10))  # fmt: skip

    assert sweep(database, TTL, clock=_at(10 + TTL - 1)) == []
    [swept] = sweep(database, TTL, clock=_at(10 + TTL))

    assert (swept.request_id, swept.charged, swept.reserved) == ("streaming", 180, 1_000)
    assert balance(database, who) == 10_000 - 180
    assert key_now(database, who).request_count == 1
    with database.read() as connection:
        row = connection.execute(select(usage.c.end_reason, usage.c.usage_source)).one()
    assert tuple(row) == ("swept", "local")
    assert_consistent(database)


def test_an_abandoned_reservation_without_progress_is_released(database: Database) -> None:
    who = funded(database, 10_000)
    reserve_for(database, who, 1_000, "lost", clock=_at(0))

    [swept] = sweep(database, TTL, clock=_at(TTL))

    assert (swept.charged, swept.written_off) == (0, 0)
    assert balance(database, who) == 10_000
    assert key_now(database, who).request_count == 0
    with database.read() as connection:
        row = connection.execute(select(usage.c.end_reason, usage.c.usage_source)).one()
    assert tuple(row) == ("swept", None)  # nothing was counted
    assert_consistent(database)


def test_progress_keeps_a_long_stream_from_being_swept(database: Database) -> None:
    who = funded(database, 10_000)
    reserve_for(database, who, 1_000, "long", clock=_at(0))

    for minute in range(1, 40):
        assert record_progress(database, "long", TokenUsage(output=minute), 200,
                               clock=_at(60 * minute))  # fmt: skip
        assert sweep(database, TTL, clock=_at(60 * minute + 1)) == []

    assert settle(database, "long", who.user_id, Outcome(200, TokenUsage(output=50)),
                  clock=_at(2_400)).charged == 200  # fmt: skip
    assert_consistent(database)


def test_a_settle_arriving_after_the_sweep_changes_nothing(database: Database) -> None:
    who = funded(database, 10_000)
    reserve_for(database, who, 1_000, "late", clock=_at(0))
    sweep(database, TTL, clock=_at(TTL))

    late = settle(database, "late", who.user_id, Outcome(200, TokenUsage(output=100)))

    assert late.replayed and late.charged == 0
    assert not record_progress(database, "late", TokenUsage(output=5))
    assert balance(database, who) == 10_000
    assert_consistent(database)


def test_progress_recorded_together_is_one_group_commit_and_settles_each_to_its_own(
    database: Database,
) -> None:
    who = funded(database, 10_000)
    for name in ("a", "b"):
        reserve_for(database, who, 1_000, name, clock=_at(0))

    async def beat() -> list[bool]:
        results = await asyncio.gather(
            record_progress_async(database, "a", TokenUsage(input=100, output=20), 200),
            record_progress_async(database, "b", TokenUsage(input=100, output=40), 200),
            record_progress_async(database, "never-reserved", TokenUsage(output=5), 200),
        )
        await database.close_group_commits()
        return list(results)

    assert asyncio.run(beat()) == [True, True, False]
    swept = sweep(database, TTL, clock=lambda: 10**10)
    assert sorted((s.request_id, s.charged) for s in swept) == [("a", 180), ("b", 260)]
    assert_consistent(database)
