"""Polling the upstream balances of watched channels (SPEC §12 ★), with the client's own
providers (`quotaledger.client`, §6) and the monitor's alert rules (`monitor.state.level_of`:
one alert per crossing of `--alert-usd`, a resolved one on recovery, a 10 % recovery margin).

Every `QUOTALEDGER_CHANNEL_BALANCE_INTERVAL` seconds each watched channel is polled by one
instance (`balances.claim_poll`); `quotaledger channel balance NAME` polls at once. The
balance is stored (`channel list`), handed to `on_balance` (the gauge), compared with the
channel's `--alert-usd` and, with `--disable-at-zero`, an empty channel is disabled (and
enabled again once its balance is above zero). Messages go to
`QUOTALEDGER_OPERATOR_ALERT_URLS` (Apprise); an undelivered one is tried again each poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from functools import partial
from typing import TypeVar

import anyio.to_thread

from quotaledger.client import AsyncBalanceClient
from quotaledger.client.balance import format_money
from quotaledger.client.errors import BalanceError
from quotaledger.client.providers import PROVIDERS
from quotaledger.monitor.config import Thresholds
from quotaledger.monitor.messages import Message
from quotaledger.monitor.notify import Notifier, Sender
from quotaledger.monitor.state import State, level_of
from quotaledger.relay import balances, channels, health
from quotaledger.relay.balances import Watch
from quotaledger.relay.channels import ChannelCipher
from quotaledger.relay.health import HealthBook
from quotaledger.settings import Secret
from quotaledger.store.database import Database

log = logging.getLogger("quotaledger.relay.balances")
RECOVERY_MARGIN = Decimal("0.10")  # the watcher's default (monitor/config.py)
LOOP_SECONDS = 30.0
# Providers that take the channel's own API key (new-api's account provider needs a system
# token and a user id, which a channel does not have).
_T = TypeVar("_T")
KEY_PROVIDERS = tuple(name for name, p in PROVIDERS.items() if name != "newapi")


def alert_urls(secret: Secret | None) -> list[str]:
    return [] if secret is None else [u for u in re.split(r"[\s,]+", secret.reveal()) if u]


class ChannelBalances:
    def __init__(
        self,
        database: Database,
        cipher: ChannelCipher,
        *,
        interval: int = 900,
        urls: list[str] | None = None,
        sender: Sender | None = None,
        on_balance: Callable[[Watch], None] | None = None,
        clock: Callable[[], float] = time.time,
        timeout: float = 10.0,
    ) -> None:
        self.database, self.cipher, self.interval = database, cipher, interval
        self.urls = urls or []
        self.sender = sender or Notifier()
        self.book = HealthBook(database)
        self._on_balance = on_balance or (lambda _w: None)
        self.clock, self.timeout = clock, timeout
        self._task: asyncio.Task[None] | None = None

    async def check(self, channel_id: int) -> Watch:
        """Poll the channel's balance now, and act on it; the watch as it then stands."""
        found = await self._run(balances.get_watch, self.database, channel_id)
        if found is None:
            raise LookupError(f"channel {channel_id} has no balance watch")
        amount, currency, error = await self._fetch(found)
        now = int(self.clock())
        await self._run(balances.record, self.database, channel_id, amount, currency, error, now)
        if amount is None:
            log.warning("channel %s: balance unavailable: %s", found.channel, error)
            return replace(found, checked_at=now, error=error)
        found = replace(found, amount=amount, currency=currency, checked_at=now, error=None)
        self._on_balance(found)
        await self._act(found)
        return await self._run(balances.get_watch, self.database, channel_id) or found

    async def _fetch(self, found: Watch) -> tuple[Decimal | None, str | None, str | None]:
        channel = await self._run(_channel_by_id, self.database, found.channel_id)
        key = channel.api_key(self.cipher)
        site = found.base_url or PROVIDERS[found.provider].default_base_url or channel.base_url
        try:
            async with AsyncBalanceClient(
                site, key, provider=found.provider, timeout=self.timeout, retries=1
            ) as client:
                got = await client.balance()
        except BalanceError as exc:  # its message names no secret (the client redacts)
            return None, None, str(exc)
        return got.amount, got.currency, None

    async def _act(self, found: Watch) -> None:
        if found.disable_at_zero and found.amount is not None:
            now_ms = int(self.clock() * 1000)
            if found.amount <= 0:
                reason = f"upstream balance {format_money(found.amount, found.currency or '')}"
                rule = partial(health.disabled_for_balance, reason=reason, now_ms=now_ms,
                               policy=self.book.policy)  # fmt: skip
            else:
                rule = partial(health.balance_back, now_ms=now_ms)
            await self._run(self.book.change, found.channel_id, rule)
        level = self._level(found)
        if level != found.level and await self._run(
            balances.claim_level, self.database, found.channel_id, found.level, level
        ):
            log.warning("channel %s: upstream balance level %s", found.channel, level)
            found = replace(found, level=level)
        if found.level != found.announced:
            await self._announce(found)

    def _level(self, found: Watch) -> str:
        # The alert level is in the balance's own currency (no exchange rate is guessed):
        # USD for most providers, CNY for SiliconFlow and Moonshot.
        if found.amount is None:
            return found.level
        limits = Thresholds(found.currency or "USD", warn=found.alert_usd, critical=None)
        return str(level_of(found.amount, limits, State(found.level), RECOVERY_MARGIN))

    async def _announce(self, found: Watch) -> None:
        if not self.urls:
            return
        if await self.sender.send(self.urls, message(found)):
            await self._run(balances.announced, self.database, found.channel_id, found.level)

    async def run_once(self) -> None:
        """Poll every watched channel whose poll is due, each on one instance only."""
        now = int(self.clock())
        for found in await self._run(balances.watches, self.database):
            if found.next_poll_at <= now and await self._run(
                balances.claim_poll, self.database, found, now + self.interval
            ):
                try:
                    await self.check(found.channel_id)
                except Exception:  # one channel's trouble must not stop the others' polls
                    log.exception("channel %s: balance poll failed", found.channel)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                log.exception("balance polls failed; trying again")
            await asyncio.sleep(LOOP_SECONDS)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self, function: Callable[..., _T], *args: object) -> _T:
        return await anyio.to_thread.run_sync(function, *args)


def _channel_by_id(database: Database, channel_id: int) -> channels.Channel:
    for found in channels.list_channels(database):
        if found.id == channel_id:
            return found
    raise LookupError(f"no channel {channel_id}")


def message(found: Watch) -> Message:
    """The operator's message for the watch's current level."""
    left = format_money(found.amount or Decimal(0), found.currency or "USD")
    what = f"Channel {found.channel}"
    if found.level == balances.OK:
        return Message(
            f"[quotaledger] RESOLVED: {what} upstream balance is back above its alert level",
            f"{what}: upstream balance {left} ({found.provider}), above "
            f"{found.alert_usd} again (was {found.announced}).",
            State.OK,
        )
    disabled = " The channel is disabled until it is refilled." if found.disable_at_zero and (
        found.amount is not None and found.amount <= 0
    ) else ""  # fmt: skip
    return Message(
        f"[quotaledger] {found.level}: {what} upstream balance is running low",
        f"{what}: upstream balance {left} ({found.provider}), at or below the alert level "
        f"of {found.alert_usd}.{disabled}",
        State(found.level),
    )
