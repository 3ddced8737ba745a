"""Rate limits with the `limits` library: in memory by default, in Redis when
`QUOTALEDGER_REDIS_URL` is set so that several instances share one budget. The limiter
decides (`Decision`); the server turns a refusal into its 429 (`errors.within_limit`).

If Redis stops answering, each instance falls back to its own in-memory counters (and
logs it once) rather than failing open or refusing everyone: the limits stay, scoped to
one instance, until Redis is back. The ledger never depends on Redis.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from typing import Any, NamedTuple

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.storage import storage_from_string

log = logging.getLogger("quotaledger.ratelimit")

_MAX_BLOCKED = 100_000


class Decision(NamedTuple):
    # A tuple, not a dataclass: one is made per limited request, and refusals repeat.
    allowed: bool
    limit: int
    remaining: int
    reset_after: int  # seconds until the window resets

    def headers(self) -> dict[str, str]:
        return dict(_headers(self))


@functools.lru_cache(maxsize=512)
def _headers(decision: Decision) -> tuple[tuple[str, str], ...]:
    # Decisions repeat (a client over its limit gets the same one all second long).
    allowed, limit, remaining, reset_after = decision
    said = [
        ("RateLimit-Limit", str(limit)),
        ("RateLimit-Remaining", str(remaining)),
        ("RateLimit-Reset", str(reset_after)),
    ]
    if not allowed:
        said.append(("Retry-After", str(max(reset_after, 1))))
    return tuple(said)


class RateLimiter:
    """Named limits (`balance`, `login`, `login_address`), each `None` when switched off."""

    def __init__(self, rates: dict[str, str], redis_url: str | None = None) -> None:
        self.items: dict[str, RateLimitItem | None] = {
            name: None if rate == "off" else parse(rate) for name, rate in rates.items()
        }
        self._local = FixedWindowRateLimiter(MemoryStorage())
        self._shared: FixedWindowRateLimiter | None = None
        if redis_url:
            # redis-py's asyncio client (already a dependency), with short timeouts so a
            # dead Redis costs a request little before we fall back to local counters.
            storage = storage_from_string(
                _async_uri(redis_url),
                implementation="redispy",
                socket_timeout=0.5,
                socket_connect_timeout=0.5,
            )
            assert isinstance(storage, Storage)
            self._shared = FixedWindowRateLimiter(storage)
        self._script: Any = None
        self._degraded = False
        self._next_probe = 0.0
        self._blocked: dict[tuple[str, str], float] = {}

    def is_enabled(self, name: str) -> bool:
        return self.items.get(name) is not None

    async def hit(self, name: str, key: str) -> Decision | None:
        """Count one request for `key` under limit `name`; None if the limit is off."""
        item = self.items.get(name)
        if item is None:
            return None
        now = time.time()
        blocked_until = self._blocked_until(name, key, now)
        if blocked_until is not None:
            return Decision(False, item.amount, 0, math.ceil(blocked_until - now))
        shared = await self._hit_shared(item, name, key)
        if shared is not None:
            return shared[1]
        allowed = await self._call("hit", item, name, key)
        stats = await self._call("get_window_stats", item, name, key)
        return self._decided(name, key, item, allowed, stats.remaining, stats.reset_time, now)

    async def hit_gated(
        self, name: str, key: str, gate: str
    ) -> tuple[Decision | None, Decision | None]:
        """`over(name, gate)`, then, unless the gate is over, `hit(name, key)`: (the gate's
        refusal or None, the hit's decision or None). With Redis, one round trip for both."""
        item = self.items.get(name)
        if item is None:
            return None, None
        if (gate_over := self.known_over(name, gate)) is not None:
            return gate_over, None
        shared = await self._hit_shared(item, name, key, gate)
        if shared is not None:
            return shared
        gate_over = await self.over(name, gate)
        return (gate_over, None) if gate_over is not None else (None, await self.hit(name, key))

    async def _hit_shared(
        self, item: RateLimitItem, name: str, key: str, gate: str | None = None
    ) -> tuple[Decision | None, Decision | None] | None:
        """The hit (behind the gate) by one script on Redis; None while Redis is away (or
        not configured), for the caller to count locally. The keys are the `limits`
        library's own, so its `test` and `count` read the same counters."""
        if self._shared is None or self._degraded:
            return None
        storage: Any = self._shared.storage
        bridge = storage.bridge
        keys = [bridge.prefixed_key(item.key_for(name, key))]
        if gate is not None:
            keys.append(bridge.prefixed_key(item.key_for(name, gate)))
        if self._script is None:
            self._script = bridge.get_connection().register_script(_HIT)
        try:
            count, pttl = await self._script(keys=keys, args=[item.get_expiry(), item.amount])
        except Exception as exc:  # Redis down or unreachable: count locally instead.
            self._degrade(exc)
            return None
        now = time.time()
        reset_time = now + max(0, int(pttl)) / 1000
        if count < 0:  # the gate is over: nothing counted
            self._block(name, gate or "", reset_time)
            return Decision(False, item.amount, 0, max(1, math.ceil(reset_time - now))), None
        allowed = count <= item.amount
        remaining = max(0, item.amount - count)
        return None, self._decided(name, key, item, allowed, remaining, reset_time, now)

    def _decided(
        self, name: str, key: str, item: RateLimitItem, allowed: bool, remaining: int,
        reset_time: float, now: float,
    ) -> Decision:  # fmt: skip
        if not allowed:
            self._block(name, key, reset_time)
        return Decision(allowed, item.amount, remaining, max(0, math.ceil(reset_time - now)))

    def _blocked_until(self, name: str, key: str, now: float) -> float | None:
        # Over a fixed-window limit stays over until the window resets, on every instance:
        # answered from memory, without asking the storage (junk stays cheap).
        until = self._blocked.get((name, key))
        return until if until is not None and until > now else None

    def _block(self, name: str, key: str, until: float) -> None:
        if len(self._blocked) >= _MAX_BLOCKED:  # forget the windows that have ended
            now = time.time()
            self._blocked = {k: t for k, t in self._blocked.items() if t > now}
        self._blocked[(name, key)] = until

    def known_over(self, name: str, key: str) -> Decision | None:
        """The refusal at once if `key` is already known to be over limit `name`, without
        asking the storage (nor counting): a client hammering past its limit costs least."""
        item = self.items.get(name)
        if item is None:
            return None
        now = time.time()
        blocked_until = self._blocked_until(name, key, now)
        if blocked_until is None:
            return None
        return Decision(False, item.amount, 0, math.ceil(blocked_until - now))

    async def _limiter(self) -> FixedWindowRateLimiter:
        if self._shared is None:
            return self._local
        if self._degraded and await self._shared_is_back():
            log.warning("rate limits: Redis is back, counters are shared again")
            self._degraded = False
        return self._local if self._degraded else self._shared

    async def _shared_is_back(self) -> bool:
        assert self._shared is not None
        if time.monotonic() < self._next_probe:
            return False
        self._next_probe = time.monotonic() + 5  # probe a dead Redis at most every 5 s
        try:
            return bool(await self._shared.storage.check())
        except Exception:
            return False

    def _degrade(self, exc: Exception) -> None:
        if not self._degraded:
            log.error(
                "rate limits: Redis unavailable (%s); counting per instance", type(exc).__name__
            )
        self._degraded = True

    async def over(self, name: str, key: str) -> Decision | None:
        """The refusal if `key` is over limit `name`, without counting a request; None while
        it is under (or the limit is off)."""
        item = self.items.get(name)
        if item is None:
            return None
        if known := self.known_over(name, key):
            return known
        if await self._call("test", item, name, key):
            return None
        stats = await self._call("get_window_stats", item, name, key)
        self._block(name, key, stats.reset_time)
        return Decision(False, item.amount, 0, max(1, math.ceil(stats.reset_time - time.time())))

    async def count(self, name: str, key: str) -> None:
        """Count one event against `key` (say, a failed token) without deciding anything."""
        item = self.items.get(name)
        if item is not None:
            await self._call("hit", item, name, key)

    async def aclose(self) -> None:
        """Close the connections to Redis (if any)."""
        if self._shared is not None:
            storage: Any = self._shared.storage
            await storage.bridge.get_connection().aclose()

    async def _call(self, method: str, *args: Any) -> Any:
        """`method` of the shared limiter, or of the local one while Redis is away."""
        limiter = await self._limiter()
        try:
            return await getattr(limiter, method)(*args)
        except Exception as exc:  # Redis down or unreachable: count locally instead.
            if limiter is self._local:
                raise
            self._degrade(exc)
            return await getattr(self._local, method)(*args)


# One round trip for a counted request: the gate (KEYS[2], optional: refused tokens of the
# address) checked, then the fixed window of KEYS[1] counted (as the `limits` library's own
# incr_expire script does) and its time left read. Before: INCR, GET and TTL (3 round
# trips), and the gate's GET on the balance query (4).
_HIT = """
if KEYS[2] and tonumber(redis.call('GET', KEYS[2]) or '0') >= tonumber(ARGV[2]) then
  return {-1, redis.call('PTTL', KEYS[2])}
end
local count = redis.call('INCRBY', KEYS[1], 1)
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {count, redis.call('PTTL', KEYS[1])}
"""


def _async_uri(url: str) -> str:
    return url if url.startswith("async+") else "async+" + url
