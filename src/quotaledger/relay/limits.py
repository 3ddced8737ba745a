"""Rate limits (SPEC §12): requests per minute, tokens per minute and concurrent requests on
keys, accounts and groups; the tightest applies.

A request has up to three *scopes*: its key (`key:<id>`), its account (`account:<id>`: the
account's own limits, each kind falling back to its group's default for members) and its
account's use of the model when the group limits that model (`account:<id>:model:<m>`).
Each scope has up to three counters:

- requests and tokens: a fixed 60-second window that starts at the first request after the
  last one ended (a burst never straddles two windows); TPM takes the prompt estimate plus
  the output cap at admission and is corrected to the actual usage at settlement, in the
  same window (a correction for an ended window is dropped: that window no longer counts);
- concurrency: the set of leases held, each with an expiry; a lease is released at the end
  of the request (stream end, cancel, failure) or lapses at its expiry when its instance
  died; a long request renews it (`Lease.renew`).

`admit` checks every counter, then takes them all, or takes none: one atomic step in the
backend (`MemoryCounters` here; `server.limit_counters.RedisCounters`, one Lua script, one
round trip, shared by every instance). The clock is the caller's (`time.time`, injectable):
instances' clocks agree to NTP's milliseconds, far below a window. `count_tokens` is limited
by a bucket of its own per key (`admit_count_tokens`) that counts toward nothing else.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from quotaledger.errors import InvalidInput

log = logging.getLogger("quotaledger.relay.limits")

REQUESTS, TOKENS, CONCURRENCY = "requests", "tokens", "concurrency"
KINDS = (REQUESTS, TOKENS, CONCURRENCY)
WINDOW_MS = 60_000
COUNT_TOKENS_RPM = 600
_MAX_MEMORY_COUNTERS = 100_000
Clock = Callable[[], float]


@dataclass(frozen=True)
class Rates:
    """One scope's limits; None: no limit of that kind."""

    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None

    def __bool__(self) -> bool:
        return self.rpm is not None or self.tpm is not None or self.concurrency is not None

    def over(self, defaults: Rates) -> Rates:
        """These rates, each kind not set taken from `defaults`."""
        return Rates(
            self.rpm if self.rpm is not None else defaults.rpm,
            self.tpm if self.tpm is not None else defaults.tpm,
            self.concurrency if self.concurrency is not None else defaults.concurrency,
        )


NO_RATES = Rates()


def checked_rates(rpm: int | None, tpm: int | None, concurrency: int | None) -> Rates:
    """`Rates` from user input: each limit a whole number from 1 (0 or less is refused:
    switch a limit off by leaving it unset)."""
    for name, value in (("rpm", rpm), ("tpm", tpm), ("concurrency", concurrency)):
        if value is not None and not 1 <= value <= 2**53:
            raise InvalidInput(name, "must be a whole number from 1 (unset: no limit)")
    return Rates(rpm, tpm, concurrency)


@dataclass(frozen=True)
class Counter:
    kind: str  # REQUESTS | TOKENS | CONCURRENCY
    scope: str  # key:12 | account:3 | account:3:model:gpt-4o | count_tokens:key:12
    amount: int  # the limit
    cost: int  # what this request takes: 1 request, its estimated tokens, 1 slot

    @property
    def name(self) -> str:
        return f"{self.scope}:{self.kind}"


@dataclass(frozen=True)
class LimitSpec:
    """One request as the limits see it. `group_rates` are the group's defaults for its
    members, `model_rates` the group's limits on the model (`GroupLimits.rates`)."""

    key_id: int
    account_id: int
    model: str
    estimated_tokens: int  # prompt estimate + output cap
    key: Rates = NO_RATES
    account: Rates = NO_RATES
    group_rates: Rates = NO_RATES
    model_rates: Rates = NO_RATES

    def counters(self) -> tuple[Counter, ...]:
        scopes = (
            (f"key:{self.key_id}", self.key),
            (f"account:{self.account_id}", self.account.over(self.group_rates)),
            (f"account:{self.account_id}:model:{self.model}", self.model_rates),
        )
        return tuple(c for scope, rates in scopes for c in _counters(scope, rates, self))


def _counters(scope: str, rates: Rates, spec: LimitSpec) -> list[Counter]:
    found = []
    if rates.rpm is not None:
        found.append(Counter(REQUESTS, scope, rates.rpm, 1))
    if rates.tpm is not None:
        # A request estimated above the whole TPM takes a whole window rather than being
        # refused for ever (its estimate is mostly an output cap it will not use).
        cost = min(max(0, spec.estimated_tokens), rates.tpm)
        found.append(Counter(TOKENS, scope, rates.tpm, cost))
    if rates.concurrency is not None:
        found.append(Counter(CONCURRENCY, scope, rates.concurrency, 1))
    return found


