"""The rate limiter's cost per relayed request (SPEC §12, issue 23): µs of this process and
Redis round trips, in memory and on a Redis of its own (a redis-server started here, so
that its command counts are this run's alone), one run:

- today's single limit (`server.ratelimit.RateLimiter.hit`, per key RPM), as it was (the
  `limits` library's INCR script, then GET and TTL) and as it is now (one script);
- all three limits on the key, the account and the account's use of the model (9 counters):
  `relay.limits.Limiter.admit`, then `lease.settle` and `lease.release`.

    .venv/bin/python benchmarks/limiter_cost.py [--requests 3000]

Sequential requests: the µs are the latency of one request's limit work (Redis on loopback
included), not a throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable

import redis

from quotaledger.relay.limits import Lease, Limiter, LimitSpec, MemoryCounters, Rates
from quotaledger.server.limit_counters import RedisCounters
from quotaledger.server.ratelimit import RateLimiter

Step = Callable[[int], Awaitable[object]]
# The commands a client sends itself (those inside scripts are counted under their names too).
_TOP_LEVEL = ("evalsha", "eval", "get", "ttl", "pttl")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_redis(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", directory],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(200):
        try:
            redis.Redis.from_url(url).ping()
            return process, url
        except redis.ConnectionError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def _calls(url: str | None) -> dict[str, int]:
    if url is None:
        return {}
    stats = redis.Redis.from_url(url).info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def _trips(before: dict[str, int], after: dict[str, int], direct: tuple[str, ...]) -> int:
    return sum(after.get(c, 0) - before.get(c, 0) for c in direct)


async def _measure(
    step: Step, n: int, url: str | None, direct: tuple[str, ...]
) -> tuple[float, float]:
    await step(-1)  # warm: scripts loaded, connections open
    before = _calls(url)
    started = time.perf_counter()
    for i in range(n):
        await step(i)
    elapsed = time.perf_counter() - started
    trips = _trips(before, _calls(url), direct) / n if url else 0.0
    return elapsed / n * 1e6, trips


def _old_hit(limiter: RateLimiter) -> Step:
    # What `RateLimiter.hit` did before: the library's hit, then its window stats.
    item = limiter.items["relay"]

    async def step(i: int) -> object:
        await limiter._call("hit", item, "relay", f"key:{i % 50}")
        return await limiter._call("get_window_stats", item, "relay", f"key:{i % 50}")

    return step


def _new_hit(limiter: RateLimiter) -> Step:
    async def step(i: int) -> object:
        return await limiter.hit("relay", f"key:{i % 50}")

    return step


def _all_three(limiter: Limiter, admit_only: bool = False) -> Step:
    every = Rates(rpm=10**9, tpm=10**12, concurrency=10**6)

    async def step(i: int) -> object:
        spec = LimitSpec(i % 50, i % 10, "gpt-4o", 1200, key=every, account=every,
                         model_rates=every)  # fmt: skip
        lease = await limiter.admit(spec)
        assert isinstance(lease, Lease)
        if not admit_only:
            await lease.settle(800)
            await lease.release()
        return lease

    return step


async def main(n: int) -> None:
    if shutil.which("redis-server") is None:
        raise SystemExit("needs redis-server")
    with tempfile.TemporaryDirectory() as directory:
        process, url = _start_redis(directory)
        try:
            rows = await _rows(n, url)
        finally:
            process.kill()
    print(f"{'case':58} {'µs/request':>11} {'round trips':>12}")
    for name, us, trips in rows:
        print(f"{name:58} {us:11.1f} {trips:12.2f}")


async def _rows(n: int, url: str) -> list[tuple[str, float, float]]:
    memory_rl = RateLimiter({"relay": "1000000000/minute"})
    redis_rl = RateLimiter({"relay": "1000000000/minute"}, redis_url=url)
    redis_counters = RedisCounters(url)
    cases: list[tuple[str, Step, str | None, tuple[str, ...]]] = [
        ("today's single limit, in memory (library hit + stats)", _old_hit(memory_rl), None, ()),
        ("single limit, in memory, now", _new_hit(memory_rl), None, ()),
        ("today's single limit, Redis (before: incr script, GET, TTL)", _old_hit(redis_rl),
         url, _TOP_LEVEL),
        ("single limit, Redis, now (one script)", _new_hit(redis_rl), url, ("evalsha", "eval")),
        ("RPM+TPM+concurrency x key, account, model: in memory",
         _all_three(Limiter(MemoryCounters())), None, ()),
        ("RPM+TPM+concurrency x key, account, model: Redis (admit+settle+release)",
         _all_three(Limiter(redis_counters)), url, ("evalsha", "eval")),
        ("the same, Redis, admit alone (before the request goes upstream)",
         _all_three(Limiter(redis_counters, lease_ttl=1), admit_only=True), url,
         ("evalsha", "eval")),
    ]  # fmt: skip
    rows = []
    for name, step, counted, direct in cases:
        us, trips = await _measure(step, n, counted, direct)
        rows.append((name, us, trips))
    await redis_rl.aclose()
    await redis_counters.aclose()
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    asyncio.run(main(parser.parse_args().requests))
