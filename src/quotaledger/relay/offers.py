"""What the relay offers, read from the database at most every few seconds per process:
prices, group ratios and enabled channels (with their upstream credentials decrypted once,
in memory only). A model is *offered* when it has a price and an enabled channel serves it
(SPEC §8). A change made through any instance shows up within `OFFERS_SECONDS`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from quotaledger.billing import pricing
from quotaledger.errors import NotConfigured
from quotaledger.relay import channels
from quotaledger.relay.channels import Channel  # the field `channels` hides the module
from quotaledger.relay.providers import PROVIDERS
from quotaledger.relay.providers.base import Provider
from quotaledger.relay.upstream import Target, Upstream
from quotaledger.relay.warm_prefixes import WarmPrefixes
from quotaledger.settings import Settings
from quotaledger.store.database import Database
from quotaledger.wire import counting

log = logging.getLogger("quotaledger.relay")

OFFERS_SECONDS = 5.0


@dataclass(frozen=True)
class Candidate:
    """A channel as the relay calls it: its provider, and its credential decrypted once."""

    id: int  # the channel's: its health is kept by id (`relay.health`)
    name: str
    provider: Provider
    target: Target
    model_map: Mapping[str, str]

    @property
    def format(self) -> str:
        return self.provider.name

    def upstream_model(self, model: str) -> str:
        return self.model_map.get(model, model)

    def url(self, operation: str, model: str, *, stream: bool = False) -> str:
        return self.provider.url(self.target.base_url, operation, model, stream=stream)


@dataclass(frozen=True)
class Offers:
    prices: Mapping[str, pricing.Price]
    ratios: Mapping[str, Decimal]
    channels: tuple[Channel, ...]  # the enabled ones
    callable_as: Mapping[str, Candidate]  # by channel name
    models: frozenset[str]
    # channel_tiers by (model, operation), filled as requests ask: the snapshot never changes
    _tiers: dict[tuple[str, str], list[list[Channel]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def ratio(self, group: str) -> Decimal:
        return self.ratios.get(group, Decimal(1))

    def candidates(self, model: str, operation: str, runtime: RelayRuntime) -> list[Candidate]:
        """The channels to try for `model`, in order: priority, then within a priority the
        channels that serve `operation` natively before those it is converted for (SPEC
        §11), weighted random among equals. Their health is the caller's to check
        (`relay.health_watch.ChannelHealth.usable_of`)."""
        if model not in self.models:
            return []
        tiers = self._tiers.get((model, operation))
        if tiers is None:  # once per model and operation of this snapshot, not per request
            tiers = channels.channel_tiers(
                model,
                self.channels,
                preferred=lambda c: PROVIDERS[c.format].serves_natively(operation),
            )
            self._tiers[model, operation] = tiers
        return [self.callable_as[c.name] for c in channels.in_order(tiers, runtime.rng)]


def read_offers(
    database: Database, cipher: channels.ChannelCipher | None, warned: set[str]
) -> Offers:
    """The offers as the database has them now. A channel that cannot be called (no secret
    key set, or its key encrypted with another one) is left out, and said once."""
    prices = {p.model: p for p in pricing.list_prices(database)}
    ratios = pricing.list_group_ratios(database)
    callable_as: dict[str, Candidate] = {}
    listed = channels.list_channels(database)
    for channel in listed:
        if channel.status != "enabled":
            continue
        try:
            if cipher is None:
                raise NotConfigured("QUOTALEDGER_SECRET_KEY is not set")
            callable_as[channel.name] = _candidate(channel, cipher)
        except NotConfigured as exc:
            if channel.name not in warned:
                warned.add(channel.name)
                log.warning("channel %s cannot be called: %s", channel.name, exc)
    usable = tuple(c for c in listed if c.name in callable_as)
    if usable:
        # Loaded here, in a worker thread (~0.1 s, once per process), rather than on the
        # event loop by the first relayed request's prompt count, holding up every request.
        counting.encoding()
    served = {model for c in usable for model in c.models}
    return Offers(prices, ratios, usable, callable_as, frozenset(served & set(prices)))


def _candidate(channel: Channel, cipher: channels.ChannelCipher) -> Candidate:
    provider = PROVIDERS[channel.format]
    target = Target(channel.name, channel.base_url, provider.auth(channel.api_key(cipher)))
    return Candidate(channel.id, channel.name, provider, target, dict(channel.model_map))


class OfferCache:
    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self.cipher = _cipher(settings)
        self.warned: set[str] = set()  # channels said to be unusable
        self._offers: Offers | None = None
        self._until = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> Offers:
        if self._offers is not None and time.monotonic() < self._until:
            return self._offers
        async with self._lock:  # one read for every request waiting on a stale cache
            if self._offers is None or time.monotonic() >= self._until:
                self._offers = await asyncio.to_thread(
                    read_offers, self.database, self.cipher, self.warned
                )
                self._until = time.monotonic() + OFFERS_SECONDS
        return self._offers


def _cipher(settings: Settings) -> channels.ChannelCipher | None:
    try:
        return channels.ChannelCipher(settings.secret_key)
    except NotConfigured:
        return None  # said per channel, if any is ever added


@dataclass
class RelayRuntime:
    """What the relay keeps per process: the offers and the upstream connection pools."""

    offers: OfferCache
    upstream: Upstream
    # One generator per process: a new `random.Random()` per request seeds itself from
    # os.urandom (~45 µs); load balancing needs no fresh seed.
    rng: random.Random = field(default_factory=random.Random)
    # The prompt prefixes seen cached upstream lately (reservations expect them read).
    warm_prefixes: WarmPrefixes = field(default_factory=WarmPrefixes)

    @classmethod
    def start(cls, database: Database, settings: Settings) -> RelayRuntime:
        # The silence allowed before the answer's head is the one allowed between events: an
        # upstream that never answers must not hold a request (and its reservation) longer.
        idle = float(settings.relay_stream_idle_timeout)
        upstream = Upstream(idle_timeout=idle, first_byte_timeout=idle)
        return cls(OfferCache(database, settings), upstream)

    async def warm(self) -> None:
        """Read the offers once at start-up: that loads the tokenizer (in a worker thread,
        ~0.1 s idle, over a second on a loaded core) before the first relayed request
        rather than in front of it and every request queued behind it. A failure here is
        the first request's to report, as it was."""
        try:
            await self.offers.get()
        except Exception as exc:
            log.info("relay offers not read at start-up: %s", exc)

    async def close(self) -> None:
        await self.upstream.close()
