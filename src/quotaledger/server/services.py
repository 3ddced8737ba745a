"""`Services`: what every endpoint is given (through its `Call`): settings, the database, the
rate limiter, the login throttle, the metrics, the price list shown with every balance, the
relay's runtime (its offers, upstream connection pools and channel cool-downs) and the
alerts' watch."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from quotaledger.billing import pricing
from quotaledger.relay.offers import RelayRuntime
from quotaledger.server.alert_watch import AlertWatch
from quotaledger.server.channel_jobs import ChannelJobs
from quotaledger.server.login_throttle import LoginThrottle
from quotaledger.server.metrics import Metrics
from quotaledger.server.ratelimit import RateLimiter
from quotaledger.settings import Settings
from quotaledger.store.database import Database

PRICE_CACHE_SECONDS = 5.0

FixedPrices = tuple[tuple[str, str], ...]


@dataclass
class Services:
    settings: Settings
    database: Database
    limiter: RateLimiter
    metrics: Metrics = field(default_factory=Metrics)
    logins: LoginThrottle = field(init=False)  # wrong passwords, per account and address
    relay: RelayRuntime = field(init=False)
    alerts: AlertWatch = field(init=False)
    # SPEC §12: the relay's rate limits, channel health and upstream balances.
    channel_jobs: ChannelJobs = field(init=False)
    _fixed_prices: FixedPrices = ()
    _fixed_prices_until: float = 0.0

    def __post_init__(self) -> None:
        self.logins = LoginThrottle.of(self.settings)
        self.relay = RelayRuntime.start(self.database, self.settings)
        self.alerts = AlertWatch(self.database, self.settings)
        self.channel_jobs = ChannelJobs(self.database, self.settings, self.metrics)

    async def fixed_prices(self) -> FixedPrices:
        """`ModelFixedPrice`, read at most every few seconds: every balance query shows it,
        and a price change made on any instance shows up within that delay. A tuple, so
        that a balance answer can be remembered by (account, prices)."""
        if time.monotonic() >= self._fixed_prices_until:
            listed = await run_in_threadpool(pricing.list_prices, self.database)
            self._fixed_prices = tuple(pricing.fixed_prices(listed).items())
            self._fixed_prices_until = time.monotonic() + PRICE_CACHE_SECONDS
        return self._fixed_prices
