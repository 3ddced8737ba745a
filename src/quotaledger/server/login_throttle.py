"""Password guessing, slowed down (issue 26).

After `free` wrong passwords for one account from one client address, each further attempt
from there is refused at once (429 with Retry-After, the password left unchecked) until a
wait that doubles with every failure is over: 1 s, 2 s, 4 s ... up to
`QUOTALEDGER_LOGIN_MAX_DELAY`. One address's failures over every account count too (after
`QUOTALEDGER_LOGIN_ADDRESS_FREE_FAILURES`), so that trying many accounts is as slow. An
unknown username fails and counts as a wrong password does, and the refusal is the same
words either way: it tells nothing of which accounts exist. A right password clears its
account's count from that address; the address's own count stays (an account of one's own
must not wash it). A count is forgotten `memory_ms` after its last failure.

The counts live in Redis when `QUOTALEDGER_REDIS_URL` is set (one script per step, shared by
every instance: a guesser cannot spread over instances), else in this process; with Redis
away each instance counts on its own (logged once) until it is back, as the rate limits do.
IPv6 addresses count by their /64, which one client usually holds whole.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from redis.exceptions import RedisError

if TYPE_CHECKING:
    from quotaledger.settings import Secret, Settings

log = logging.getLogger("quotaledger.security")
T = TypeVar("T")

FORGET_MS = 15 * 60 * 1000
_MAX_LOCAL = 100_000  # counts kept in memory; the least recently failed go first
_RETRY_SECONDS = 5.0  # a dead Redis is asked again at most this often


@dataclass(frozen=True)
class Policy:
    free: int = 3  # failures per account and address before the waits start
    address_free: int = 20  # failures per address, over every account
    max_delay_ms: int = 300_000

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(
            settings.login_free_failures,
            settings.login_address_free_failures,
            settings.login_max_delay * 1000,
        )

    @property
    def memory_ms(self) -> int:
        return max(FORGET_MS, 2 * self.max_delay_ms)

    def wait_ms(self, failures: int, free: int) -> int:
        """The wait the `failures`-th failure sets: none before `free`, then 1 s doubling."""
        if failures < free:
            return 0
        return min(self.max_delay_ms, 1000 << min(failures - free, 40))


class Counts(Protocol):
    """Failure counts by key: each `[failures, locked until ms]`, forgotten after a while."""

    async def locked_until(self, keys: Sequence[str], now_ms: int) -> int: ...

    async def failed(self, keys: Sequence[tuple[str, int]], now_ms: int, policy: Policy) -> int:
        """Count one failure on each key (with its `free` count); the latest lock set."""
        ...

    async def clear(self, key: str) -> None: ...


class MemoryCounts:
    """`Counts` of this process (one event loop: no lock needed)."""

    def __init__(self, most: int = _MAX_LOCAL) -> None:
        self._counts: dict[str, tuple[int, int, int]] = {}  # failures, until, forgotten at
        self.most = most

    def _live(self, key: str, now_ms: int) -> tuple[int, int]:
        found = self._counts.get(key)
        if found is None or found[2] <= now_ms:
            return 0, 0
        return found[0], found[1]

    async def locked_until(self, keys: Sequence[str], now_ms: int) -> int:
        return max(self._live(key, now_ms)[1] for key in keys)

    async def failed(self, keys: Sequence[tuple[str, int]], now_ms: int, policy: Policy) -> int:
        latest = 0
        for key, free in keys:
            failures, until = self._live(key, now_ms)
            failures += 1
            wait = policy.wait_ms(failures, free)
            until = now_ms + wait if wait else until
            self._counts.pop(key, None)  # re-inserted last: the dict is in order of failure
            self._counts[key] = (failures, until, now_ms + policy.memory_ms)
            latest = max(latest, until)
        while len(self._counts) > self.most:
            del self._counts[next(iter(self._counts))]
        return latest

    async def clear(self, key: str) -> None:
        self._counts.pop(key, None)


PREFIX = "ql:login:"

# KEYS: the counts. Returns the latest lock among them (ms), 0 if none.
_LOCKED = """
local latest = 0
for i = 1, #KEYS do
  latest = math.max(latest, tonumber(redis.call('HGET', KEYS[i], 'until') or '0'))
