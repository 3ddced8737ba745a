"""What the relay offers, read from the database at most every few seconds per process:
prices, group ratios and enabled channels (with their upstream credentials decrypted once,
in memory only). A model is *offered* when it has a price and an enabled channel serves it
(SPEC §8). A change made through any instance shows up within `OFFERS_SECONDS`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from quotaledger import channels, pricing
from quotaledger.server.upstream import Target, Upstream
from quotaledger.settings import Settings
from quotaledger.store.database import Database

if TYPE_CHECKING:
    pass

OFFERS_SECONDS = 5.0


@dataclass(frozen=True)
class Candidate:
    """A channel as the relay calls it."""

    name: str
    format: str  # openai | anthropic
    target: Target
    model_map: Mapping[str, str]

    def upstream_model(self, model: str) -> str:
        return self.model_map.get(model, model)


@dataclass(frozen=True)
class Offers:
    prices: Mapping[str, pricing.Price]
    ratios: Mapping[str, Decimal]
    channels: tuple[channels.Channel, ...]  # the enabled ones
    callable_as: Mapping[str, Candidate]  # by channel name
    models: frozenset[str]

    def ratio(self, group: str) -> Decimal:
        return self.ratios.get(group, Decimal(1))

    def candidates(self, model: str, channel_format: str, runtime: RelayRuntime) -> list[Candidate]:
        """The channels to try for `model`, in order (priority, then weighted random;
        channels in cool-down last)."""
        if model not in self.models:
            return []
        serving = [c for c in self.channels if c.format == channel_format and c.serves(model)]
        ordered = channels.choose_channels(serving, runtime.cooldown)
        return [self.callable_as[c.name] for c in ordered]


def read_offers(database: Database, secret_key: str | None) -> Offers:
    prices = {p.model: p for p in pricing.list_prices(database)}
    ratios = pricing.list_group_ratios(database)
    enabled = tuple(c for c in channels.list_channels(database) if c.status == "enabled")
    callable_as = {c.name: _candidate(c, secret_key) for c in enabled}
    served = {model for c in enabled for model in c.models}
    return Offers(prices, ratios, enabled, callable_as, frozenset(served & set(prices)))


def _candidate(channel: channels.Channel, secret_key: str | None) -> Candidate:
    api_key = channels.upstream_key(channel, secret_key)
    if channel.format == "anthropic":
        auth = (("x-api-key", api_key),)
    else:
        auth = (("authorization", f"Bearer {api_key}"),)
    target = Target(channel.name, channel.base_url, auth)
    return Candidate(channel.name, channel.format, target, dict(channel.model_map))


class OfferCache:
    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self.secret_key = settings.secret_key.reveal() if settings.secret_key else None
        self._offers: Offers | None = None
        self._until = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> Offers:
        if self._offers is not None and time.monotonic() < self._until:
            return self._offers
        async with self._lock:  # one read for every request waiting on a stale cache
            if self._offers is None or time.monotonic() >= self._until:
                self._offers = await run_in_threadpool(read_offers, self.database, self.secret_key)
                self._until = time.monotonic() + OFFERS_SECONDS
        return self._offers


@dataclass
class RelayRuntime:
    """What the relay keeps per process: the offers, the upstream connection pools and the
    channels' cool-downs."""

    offers: OfferCache
    upstream: Upstream
    cooldown: channels.CoolDown = field(default_factory=channels.CoolDown)

    @classmethod
    def start(cls, database: Database, settings: Settings) -> RelayRuntime:
        upstream = Upstream(idle_timeout=float(settings.relay_stream_idle_timeout))
        return cls(OfferCache(database, settings), upstream)

    async def close(self) -> None:
        await self.upstream.close()
