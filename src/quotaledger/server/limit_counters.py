"""Rate-limit counters in Redis (SPEC §12), shared by every instance: all of a request's
counters are checked and taken by one Lua script, atomically, in one round trip.

Keys: `ql:lim:<scope>:<kind>`. A requests or tokens counter is a hash `{w: window start ms,
n: count}` that expires two windows after it starts; a concurrency counter is a sorted set
of lease ids scored by their expiry (ms). The semantics are `relay.limits.MemoryCounters`'.
A single Redis (or a Sentinel pair) is supported: the keys of one request would need a
common hash tag for Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from quotaledger.relay.limits import CONCURRENCY, WINDOW_MS, Counter, Taken, Unavailable

if TYPE_CHECKING:
    from quotaledger.settings import Secret

PREFIX = "ql:lim:"

# ARGV: now, ttl, lease, then per counter: kind ("c" concurrency, "w" window), amount, cost.
# Returns {refused index or 0, then per counter checked: used, reset, window start}.
_TAKE = """
local now, ttl, lease, window = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local out, starts, fresh = {0}, {}, {}
for i = 1, #KEYS do
  local kind, amount, cost = ARGV[2 + 3 * i], tonumber(ARGV[3 + 3 * i]), tonumber(ARGV[4 + 3 * i])
  local count, start = 0, 0
  if kind == 'c' then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    count = redis.call('ZCARD', KEYS[i])
  else
    local w = redis.call('HMGET', KEYS[i], 'w', 'n')
    start, count = tonumber(w[1]), tonumber(w[2]) or 0
    -- A caller whose clock is a little behind the window's start counts in that window
    -- (instances read their clocks before their scripts run, in any order).
    if (not start) or now >= start + window then
      start, count, fresh[i] = now, 0, true
    end
  end
  local reset = 0
  if kind ~= 'c' then reset = start + window end
  if count + cost > amount then
    out[1] = i
    table.insert(out, count); table.insert(out, reset); table.insert(out, start)
    return out
  end
  starts[i] = start
  table.insert(out, count + cost); table.insert(out, reset); table.insert(out, start)
end
for i = 1, #KEYS do
  local kind, cost = ARGV[2 + 3 * i], tonumber(ARGV[4 + 3 * i])
  if kind == 'c' then
    redis.call('ZADD', KEYS[i], now + ttl, lease)
    redis.call('PEXPIRE', KEYS[i], ttl + window)
  elseif fresh[i] then
    redis.call('HSET', KEYS[i], 'w', ARGV[1], 'n', cost)  -- a fresh window starts now
    redis.call('PEXPIRE', KEYS[i], 2 * window)
  else
    redis.call('HINCRBY', KEYS[i], 'n', cost)
  end
end
return out
"""

# ARGV: per key: window start, delta. Only a counter still in that window is corrected.
_CORRECT = """
for i = 1, #KEYS do
  local start, delta = ARGV[2 * i - 1], tonumber(ARGV[2 * i])
  if tonumber(redis.call('HGET', KEYS[i], 'w')) == tonumber(start) then
    if redis.call('HINCRBY', KEYS[i], 'n', delta) < 0 then redis.call('HSET', KEYS[i], 'n', 0) end
  end
end
return 0
"""

# ARGV: lease, then the new expiry (renew) or nothing (release).
_SLOTS = """
for i = 1, #KEYS do
  if ARGV[2] then redis.call('ZADD', KEYS[i], 'XX', ARGV[2], ARGV[1])
  else redis.call('ZREM', KEYS[i], ARGV[1]) end
end
return 0
"""


class RedisCounters:
    """`relay.limits.Counters` in Redis; every failure to reach it is `Unavailable`."""

    def __init__(self, url: Secret | str, *, timeout: float = 0.5) -> None:
        raw = url if isinstance(url, str) else url.reveal()
        # Short timeouts: a dead Redis must cost a request little before the fallback.
        self.client: aioredis.Redis[bytes] = aioredis.Redis.from_url(
            raw, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._take = self.client.register_script(_TAKE)
        self._correct = self.client.register_script(_CORRECT)
        self._slots = self.client.register_script(_SLOTS)

    def __repr__(self) -> str:
        return "RedisCounters(<url>)"

    async def take(
        self, counters: Sequence[Counter], lease: str, now_ms: int, ttl_ms: int
    ) -> Taken:
        args: list[Any] = [now_ms, ttl_ms, lease, WINDOW_MS]
        for c in counters:
            args += ["c" if c.kind == CONCURRENCY else "w", c.amount, c.cost]
        out = await self._run(self._take, [PREFIX + c.name for c in counters], args)
        refused = int(out[0]) - 1 if int(out[0]) else None
        values = [int(v) for v in out[1:]]
        windows = tuple(values[2::3]) if refused is None else ()
        return Taken(refused, tuple(values[0::3]), tuple(values[1::3]), windows)

    async def correct(self, corrections: Sequence[tuple[str, int, int]]) -> None:
        args = [value for _, start, delta in corrections for value in (start, delta)]
        await self._run(self._correct, [PREFIX + name for name, _, _ in corrections], args)

    async def release(self, names: Sequence[str], lease: str) -> None:
        await self._run(self._slots, [PREFIX + n for n in names], [lease])

    async def renew(self, names: Sequence[str], lease: str, until_ms: int) -> None:
        await self._run(self._slots, [PREFIX + n for n in names], [lease, until_ms])

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise Unavailable(type(exc).__name__) from None

    async def aclose(self) -> None:
        await self.client.aclose()  # type: ignore[attr-defined]  # redis-py 5+; stubs lag