end
return latest
"""

# KEYS: the counts; ARGV: now ms, memory ms, max delay ms, then each count's free failures.
# Returns the latest lock among them (ms). Policy.wait_ms, in Lua.
_FAILED = """
local now, memory, most = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local latest = 0
for i = 1, #KEYS do
  local failures = redis.call('HINCRBY', KEYS[i], 'n', 1)
  local free = tonumber(ARGV[3 + i])
  if failures >= free then
    local wait = math.min(most, 1000 * 2 ^ math.min(failures - free, 40))
    redis.call('HSET', KEYS[i], 'until', string.format('%.0f', now + wait))
  end
  redis.call('PEXPIRE', KEYS[i], memory)
  latest = math.max(latest, tonumber(redis.call('HGET', KEYS[i], 'until') or '0'))
end
return latest
"""


class RedisCounts:
    """`Counts` in Redis, shared by every instance; a failure to reach it raises
    `RedisError` or `OSError`."""

    def __init__(self, url: Secret | str, *, timeout: float = 0.5) -> None:
        import redis.asyncio as aioredis

        raw = url if isinstance(url, str) else url.reveal()
        # Short timeouts: a dead Redis must cost a login little before the fallback.
        self.client: aioredis.Redis[bytes] = aioredis.Redis.from_url(
            raw, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._locked = self.client.register_script(_LOCKED)
        self._failed = self.client.register_script(_FAILED)

    def __repr__(self) -> str:
        return "RedisCounts(<url>)"

    async def locked_until(self, keys: Sequence[str], now_ms: int) -> int:
        return int(await self._locked(keys=[PREFIX + k for k in keys]))

    async def failed(self, keys: Sequence[tuple[str, int]], now_ms: int, policy: Policy) -> int:
        args = [now_ms, policy.memory_ms, policy.max_delay_ms, *(free for _, free in keys)]
        return int(await self._failed(keys=[PREFIX + k for k, _ in keys], args=args))

    async def clear(self, key: str) -> None:
        await self.client.delete(PREFIX + key)

    async def aclose(self) -> None:
        await self.client.aclose()  # type: ignore[attr-defined]  # redis-py 5+; stubs lag


class LoginThrottle:
    """What the password routes ask before and tell after checking a password."""

    def __init__(
        self,
        policy: Policy,
        shared: RedisCounts | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy, self.shared, self.local = policy, shared, MemoryCounts()
        self._clock = clock
        self._down_until: float | None = None

    @classmethod
    def of(cls, settings: Settings) -> LoginThrottle:
        shared = RedisCounts(settings.redis_url) if settings.redis_url else None
        return cls(Policy.of(settings), shared)

    async def wait(self, account: str, address: str) -> int:
        """Seconds the next attempt for `account` from `address` must wait; 0: go ahead."""
        now_ms = self._now_ms()
        keys = _keys(account, address)
        until = await self._run(lambda c: c.locked_until(keys, now_ms))
        return math.ceil((until - now_ms) / 1000) if until > now_ms else 0

    async def failed(self, account: str, address: str) -> None:
        """A wrong password (or an unknown account) for `account` from `address`."""
        now_ms = self._now_ms()
        by_pair, by_address = _keys(account, address)
        keys = ((by_pair, self.policy.free), (by_address, self.policy.address_free))
        await self._run(lambda c: c.failed(keys, now_ms, self.policy))

    async def succeeded(self, account: str, address: str) -> None:
        """The right password: `account`'s count from `address` starts again."""
        by_pair, _ = _keys(account, address)
        await self._run(lambda c: c.clear(by_pair))

    async def aclose(self) -> None:
        if self.shared is not None:
            await self.shared.aclose()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def _run(self, step: Callable[[Counts], Awaitable[T]]) -> T:
        """`step` on the shared counts, or on this process's while Redis is away."""
        if self.shared is not None and self._shared_is_up():
            try:
                done = await step(self.shared)
            except (RedisError, OSError) as exc:
                self._lost(exc)
            else:
                self._back()
                return done
        return await step(self.local)

    def _shared_is_up(self) -> bool:
        return self._down_until is None or time.monotonic() >= self._down_until

    def _lost(self, exc: Exception) -> None:
        if self._down_until is None:
            log.error("login throttling: Redis unavailable (%s); counting per instance",
                      type(exc).__name__)  # fmt: skip
        self._down_until = time.monotonic() + _RETRY_SECONDS

    def _back(self) -> None:
        if self._down_until is not None:
            log.warning("login throttling: Redis is back, counts are shared again")
            self._down_until = None


def _keys(account: str, address: str) -> tuple[str, str]:
    """(the account from the address, the address): an address holds no `|`."""
    counted = _counted_address(address)
    return f"p:{counted}|{account.lower()}", f"a:{counted}"


def _counted_address(address: str) -> str:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an address (a test client's name): counted as it is
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)