# ------------------------------------------------------------------ the backends


@dataclass(frozen=True)
class Taken:
    """What a backend answers: `refused` is the index of the first counter over its limit
    (None: all taken). `used[i]` is counter i's count after this request (before it, for
    the refused one), `reset_ms[i]` when its window ends (concurrency: 0), `windows[i]`
    the start of the window a requests or tokens counter was taken in."""

    refused: int | None
    used: tuple[int, ...]
    reset_ms: tuple[int, ...]
    windows: tuple[int, ...]


class Counters(Protocol):
    """Where counters live: this process (`MemoryCounters`) or Redis."""

    async def take(
        self, counters: Sequence[Counter], lease: str, now_ms: int, ttl_ms: int
    ) -> Taken: ...

    async def correct(self, corrections: Sequence[tuple[str, int, int]]) -> None:
        """Add `delta` to each (counter name, window start, delta) still in that window."""

    async def release(self, names: Sequence[str], lease: str) -> None: ...

    async def renew(self, names: Sequence[str], lease: str, until_ms: int) -> None: ...


class Unavailable(Exception):
    """The shared counters cannot be reached (Redis down); the message names no secret."""


class MemoryCounters:
    """Counters of this process, with the same semantics as the Redis script."""

    def __init__(self) -> None:
        self._windows: dict[str, list[int]] = {}  # name -> [start ms, count]
        self._leases: dict[str, dict[str, int]] = {}  # name -> {lease: expiry ms}

    async def take(
        self, counters: Sequence[Counter], lease: str, now_ms: int, ttl_ms: int
    ) -> Taken:
        used: list[int] = []
        reset: list[int] = []
        windows: list[int] = []
        for index, c in enumerate(counters):
            if c.kind == CONCURRENCY:
                held = self._held(c.name, now_ms)
                count, start = len(held), 0
            else:
                start, count = self._window(c.name, now_ms)
            if count + c.cost > c.amount:
                return Taken(index, (*used, count), (*reset, _reset(c, start)), ())
            used.append(count + c.cost)
            reset.append(_reset(c, start))
            windows.append(start)
        if len(self._windows) + len(self._leases) > _MAX_MEMORY_COUNTERS:
            self._forget(now_ms)
        for c, start in zip(counters, windows, strict=True):
            if c.kind == CONCURRENCY:
                self._leases.setdefault(c.name, {})[lease] = now_ms + ttl_ms
            else:
                window = self._windows.setdefault(c.name, [start, 0])
                window[0], window[1] = start, (window[1] if window[0] == start else 0) + c.cost
        return Taken(None, tuple(used), tuple(reset), tuple(windows))

    def _forget(self, now_ms: int) -> None:
        # Ended windows and empty lease sets count for nothing: dropped, so that memory
        # follows the keys in use, not every key ever seen.
        self._windows = {n: w for n, w in self._windows.items() if now_ms < w[0] + WINDOW_MS}
        for name in [n for n in self._leases if not self._held(n, now_ms)]:
            del self._leases[name]

    def _held(self, name: str, now_ms: int) -> dict[str, int]:
        held = self._leases.get(name, {})
        for lease in [lease for lease, expiry in held.items() if expiry <= now_ms]:
            del held[lease]
        return held

    def _window(self, name: str, now_ms: int) -> tuple[int, int]:
        start, count = self._windows.get(name, (0, 0))
        if not start or now_ms >= start + WINDOW_MS:
            return now_ms, 0
        return start, count

    async def correct(self, corrections: Sequence[tuple[str, int, int]]) -> None:
        for name, start, delta in corrections:
            window = self._windows.get(name)
            if window is not None and window[0] == start:
                window[1] = max(0, window[1] + delta)

    async def release(self, names: Sequence[str], lease: str) -> None:
        for name in names:
            self._leases.get(name, {}).pop(lease, None)

    async def renew(self, names: Sequence[str], lease: str, until_ms: int) -> None:
        for name in names:
            held = self._leases.get(name, {})
            if lease in held:
                held[lease] = until_ms


def _reset(counter: Counter, start: int) -> int:
    return 0 if counter.kind == CONCURRENCY else start + WINDOW_MS


