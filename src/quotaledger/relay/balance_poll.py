"""Polling the upstream balances of watched channels (SPEC §12 ★).

The poller is domain code with its edges passed in, so that the server's loop and
`quotaledger channel balance NAME` run the same rules: `fetch` asks a balance through the
client's own providers (§6), `level` is the monitor's alert rule (`monitor.state.level_of`:
one alert per crossing of `--alert-usd`, a resolved one on recovery, a 10 % recovery
margin), `send` delivers the operator's message (Apprise); `monitor.channel_balances` has
all three.

Every `QUOTALEDGER_CHANNEL_BALANCE_INTERVAL` seconds each watched channel is polled by one
instance (`balances.claim_poll`). The balance is stored (`channel list`), handed to
`on_balance` (the gauge), compared with the channel's `--alert-usd` and, with
`--disable-at-zero`, an empty channel is disabled (and enabled again once its balance is
above zero). A message not delivered is tried again at the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from decimal import Decimal
from functools import partial
from typing import TypeVar

import anyio.to_thread

from quotaledger.relay import balances, channels, health
from quotaledger.relay.balances import Watch
from quotaledger.relay.channels import ChannelCipher
from quotaledger.relay.health import HealthBook
from quotaledger.store.database import Database

# (amount, currency, error): no amount when the error says why (never a secret).
Reading = tuple[Decimal | None, str | None, str | None]
# (provider, the watch's site or None, the channel's base URL, the channel's key) -> Reading
Fetch = Callable[[str, str | None, str, str], Awaitable[Reading]]
# (amount, currency, alert level or None, previous level) -> level
Level = Callable[[Decimal, str, Decimal | None, str], str]
# (title, body, level) -> delivered
Send = Callable[[str, str, str], Awaitable[bool]]

log = logging.getLogger("quotaledger.relay.balances")
LOOP_SECONDS = 30.0
_T = TypeVar("_T")


class ChannelBalances:
    def __init__(
        self,
        database: Database,
        cipher: ChannelCipher,
        *,
        fetch: Fetch,
        level: Level,
        send: Send,
        interval: int = 900,
        on_balance: Callable[[Watch], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.database, self.cipher, self.interval = database, cipher, interval
        self.fetch, self.level, self.send = fetch, level, send
        self.book = HealthBook(database)
        self._on_balance = on_balance or (lambda _w: None)
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    async def check(self, channel_id: int) -> Watch:
        """Poll the channel's balance now, and act on it; the watch as it then stands."""
        found = await self._run(balances.get_watch, self.database, channel_id)
        if found is None:
            raise LookupError(f"channel {channel_id} has no balance watch")
        channel = await self._run(_channel_by_id, self.database, channel_id)
        reading = await self.fetch(
            found.provider, found.base_url, channel.base_url, channel.api_key(self.cipher)
        )
        amount, currency, error = reading
        now = int(self.clock())
        await self._run(balances.record, self.database, channel_id, amount, currency, error, now)
        if amount is None:
            log.warning("channel %s: balance unavailable: %s", found.channel, error)
            return replace(found, checked_at=now, error=error)
        found = replace(found, amount=amount, currency=currency, checked_at=now, error=None)
        self._on_balance(found)
        await self._act(found)
        return await self._run(balances.get_watch, self.database, channel_id) or found

    async def _act(self, found: Watch) -> None:
        if found.disable_at_zero and found.amount is not None:
            now_ms = int(self.clock() * 1000)
            if found.amount <= 0:
                reason = f"upstream balance {found.amount} {found.currency or ''}".strip()
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
        # In the balance's own currency (no exchange rate is guessed): USD for most
        # providers, CNY for SiliconFlow and Moonshot.
        if found.amount is None:
            return found.level
        return self.level(found.amount, found.currency or "USD", found.alert_usd, found.level)

    async def _announce(self, found: Watch) -> None:
        title, body = message(found)
        if await self.send(title, body, found.level):
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


def message(found: Watch) -> tuple[str, str]:
    """The operator's message (title, body) for the watch's current level."""
    left = f"{found.amount or 0} {found.currency or 'USD'}"
    if found.currency == "USD":
        left = f"${found.amount or 0:.2f}"
    what = f"Channel {found.channel}"
    if found.level == balances.OK:
        return (
            f"[quotaledger] RESOLVED: {what} upstream balance is back above its alert level",
            f"{what}: upstream balance {left} ({found.provider}), above "
            f"{found.alert_usd} again (was {found.announced}).",
        )
    empty = found.disable_at_zero and found.amount is not None and found.amount <= 0
    disabled = " The channel is disabled until it is refilled." if empty else ""
    return (
        f"[quotaledger] {found.level}: {what} upstream balance is running low",
        f"{what}: upstream balance {left} ({found.provider}), at or below the alert level "
        f"of {found.alert_usd}.{disabled}",
    )
