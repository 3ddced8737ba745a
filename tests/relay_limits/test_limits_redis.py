"""Limits shared through Redis (SPEC §12): exact across processes, one round trip per
request, slots of a killed holder lapse after the TTL, and the fallback when Redis is away."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from limits_support import command_calls

from quotaledger.relay.limits import (
    FallbackCounters,
    Lease,
    Limiter,
    LimitSpec,
    Rates,
    Refusal,
)
from quotaledger.server.limit_counters import RedisCounters
from support import free_port

pytestmark = pytest.mark.redis

_BURST = """
import asyncio, sys
from quotaledger.relay.limits import Lease, LimitSpec, Limiter, Rates
from quotaledger.server.limit_counters import RedisCounters

async def main():
    counters = RedisCounters(sys.argv[1])
    limiter = Limiter(counters)
    spec = LimitSpec(1, 1, "m", 10, key=Rates(rpm=10))
    sys.stdin.readline()  # both processes start the burst together
    got = await asyncio.gather(*(limiter.admit(spec) for _ in range(20)))
    print(sum(isinstance(g, Lease) for g in got), flush=True)
    await counters.aclose()

asyncio.run(main())
"""

_HOLDER = """
import asyncio, sys, time
from quotaledger.relay.limits import Lease, LimitSpec, Limiter, Rates
from quotaledger.server.limit_counters import RedisCounters

async def main():
    limiter = Limiter(RedisCounters(sys.argv[1]), lease_ttl=300)
    spec = LimitSpec(1, 1, "m", 10, key=Rates(concurrency=2))
    leases = [await limiter.admit(spec) for _ in range(2)]
    assert all(isinstance(lease, Lease) for lease in leases)
    print("held", flush=True)
    time.sleep(600)

asyncio.run(main())
"""


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, env=env,
    )  # fmt: skip


def test_forty_concurrent_admissions_from_two_processes_against_rpm_10_admit_ten(
    private_redis: str,
) -> None:
    processes = [_python(_BURST, private_redis) for _ in range(2)]
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    admitted = [int(process.communicate(timeout=60)[0]) for process in processes]
    assert sum(admitted) == 10, admitted


async def test_the_slots_of_a_killed_holder_lapse_after_the_lease_ttl(private_redis: str) -> None:
    holder = _python(_HOLDER, private_redis)
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    os.kill(holder.pid, signal.SIGKILL)
    holder.communicate()  # reaped, its pipes closed
    counters = RedisCounters(private_redis)
    spec = LimitSpec(1, 1, "m", 10, key=Rates(concurrency=2))
    try:
        now = time.time()
        assert isinstance(await Limiter(counters, clock=lambda: now).admit(spec), Refusal)
        later = now + 301  # the holder's leases expire 300 s after it took them
        assert isinstance(await Limiter(counters, clock=lambda: later).admit(spec), Lease)
    finally:
        await counters.aclose()


async def test_one_request_with_nine_limits_costs_one_round_trip_each_way(
    private_redis: str,
) -> None:
    counters = RedisCounters(private_redis)
    every = Rates(rpm=100, tpm=100_000, concurrency=10)
    spec = LimitSpec(1, 1, "m", 500, key=every, account=every, model_rates=every)
    limiter = Limiter(counters)
    try:
        # The first call of a server's life loads the scripts (NOSCRIPT, SCRIPT LOAD).
        for warm in (await limiter.admit(LimitSpec(2, 2, "m", 1, key=every)),):
            assert isinstance(warm, Lease)
            await warm.settle(0)
            await warm.release()
        before = command_calls(private_redis)
        lease = await limiter.admit(spec)
        assert isinstance(lease, Lease)
        after_admit = command_calls(private_redis)
        await lease.settle(120)
        await lease.release()
        after_all = command_calls(private_redis)
    finally:
        await counters.aclose()
    assert _round_trips(before, after_admit) == 1
    assert _round_trips(after_admit, after_all) == 2  # one to settle, one to release


def _round_trips(before: dict[str, int], after: dict[str, int]) -> int:
    # The client's calls only: EVALSHA (or EVAL the first time, after a NOSCRIPT), not the
    # INFO that measures, nor what a script runs inside (counted under their own names).
    return sum(after.get(c, 0) - before.get(c, 0) for c in ("evalsha", "eval", "script|load"))


async def test_an_unreachable_redis_falls_back_to_local_counters_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fallbacks: list[None] = []
    counters = RedisCounters(f"redis://127.0.0.1:{free_port()}/0")
    store = FallbackCounters(counters, "local", on_fallback=lambda: fallbacks.append(None))
    limiter = Limiter(store)
    spec = LimitSpec(1, 1, "m", 10, key=Rates(rpm=2, concurrency=5))
    with caplog.at_level(logging.WARNING, "quotaledger.relay.limits"):
        got = [await limiter.admit(spec) for _ in range(3)]
    assert [type(g) for g in got] == [Lease, Lease, Refusal]  # still limited, per instance
    assert len(fallbacks) == 3
    assert len([r for r in caplog.records if "unavailable" in r.message]) == 1
    assert isinstance(got[0], Lease)
    await got[0].release()  # released where it was taken: locally
    await counters.aclose()


async def test_an_unreachable_redis_refuses_with_503_when_told_to() -> None:
    counters = RedisCounters(f"redis://127.0.0.1:{free_port()}/0")
    limiter = Limiter(FallbackCounters(counters, "refuse"))
    refusal = await limiter.admit(LimitSpec(1, 1, "m", 10, key=Rates(rpm=2)))
    assert isinstance(refusal, Refusal)
    assert (refusal.status, refusal.kind, refusal.retry_after) == (503, "unavailable", 5)
    await counters.aclose()