class FallbackCounters:
    """Shared counters that fall back when they cannot be reached (SPEC §12's
    `QUOTALEDGER_LIMITS_FALLBACK`): `local` counts in this process (logged once per outage,
    `on_fallback` called each time), `refuse` raises `Unavailable` (the request is refused).
    A dead Redis is asked again at most every `retry_seconds`."""

    def __init__(
        self,
        shared: Counters,
        mode: str = "local",
        *,
        on_fallback: Callable[[], None] | None = None,
        retry_seconds: float = 5.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if mode not in ("local", "refuse"):
            raise ValueError("the limits fallback is local or refuse")
        self.shared, self.mode, self.local = shared, mode, MemoryCounters()
        self._on_fallback = on_fallback or (lambda: None)
        self._retry, self._clock = retry_seconds, clock
        self._down_until: float | None = None

    def _using_shared(self) -> bool:
        return self._down_until is None or self._clock() >= self._down_until

    def _lost(self, exc: Unavailable) -> None:
        if self._down_until is None:
            log.error("rate limits: shared counters unavailable (%s); fallback %s", exc, self.mode)
        self._down_until = self._clock() + self._retry
        self._on_fallback()
        if self.mode == "refuse":
            raise exc

    def _back(self) -> None:
        if self._down_until is not None:
            log.warning("rate limits: shared counters are back")
            self._down_until = None

    async def take(
        self, counters: Sequence[Counter], lease: str, now_ms: int, ttl_ms: int
    ) -> Taken:
        if self._using_shared():
            try:
                taken = await self.shared.take(counters, lease, now_ms, ttl_ms)
            except Unavailable as exc:
                self._lost(exc)
            else:
                self._back()
                return taken
        elif self.mode == "refuse":
            raise Unavailable("shared counters unavailable")
        else:
            self._on_fallback()
        return await self.local.take(counters, lease, now_ms, ttl_ms)

    # A lease settles, releases and renews where it was taken (`Lease.counters`).
    async def correct(self, corrections: Sequence[tuple[str, int, int]]) -> None:
        await self.shared.correct(corrections)

    async def release(self, names: Sequence[str], lease: str) -> None:
        await self.shared.release(names, lease)

    async def renew(self, names: Sequence[str], lease: str, until_ms: int) -> None:
        await self.shared.renew(names, lease, until_ms)


# ------------------------------------------------------------------ admissions


@dataclass(frozen=True)
class Refusal:
    """Over a limit: which one, and in how many seconds to retry. `status` is 429, or 503
    when the shared counters are unreachable and the fallback is `refuse`."""

    kind: str  # requests | tokens | concurrency | unavailable
    scope: str
    limit: int
    retry_after: int  # whole seconds, at least 1
    status: int = 429

    @property
    def message(self) -> str:
        if self.status == 503:
            return "rate limits are unavailable: retry shortly"
        what = {REQUESTS: "requests per minute", TOKENS: "tokens per minute",
                CONCURRENCY: "concurrent requests"}[self.kind]  # fmt: skip
        owner = self.scope.split(":", 1)[0].replace("key", "API key")
        wait = self.retry_after
        return f"rate limit reached: {self.limit} {what} for this {owner}; retry in {wait} s"

    def headers(self) -> list[tuple[str, str]]:
        return [("retry-after", str(self.retry_after))]


@dataclass
class Lease:
    """An admitted request's hold on its limits. `settle` corrects TPM to the actual usage;
    `release` frees the concurrency slots (idempotent: call it in a `finally`)."""

    counters: Sequence[Counter]
    taken: Taken
    lease_id: str
    store: Counters
    ttl_ms: int
    clock: Clock
    _settled: bool = field(default=False, repr=False)
    _released: bool = field(default=False, repr=False)

    async def settle(self, actual_tokens: int) -> None:
        """Count `actual_tokens` instead of the estimate against each TPM (once)."""
        if self._settled:
            return
        self._settled = True
        corrections = [
            (c.name, self.taken.windows[i], actual_tokens - c.cost)
            for i, c in enumerate(self.counters)
            if c.kind == TOKENS and actual_tokens != c.cost
        ]
        if corrections:
            await _quietly(self.store.correct(corrections))

    async def release(self) -> None:
        if self._released:
            return
        self._released = True
        if names := self._slots():
            await _quietly(self.store.release(names, self.lease_id))

    async def renew(self) -> None:
        """Keep the slots of a request that outlives the lease TTL (call it from the
        request's heartbeat, well within the TTL)."""
        if (names := self._slots()) and not self._released:
            until = int(self.clock() * 1000) + self.ttl_ms
            await _quietly(self.store.renew(names, self.lease_id, until))

    def _slots(self) -> list[str]:
        return [c.name for c in self.counters if c.kind == CONCURRENCY]

    @property
    def renew_every(self) -> float | None:
        """Seconds between two `renew` calls that keep the slots (None: it holds none)."""
        return self.ttl_ms / 3000 if self._slots() else None

    def openai_headers(self) -> list[tuple[str, str]]:
        """`x-ratelimit-*` of the tightest requests and tokens limits (none without one)."""
        now_ms = int(self.clock() * 1000)
        said = []
        for kind in (REQUESTS, TOKENS):
            if (tight := self._tightest(kind)) is not None:
                limit, remaining, reset_ms = tight
                said += [
                    (f"x-ratelimit-limit-{kind}", str(limit)),
                    (f"x-ratelimit-remaining-{kind}", str(remaining)),
                    (f"x-ratelimit-reset-{kind}", go_duration(reset_ms - now_ms)),
                ]
        return said

    def anthropic_headers(self) -> list[tuple[str, str]]:
        """`anthropic-ratelimit-*` of the same limits (reset as an RFC 3339 time)."""
        said = []
        for kind in (REQUESTS, TOKENS):
            if (tight := self._tightest(kind)) is not None:
                limit, remaining, reset_ms = tight
                reset = datetime.fromtimestamp(reset_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                said += [
                    (f"anthropic-ratelimit-{kind}-limit", str(limit)),
                    (f"anthropic-ratelimit-{kind}-remaining", str(remaining)),
                    (f"anthropic-ratelimit-{kind}-reset", reset),
                ]
        return said

    def _tightest(self, kind: str) -> tuple[int, int, int] | None:
        found = [
            (c.amount - self.taken.used[i], c.amount, self.taken.reset_ms[i])
            for i, c in enumerate(self.counters)
            if c.kind == kind
        ]
        if not found:
            return None
        remaining, limit, reset_ms = min(found)
        return limit, max(0, remaining), reset_ms


async def _quietly(step: object) -> None:
    # Settling and releasing never fail a delivered answer: a lost correction or release
    # costs at most one window or one lease TTL of accuracy.
    try:
        await step  # type: ignore[misc]
    except Unavailable as exc:
        log.warning("rate limits: a correction was lost (%s)", exc)


def go_duration(ms: int) -> str:
    """A duration as OpenAI's headers write it: `20ms`, `6s`, `1m0s`."""
    ms = max(0, ms)
    if ms < 1000:
        return f"{ms}ms"
    minutes, seconds = divmod(math.ceil(ms / 1000), 60)
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"


class Limiter:
    """Admits requests against their limits; see the module docstring."""

    def __init__(
        self,
        store: Counters,
        *,
        lease_ttl: float = 300.0,
        count_tokens_rpm: int = COUNT_TOKENS_RPM,
        clock: Clock = time.time,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.store, self.clock = store, clock
        self.ttl_ms = int(lease_ttl * 1000)
        self.count_tokens_rpm = count_tokens_rpm
        self._on_refused = on_refused or (lambda _kind: None)

    async def admit(self, spec: LimitSpec) -> Lease | Refusal:
        """A `Lease` on every limit of `spec`, or the `Refusal` of the first one over."""
        return await self._admit(spec.counters())

    async def admit_count_tokens(self, key_id: int) -> Lease | Refusal:
        """`count_tokens`' own per-key bucket (it counts toward no other limit)."""
        counter = Counter(REQUESTS, f"count_tokens:key:{key_id}", self.count_tokens_rpm, 1)
        return await self._admit((counter,))

    async def _admit(self, counters: Sequence[Counter]) -> Lease | Refusal:
        if not counters:  # nothing limited: no round trip, and no slot a lease id names
            return Lease(counters, Taken(None, (), (), ()), "", self.store, 0, self.clock)
        lease_id = secrets.token_hex(8)
        now_ms = int(self.clock() * 1000)
        try:
            taken = await self.store.take(counters, lease_id, now_ms, self.ttl_ms)
        except Unavailable:
            self._on_refused("unavailable")
            return Refusal("unavailable", "", 0, 5, status=503)
        if taken.refused is None:
            return Lease(counters, taken, lease_id, self._store_of(), self.ttl_ms, self.clock)
        over = counters[taken.refused]
        self._on_refused(over.kind)
        reset_ms = taken.reset_ms[-1]
        wait = math.ceil((reset_ms - now_ms) / 1000) if reset_ms else 1
        return Refusal(over.kind, over.scope, over.amount, max(1, wait))

    def _store_of(self) -> Counters:
        # A lease taken locally while Redis is away is settled and released locally.
        store = self.store
        if isinstance(store, FallbackCounters) and not store._using_shared():
            return store.local
        return store
