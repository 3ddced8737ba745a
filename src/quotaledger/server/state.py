"""What the running app holds: settings, the database, the rate limiter, and small caches."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from quotaledger import accounts, ledger, pricing
from quotaledger.accounts import Account
from quotaledger.errors import DatabaseBusy
from quotaledger.server.batching import ChargeBatcher
from quotaledger.server.metrics import Metrics
from quotaledger.server.ratelimit import RateLimiter
from quotaledger.server.snapshot import PassSnapshot
from quotaledger.settings import Settings
from quotaledger.store.database import Database, is_busy

PRICE_CACHE_SECONDS = 5.0

FixedPrices = tuple[tuple[str, str], ...]


@dataclass
class AppState:
    settings: Settings
    database: Database
    limiter: RateLimiter
    metrics: Metrics = field(default_factory=Metrics)
    batcher: ChargeBatcher = field(init=False)
    _fixed_prices: FixedPrices = ()
    _fixed_prices_until: float = 0.0
    _pass_snapshot: PassSnapshot | None = None

    def __post_init__(self) -> None:
        self.batcher = ChargeBatcher(self.database)

    async def fixed_prices(self) -> FixedPrices:
        """`ModelFixedPrice`, read at most every few seconds: every balance query shows it,
        and a price change made on any instance shows up within that delay. A tuple, so
        that a balance answer can be remembered by (account, prices)."""
        if time.monotonic() >= self._fixed_prices_until:
            listed = await run_in_threadpool(pricing.list_prices, self.database)
            self._fixed_prices = tuple(pricing.fixed_prices(listed).items())
            self._fixed_prices_until = time.monotonic() + PRICE_CACHE_SECONDS
        return self._fixed_prices

    async def account_for_digest(self, digest: str) -> Account:
        """The account of the token with this digest (`AuthenticationFailed` otherwise),
        read inline on SQLite (in the read transaction of this pass of the loop:
        `PassSnapshot`) and in a worker thread on PostgreSQL."""
        reader = self.database.inline_reader()
        if reader is not None:
            try:
                self._snapshot(reader).enter()
                return accounts.account_for_token_digest(self.database, digest, inline=True)
            except sqlite3.OperationalError:
                pass  # busy: take the worker-thread path
        return await run_in_threadpool(accounts.account_for_token_digest, self.database, digest)

    def _snapshot(self, reader: sqlite3.Connection) -> PassSnapshot:
        # A new reader (the database was disposed of and reopened) gets a new snapshot.
        if self._pass_snapshot is None or self._pass_snapshot.reader is not reader:
            self._pass_snapshot = PassSnapshot(reader)
        return self._pass_snapshot

    async def charge(self, request: ledger.UsageRequest) -> ledger.Charge:
        try:
            return await self.batcher.charge(request)
        except Exception as exc:
            if is_busy(exc):  # nothing was written: the client may simply retry
                raise DatabaseBusy("the database is busy: retry in a moment") from None
            raise
