"""Channel health kept in the database (SQLite and PostgreSQL): two instances agree, a real
upstream that fails then recovers is disabled or cooled and probed back, and the hour's
stats for `channel list`."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest
from limits_support import FakeClock, ScriptedUpstream

from quotaledger.relay.channel_stats import StatsRecorder, bucket_ms, summaries
from quotaledger.relay.health import (
    COOLING,
    DISABLED,
    OK,
    Health,
    HealthBook,
    after_failure,
    classify,
)
from quotaledger.relay.health_watch import ChannelHealth, ProbeResult
from quotaledger.settings import Settings
from quotaledger.store.database import Database


@pytest.fixture
def second(settings: Settings, database: Database) -> Iterator[Database]:
    """Another instance's connection to the same database."""
    other = Database.from_settings(settings)
    yield other
    other.dispose()


def test_transitions_from_two_instances_compose(database: Database, second: Database) -> None:
    books = [HealthBook(database), HealthBook(second)]
    policy = books[0].policy
    barrier = threading.Barrier(3)

    def failing(book: HealthBook, at: int) -> None:
        barrier.wait()
        book.change(9, lambda h: after_failure(h, classify(503), at, policy))

    threads = [threading.Thread(target=failing, args=(books[i % 2], 1000 + i)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    health = books[1].get(9)
    assert health.state == COOLING  # three failures, none lost, though two instances
    assert books[0].all()[9] == health


async def _probe_with_httpx(url: str) -> ProbeResult:
    try:
        async with httpx.AsyncClient(timeout=0.5) as client:
            reply = await client.post(url + "/v1/chat/completions", json={})
    except httpx.TimeoutException:
        return ProbeResult(None, error="timeout")
    except httpx.ConnectError:
        return ProbeResult(None, error="connect error")
    return ProbeResult(reply.status_code, reply.text)


async def test_a_dead_key_disables_and_a_probe_re_enables_once_it_works(
    database: Database, clock: FakeClock
) -> None:
    upstream = ScriptedUpstream(401, (402, '{"error": {"code": "insufficient_quota"}}'), 200)
    changes: list[str] = []
    health = ChannelHealth(HealthBook(database), clock=clock,
                           on_change=lambda _id, h: changes.append(h.state))  # fmt: skip
    try:
        first = await _probe_with_httpx(upstream.url)
        await health.failed(5, first.status, first.detail)
        assert not health.usable(5)
        assert health.health(5).reason == "credential refused (HTTP 401)"

        async def probe(_channel_id: int) -> ProbeResult:
            return await _probe_with_httpx(upstream.url)

        assert await health.probe_due([5], probe) == {}  # not due for 5 minutes
        clock.advance(300)
        probed = await health.probe_due([5], probe)
        assert probed[5].state == DISABLED  # 402 insufficient_quota: still down
        clock.advance(300)
        assert (await health.probe_due([5], probe))[5].state == OK
        assert health.usable(5)
        assert changes == [DISABLED, OK]
    finally:
        upstream.close()


async def test_transient_failures_cool_after_three_and_the_probe_heals(
    database: Database, clock: FakeClock
) -> None:
    upstream = ScriptedUpstream(500, 429, "hang", 200)
    health = ChannelHealth(HealthBook(database), clock=clock)
    try:
        for _ in range(3):
            got = await _probe_with_httpx(upstream.url)
            assert health.usable(6)  # never after one, nor two
            await health.failed(6, got.status, got.detail, got.error)
        assert health.health(6).state == COOLING
        assert health.health(6).last_error == "timeout"

        async def probe(_channel_id: int) -> ProbeResult:
            return await _probe_with_httpx(upstream.url)

        clock.advance(30)
        assert (await health.probe_due([6], probe))[6].state == OK
    finally:
        upstream.close()


async def test_a_probe_is_made_by_one_instance_only(
    database: Database, second: Database, clock: FakeClock
) -> None:
    mine, theirs = (
        ChannelHealth(HealthBook(database), clock=clock),
        ChannelHealth(HealthBook(second), clock=clock),
    )
    await mine.failed(7, 401)
    clock.advance(300)
    calls: list[int] = []

    async def probe(channel_id: int) -> ProbeResult:
        calls.append(channel_id)
        return ProbeResult(401)

    await theirs.refresh(force=True)
    await mine.probe_due([7], probe)
    await theirs.probe_due([7], probe)  # claimed a minute ahead by the first
    assert calls == [7]


async def test_answers_heal_and_the_rows_last_success_is_recorded(
    database: Database, clock: FakeClock
) -> None:
    health = ChannelHealth(HealthBook(database), clock=clock)
    await health.failed(8, 500)
    await health.answered(8, 120)
    assert health.health(8).failures == ()
    await health.flush_stats()
    assert HealthBook(database).get(8).last_success_at == int(clock() * 1000)


async def test_a_channel_that_never_failed_has_its_last_success_recorded(
    database: Database, second: Database, clock: FakeClock
) -> None:
    mine = ChannelHealth(HealthBook(database), clock=clock)
    theirs = ChannelHealth(HealthBook(second), clock=clock)
    await mine.answered(9, 80)
    await mine.flush_stats()
    assert HealthBook(database).get(9) == Health(last_success_at=int(clock() * 1000))
    clock.advance(5)
    await theirs.answered(9, 80)
    await theirs.flush_stats()
    assert HealthBook(database).get(9).last_success_at == int(clock() * 1000)


def test_the_hours_stats_merge_every_instances_tallies(
    database: Database, second: Database
) -> None:
    now = 1_800_000_000.0
    mine, theirs = StatsRecorder(), StatsRecorder()
    for latency in (100, 100, 100):
        mine.answered(3, latency, now)
    for latency in (900, 900):
        theirs.answered(3, latency, now - 600)
    theirs.failed(3, now)
    mine.answered(3, 50, now - 3601)  # more than an hour ago: not counted
    mine.flush(database, now)
    theirs.flush(second, now)
    summary = summaries(database, now)[3]
    assert summary.requests == 6
    assert summary.success_rate == pytest.approx(5 / 6)
    assert summary.p50_ms == bucket_ms(26)  # 100 ms's bucket
    assert 91 <= summary.p50_ms <= 110
