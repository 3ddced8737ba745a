"""The relay's view of channel health at run time (SPEC §12): what the pipeline asks per
request (`usable`), tells after each attempt (`answered`, `failed`), and the probes.

Reads come from memory: the health of every channel, read from the database every
`refresh_seconds` (2 s: an instance sees another's transition within that) and updated at
once by this instance's own transitions. A transition is written when it happens (failures
are rare); an answer writes only when it heals a channel that was not OK or had failures.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from functools import partial
from typing import TypeVar

import anyio.to_thread

from quotaledger.relay import health as rules
from quotaledger.relay.channel_stats import StatsRecorder
from quotaledger.relay.health import Health, HealthBook, Verdict

log = logging.getLogger("quotaledger.relay.health")
Clock = Callable[[], float]
_C = TypeVar("_C")


@dataclass(frozen=True)
class ProbeResult:
    """What the provider's cheapest call got: a status, or no answer (`error`)."""

    status: int | None
    detail: str = ""
    error: str | None = None  # "timeout", "connect error"...
    latency_ms: float = 0.0

    @property
    def answered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


Probe = Callable[[int], Awaitable[ProbeResult]]  # channel id -> result


class ChannelHealth:
    """See the module docstring. `on_change(channel_id, health)` is told of every
    transition this instance makes (the metrics' health gauge)."""

    def __init__(
        self,
        book: HealthBook,
        *,
        refresh_seconds: float = 2.0,
        clock: Clock = time.time,
        on_change: Callable[[int, Health], None] | None = None,
    ) -> None:
        self.book, self.clock = book, clock
        self.stats = StatsRecorder()
        self._refresh_seconds = refresh_seconds
        self._known: dict[int, Health] = {}
        self._read_at = -float("inf")
        self._on_change = on_change or (lambda _id, _h: None)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def refresh(self, force: bool = False) -> None:
        if force or self.clock() - self._read_at >= self._refresh_seconds:
            self._read_at = self.clock()
            self._known = await anyio.to_thread.run_sync(self.book.all)

    def health(self, channel_id: int) -> Health:
        return self._known.get(channel_id, Health())

    def usable(self, channel_id: int) -> bool:
        return self.health(channel_id).usable(self._now_ms())

    def usable_of(self, candidates: Iterable[_C], id_of: Callable[[_C], int]) -> list[_C]:
        """The candidates requests may go to: disabled and cooling channels left out (all
        of them, even when none is left: a request never goes to a disabled channel)."""
        return [c for c in candidates if self.usable(id_of(c))]

    async def answered(self, channel_id: int, latency_ms: float) -> None:
        self.stats.answered(channel_id, latency_ms, self.clock())
        known = self.health(channel_id)
        if known.state != rules.OK or known.failures:
            await self._change(channel_id, partial(rules.after_success, now_ms=self._now_ms()))

    async def failed(
        self, channel_id: int, status: int | None, detail: str = "", error: str | None = None
    ) -> Verdict:
        """Record a failed attempt; its verdict (FINE: the request's fault, not counted)."""
        verdict = rules.classify(status, detail, error)
        if verdict.kind == rules.FINE:
            return verdict
        self.stats.failed(channel_id, self.clock())
        now_ms, policy = self._now_ms(), self.book.policy
        await self._change(channel_id, lambda h: rules.after_failure(h, verdict, now_ms, policy))
        return verdict

    async def _change(self, channel_id: int, transition: Callable[[Health], Health]) -> Health:
        before = self.health(channel_id)
        after = await anyio.to_thread.run_sync(self.book.change, channel_id, transition)
        self._known[channel_id] = after
        if after.state != before.state:
            self._on_change(channel_id, after)
        return after

    async def probe_due(self, channel_ids: Iterable[int], probe: Probe) -> dict[int, Health]:
        """Probe the given (operator-enabled) channels whose probe is due, each by one
        instance only (the claim moves `probe_at` a minute on, conditionally)."""
        await self.refresh(force=True)
        done = {}
        for channel_id in channel_ids:
            if self.health(channel_id).probe_due(self._now_ms()) and await self._claim(channel_id):
                done[channel_id] = await self._probe_one(channel_id, probe)
        return done

    async def _claim(self, channel_id: int) -> bool:
        now_ms = self._now_ms()

        def claim(h: Health) -> Health:
            return replace(h, probe_at_ms=now_ms + 60_000) if h.probe_due(now_ms) else h

        return (await self._change(channel_id, claim)).probe_at_ms == now_ms + 60_000

    async def _probe_one(self, channel_id: int, probe: Probe) -> Health:
        try:
            result = await probe(channel_id)
        except Exception as exc:  # a probe that breaks is a failed probe, not a dead watcher
            log.exception("channel %d: the probe failed", channel_id)
            result = ProbeResult(None, error=type(exc).__name__)
        verdict = None if result.answered else rules.classify(
            result.status, result.detail, result.error
        )  # fmt: skip
        now_ms, policy = self._now_ms(), self.book.policy
        return await self._change(
            channel_id, lambda h: rules.after_probe(h, verdict, now_ms, policy)
        )

    async def flush_stats(self) -> None:
        await anyio.to_thread.run_sync(self.stats.flush, self.book.database, self.clock())
