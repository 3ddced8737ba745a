"""The server's named limits (`server.ratelimit`) on Redis: one round trip per counted
request, the balance query's address gate included (they were 3 and 4)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from limits_support import CommandLog

from quotaledger.server.ratelimit import RateLimiter

pytestmark = pytest.mark.redis
_made: list[RateLimiter] = []


@pytest.fixture(autouse=True)
async def _closed() -> AsyncIterator[None]:
    yield
    while _made:
        await _made.pop().aclose()


def limiter_on(url: str | None, rate: str, name: str = "balance") -> RateLimiter:
    made = RateLimiter({name: rate}, redis_url=url)
    _made.append(made)
    return made


async def test_a_relayed_requests_limit_costs_one_round_trip(private_redis: str) -> None:
    limiter = limiter_on(private_redis, "3/minute", "relay")
    await limiter.hit("relay", "key:0")  # the first loads the script
    with CommandLog(private_redis) as log:
        decision = await limiter.hit("relay", "key:1")
    assert log.commands == ["EVALSHA"]
    assert decision is not None and (decision.allowed, decision.remaining) == (True, 2)
    assert 58 <= decision.reset_after <= 60
    for _ in range(2):
        await limiter.hit("relay", "key:1")
    refused = await limiter.hit("relay", "key:1")
    assert refused is not None and not refused.allowed and refused.remaining == 0


async def test_a_balance_query_costs_one_round_trip_with_its_address_gate(
    private_redis: str,
) -> None:
    limiter = limiter_on(private_redis, "3/minute")
    await limiter.hit_gated("balance", "warm", "bad-token:warm")
    with CommandLog(private_redis) as log:
        gate, decision = await limiter.hit_gated("balance", "token", "bad-token:10.0.0.1")
    assert log.commands == ["EVALSHA"]
    assert gate is None and decision is not None and decision.remaining == 2


async def test_an_address_over_its_gate_is_refused_without_counting_the_token(
    private_redis: str,
) -> None:
    limiter = limiter_on(private_redis, "3/minute")
    for _ in range(3):
        await limiter.count("balance", "bad-token:10.0.0.2")  # refused tokens of the address
    gate, decision = await limiter.hit_gated("balance", "token", "bad-token:10.0.0.2")
    assert gate is not None and not gate.allowed and decision is None
    other = limiter_on(private_redis, "3/minute")  # another instance
    _, counted = await other.hit_gated("balance", "token", "bad-token:10.0.0.3")
    assert counted is not None and counted.remaining == 2  # the refused query counted nothing


async def test_without_redis_the_gate_and_the_hit_are_counted_locally() -> None:
    limiter = RateLimiter({"balance": "2/minute"})
    await limiter.count("balance", "bad-token:a")
    await limiter.count("balance", "bad-token:a")
    gate, decision = await limiter.hit_gated("balance", "t", "bad-token:a")
    assert gate is not None and decision is None
    gate, decision = await limiter.hit_gated("balance", "t", "bad-token:b")
    assert gate is None and decision is not None and decision.allowed
