"""The server's side of SPEC §12: the rate limiter, channel health and upstream balances
built from the settings, and their background work (every `TICK_SECONDS`: the health read
again and the stats flushed; probes of disabled and cooling channels; due balance polls).

What the relay pipeline calls (see README "Limits, health and balances"):
`limits.admit(spec)` / `lease.settle(tokens)` / `lease.release()`, `health.usable_of(...)`,
`health.answered(...)` / `health.failed(...)`, with `rates.spec_for(...)` to build a spec.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import httpx

from quotaledger.monitor import channel_balances as edges
from quotaledger.relay import channels
from quotaledger.relay.balance_poll import ChannelBalances
from quotaledger.relay.balances import Watch
from quotaledger.relay.health import Health, HealthBook, Policy
from quotaledger.relay.health_watch import ChannelHealth, ProbeResult
from quotaledger.relay.limits import Counters, FallbackCounters, Limiter, MemoryCounters
from quotaledger.relay.providers import provider
from quotaledger.relay.rates import GroupRates
from quotaledger.server.metrics import Metrics
from quotaledger.settings import Settings
from quotaledger.store.database import Database

log = logging.getLogger("quotaledger.relay.health")
TICK_SECONDS = 10.0
PROBE_TIMEOUT = 30.0


class ChannelJobs:
    def __init__(self, database: Database, settings: Settings, metrics: Metrics) -> None:
        self.database, self.settings, self.metrics = database, settings, metrics
        self.limits = Limiter(
            _counters(settings, metrics), lease_ttl=settings.limits_lease_ttl,
            count_tokens_rpm=settings.rate_limit_count_tokens,
            on_refused=lambda kind: metrics.limit_refusals.labels(kind).inc(),
        )  # fmt: skip
        self.group_rates = GroupRates(database)
        policy = Policy(
            failures=settings.channel_failures_to_cool,
            window_ms=settings.channel_failure_window * 1000,
            cooldown_ms=settings.channel_cooldown * 1000,
        )
        self.health = ChannelHealth(HealthBook(database, policy), on_change=self._health_changed)
        self.balances: ChannelBalances | None = None
        self._names: dict[int, str] = {}
        self._task: asyncio.Task[None] | None = None

    def _health_changed(self, channel_id: int, health: Health) -> None:
        self.metrics.channel_state(self._names.get(channel_id, str(channel_id)), health.state)

    def _balance_read(self, watch: Watch) -> None:
        if watch.amount is not None:
            gauge = self.metrics.channel_balance.labels(watch.channel, watch.currency or "")
            gauge.set(float(watch.amount))

    def _balances(self) -> ChannelBalances | None:
        if self.balances is None and self.settings.secret_key is not None:
            self.balances = ChannelBalances(
                self.database, channels.ChannelCipher(self.settings.secret_key),
                fetch=edges.fetcher(), level=edges.level,
                send=edges.sender(edges.alert_urls(self.settings.operator_alert_urls)),
                interval=self.settings.channel_balance_interval, on_balance=self._balance_read,
            )  # fmt: skip
        return self.balances

    async def tick(self) -> None:
        """One round of the background work."""
        listed = await asyncio.to_thread(channels.list_channels, self.database)
        self._names = {c.id: c.name for c in listed}
        await self.health.flush_stats()
        enabled = {c.id: c for c in listed if c.status == "enabled"}
        if self.settings.secret_key is not None:
            cipher = channels.ChannelCipher(self.settings.secret_key)

            async def probe(channel_id: int) -> ProbeResult:
                return await probe_channel(enabled[channel_id], cipher)

            await self.health.probe_due(enabled, probe)
        for channel_id in enabled:
            self._health_changed(channel_id, self.health.health(channel_id))
        if (poller := self._balances()) is not None:
            await poller.run_once()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # a bad round must not end the health and balance work
                log.exception("channel jobs: this round failed")
            await asyncio.sleep(TICK_SECONDS)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.health.flush_stats()


def _counters(settings: Settings, metrics: Metrics) -> Counters:
    if settings.redis_url is None:
        return MemoryCounters()
    from quotaledger.server.limit_counters import RedisCounters

    return FallbackCounters(
        RedisCounters(settings.redis_url), settings.limits_fallback,
        on_fallback=metrics.limits_fallbacks.inc,
    )  # fmt: skip


async def probe_channel(channel: Any, cipher: channels.ChannelCipher) -> ProbeResult:
    """The cheapest call of the channel's provider (at most one output token), on its first
    model; what `channel test` sends."""
    upstream = provider(channel.format)
    model = channel.upstream_model(channel.models[0])
    key = channel.api_key(cipher)
    url = upstream.url(channel.base_url, upstream.probe.operation, model)
    headers = dict([*upstream.headers({}), *upstream.auth(key)])
    started = time.perf_counter()
    try:
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT) as client:
            reply = await client.post(url, json=upstream.probe.body(model), headers=headers)
    except httpx.TimeoutException:
        return ProbeResult(None, error="timeout")
    except httpx.HTTPError as exc:
        return ProbeResult(None, error=f"connect error ({type(exc).__name__})")
    detail = reply.text[:300].replace(key, "…")
    return ProbeResult(reply.status_code, detail, None, (time.perf_counter() - started) * 1000)
