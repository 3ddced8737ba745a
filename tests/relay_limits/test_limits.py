"""SPEC §12's rate limits as a specification, on both backends: this process's counters and
Redis (a private redis-server), with the same clock moved by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from limits_support import FakeClock

from quotaledger.errors import InvalidInput
from quotaledger.relay.limits import (
    Lease,
    Limiter,
    LimitSpec,
    MemoryCounters,
    Rates,
    Refusal,
    checked_rates,
    go_duration,
)


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Limiter]:
    if request.param == "memory":
        yield Limiter(MemoryCounters(), clock=clock, lease_ttl=300)
        return
    from quotaledger.server.limit_counters import RedisCounters

    counters = RedisCounters(request.getfixturevalue("private_redis"))
    yield Limiter(counters, clock=clock, lease_ttl=300)
    await counters.aclose()


def spec(tokens: int = 100, **rates: Rates) -> LimitSpec:
    return LimitSpec(key_id=1, account_id=7, model="gpt-4o", estimated_tokens=tokens, **rates)


async def admitted(limiter: Limiter, s: LimitSpec) -> Lease:
    got = await limiter.admit(s)
    assert isinstance(got, Lease), got
    return got


async def refused(limiter: Limiter, s: LimitSpec) -> Refusal:
    got = await limiter.admit(s)
    assert isinstance(got, Refusal), got
    return got


async def test_a_request_without_limits_is_admitted_without_asking_the_store() -> None:
    class Untouchable(MemoryCounters):
        async def take(self, *args: object) -> None:  # type: ignore[override]
            raise AssertionError("asked")

    lease = await admitted(Limiter(Untouchable()), spec())
    assert lease.openai_headers() == []
    await lease.release()


async def test_the_tightest_limit_refuses_and_names_itself(limiter: Limiter) -> None:
    s = spec(key=Rates(rpm=5), account=Rates(rpm=3))
    for _ in range(3):
        await admitted(limiter, s)
    refusal = await refused(limiter, s)
    assert (refusal.kind, refusal.scope, refusal.limit) == ("requests", "account:7", 3)
    assert refusal.retry_after == 60
    assert "3 requests per minute for this account" in refusal.message


async def test_a_refused_request_takes_nothing_from_the_other_limits(limiter: Limiter) -> None:
    await admitted(limiter, spec(account=Rates(rpm=1)))
    for _ in range(5):  # refused by the account: the key's own 2 stay untouched
        await refused(limiter, spec(key=Rates(rpm=2), account=Rates(rpm=1)))
    only_key = spec(key=Rates(rpm=2))
    await admitted(limiter, only_key)
    await admitted(limiter, only_key)
    await refused(limiter, only_key)


async def test_the_window_opens_again_sixty_seconds_after_it_started(
    limiter: Limiter, clock: FakeClock
) -> None:
    s = spec(key=Rates(rpm=2))
    await admitted(limiter, s)
    clock.advance(30)
    await admitted(limiter, s)
    assert (await refused(limiter, s)).retry_after == 30
    clock.advance(29.9)
    await refused(limiter, s)
    clock.advance(0.1)
    await admitted(limiter, s)


async def test_tpm_admits_on_the_estimate(limiter: Limiter) -> None:
    s = spec(tokens=400, key=Rates(tpm=1000))
    await admitted(limiter, s)
    await admitted(limiter, s)
    refusal = await refused(limiter, s)
    assert (refusal.kind, refusal.limit) == ("tokens", 1000)


async def test_settling_corrects_tpm_to_the_actual_usage(limiter: Limiter) -> None:
    s = spec(tokens=400, key=Rates(tpm=1000))
    first = await admitted(limiter, s)
    await admitted(limiter, s)
    await first.settle(50)  # 800 estimated -> 450 counted: room for one more estimate
    await first.settle(0)  # once only
    third = await admitted(limiter, s)
    assert ("x-ratelimit-remaining-tokens", "150") in third.openai_headers()
    await refused(limiter, s)


async def test_a_request_estimated_above_the_whole_tpm_takes_an_empty_window(
    limiter: Limiter, clock: FakeClock
) -> None:
    big = spec(tokens=5000, key=Rates(tpm=1000))  # an output cap far above the TPM
    lease = await admitted(limiter, big)
    assert ("x-ratelimit-remaining-tokens", "0") in lease.openai_headers()
    await refused(limiter, spec(tokens=1, key=Rates(tpm=1000)))
    await lease.settle(300)  # it used 300: the rest of the window is free again
    await admitted(limiter, spec(tokens=700, key=Rates(tpm=1000)))
    clock.advance(60)
    await admitted(limiter, big)  # never refused for ever


async def test_a_correction_for_an_ended_window_is_dropped(
    limiter: Limiter, clock: FakeClock
) -> None:
    s = spec(tokens=600, key=Rates(tpm=1000))
    lease = await admitted(limiter, s)
    clock.advance(60)
    await admitted(limiter, s)  # the new window holds 600
    await lease.settle(0)  # would free 600 of a window that no longer counts
    await refused(limiter, s)


async def test_a_settlement_above_the_estimate_counts_the_excess(limiter: Limiter) -> None:
    lease = await admitted(limiter, spec(tokens=100, key=Rates(tpm=1000)))
    await lease.settle(950)
    await refused(limiter, spec(tokens=100, key=Rates(tpm=1000)))


async def test_concurrency_slots_are_freed_by_release(limiter: Limiter) -> None:
    s = spec(key=Rates(concurrency=2))
    first, _second = await admitted(limiter, s), await admitted(limiter, s)
    refusal = await refused(limiter, s)
    assert (refusal.kind, refusal.retry_after) == ("concurrency", 1)
    await first.release()
    await first.release()  # idempotent: frees no one else's slot
    await admitted(limiter, s)
    await refused(limiter, s)


async def test_an_unreleased_slot_lapses_after_the_lease_ttl(
    limiter: Limiter, clock: FakeClock
) -> None:
    s = spec(key=Rates(concurrency=1))
    await admitted(limiter, s)  # its holder vanishes without releasing
    clock.advance(299)
    await refused(limiter, s)
    clock.advance(1)
    await admitted(limiter, s)


async def test_renewing_keeps_a_long_requests_slot(limiter: Limiter, clock: FakeClock) -> None:
    s = spec(key=Rates(concurrency=1))
    lease = await admitted(limiter, s)
    clock.advance(200)
    await lease.renew()
    clock.advance(200)
    await refused(limiter, s)
    await lease.release()
    await lease.renew()  # a released lease is not brought back
    await admitted(limiter, s)


async def test_group_defaults_apply_to_each_member_unless_the_account_sets_its_own(
    limiter: Limiter,
) -> None:
    group = Rates(rpm=1, concurrency=5)
    await admitted(limiter, spec(group_rates=group))
    await refused(limiter, spec(group_rates=group))
    other_member = LimitSpec(2, 8, "gpt-4o", 100, group_rates=group)
    await admitted(limiter, other_member)  # a default for each member, not a shared pool
    own = spec(account=Rates(rpm=3), group_rates=group)  # the account's own rpm wins
    await admitted(limiter, own)
    await admitted(limiter, own)
    await refused(limiter, own)


async def test_a_groups_model_limit_counts_each_members_use_of_that_model(
    limiter: Limiter,
) -> None:
    s = spec(model_rates=Rates(rpm=1))
    await admitted(limiter, s)
    refusal = await refused(limiter, s)
    assert refusal.scope == "account:7:model:gpt-4o"
    other_model = LimitSpec(1, 7, "gpt-4o-mini", 100, model_rates=Rates(rpm=1))
    await admitted(limiter, other_model)


async def test_count_tokens_has_its_own_bucket(limiter: Limiter) -> None:
    small = Limiter(limiter.store, clock=limiter.clock, count_tokens_rpm=2)
    s = spec(key=Rates(rpm=1))
    await admitted(small, s)
    for _ in range(2):  # counted toward nothing else, and nothing else toward it
        assert isinstance(await small.admit_count_tokens(1), Lease)
    assert isinstance(await small.admit_count_tokens(1), Refusal)
    assert isinstance(await small.admit_count_tokens(2), Lease)
    await refused(small, s)


async def test_headers_name_the_tightest_requests_and_tokens_limits(
    limiter: Limiter, clock: FakeClock
) -> None:
    s = spec(tokens=300, key=Rates(rpm=100, tpm=10_000), account=Rates(rpm=3, tpm=1000))
    await admitted(limiter, s)
    clock.advance(15.5)
    lease = await admitted(limiter, s)
    assert lease.openai_headers() == [
        ("x-ratelimit-limit-requests", "3"),
        ("x-ratelimit-remaining-requests", "1"),
        ("x-ratelimit-reset-requests", "45s"),
        ("x-ratelimit-limit-tokens", "1000"),
        ("x-ratelimit-remaining-tokens", "400"),
        ("x-ratelimit-reset-tokens", "45s"),
    ]
    said = dict(lease.anthropic_headers())
    assert said["anthropic-ratelimit-requests-limit"] == "3"
    assert said["anthropic-ratelimit-tokens-remaining"] == "400"
    assert said["anthropic-ratelimit-requests-reset"] == "2027-01-15T08:01:00Z"


def test_durations_are_written_as_openai_writes_them() -> None:
    assert [go_duration(ms) for ms in (0, 20, 999, 1000, 6001, 60_000, 61_000)] == [
        "0ms", "20ms", "999ms", "1s", "7s", "1m0s", "1m1s",
    ]  # fmt: skip


def test_a_limit_must_be_positive() -> None:
    assert checked_rates(10, None, 2) == Rates(10, None, 2)
    with pytest.raises(InvalidInput, match="tpm"):
        checked_rates(None, 0, None)


async def test_memory_counters_forget_ended_windows_and_keep_live_ones(clock: FakeClock) -> None:
    import quotaledger.relay.limits as limits_module

    counters = MemoryCounters()
    limiter = Limiter(counters, clock=clock)
    old = limits_module._MAX_MEMORY_COUNTERS
    limits_module._MAX_MEMORY_COUNTERS = 5
    try:
        for key_id in range(5):
            await admitted(limiter, LimitSpec(key_id, 1, "m", 1, key=Rates(rpm=1)))
        held = await admitted(limiter, LimitSpec(99, 1, "m", 1, key=Rates(concurrency=1)))
        clock.advance(60)
        await admitted(limiter, LimitSpec(100, 1, "m", 1, key=Rates(rpm=1)))
        assert len(counters._windows) == 1  # the five ended windows are gone
        await refused(limiter, LimitSpec(99, 1, "m", 1, key=Rates(concurrency=1)))  # kept
        await held.release()
    finally:
        limits_module._MAX_MEMORY_COUNTERS = old
