"""The edges of the relay's upstream-balance poller (`relay.balance_poll`, SPEC §12 ★), made
of the client and the monitor's own parts so that neither is written twice: `fetch` asks
through the client's providers (§6), `level` is `state.level_of`, `sender` delivers through
`notify.Notifier` (Apprise)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal

from quotaledger.client import AsyncBalanceClient
from quotaledger.client.errors import BalanceError
from quotaledger.client.providers import PROVIDERS
from quotaledger.monitor.config import Thresholds
from quotaledger.monitor.messages import Message
from quotaledger.monitor.notify import Notifier, Sender
from quotaledger.monitor.state import State, level_of
from quotaledger.secret import Secret

RECOVERY_MARGIN = Decimal("0.10")  # the watcher's default (monitor/config.py)
# Providers a channel's own API key can read (new-api's account provider, `newapi`, needs a
# system token and a user id, which a channel does not have).
KEY_PROVIDERS = tuple(name for name in PROVIDERS if name != "newapi")


def alert_urls(secret: Secret | None) -> list[str]:
    """QUOTALEDGER_OPERATOR_ALERT_URLS: Apprise URLs separated by commas or spaces."""
    return [] if secret is None else [u for u in re.split(r"[\s,]+", secret.reveal()) if u]


Reading = tuple[Decimal | None, str | None, str | None]  # amount, currency, error


def fetcher(timeout: float = 10.0, retries: int = 1) -> Callable[..., Awaitable[Reading]]:
    """`fetch(provider, site, channel_url, key)`: the balance, or why there is none."""

    async def fetch(provider: str, site: str | None, channel_url: str, key: str) -> Reading:
        root = site or PROVIDERS[provider].default_base_url or channel_url
        try:
            async with AsyncBalanceClient(
                root, key, provider=provider, timeout=timeout, retries=retries
            ) as client:
                got = await client.balance()
        except BalanceError as exc:  # the client redacts the key from its messages
            return None, None, str(exc)
        return got.amount, got.currency, None

    return fetch


def level(amount: Decimal, currency: str, alert: Decimal | None, previous: str) -> str:
    limits = Thresholds(currency, warn=alert, critical=None)
    return str(level_of(amount, limits, State(previous), RECOVERY_MARGIN))


def sender(urls: Sequence[str], notifier: Sender | None = None) -> Callable[..., Awaitable[bool]]:
    """`send(title, body, level)`; False (not delivered: tried again) without URLs."""
    through = notifier or Notifier()

    async def send(title: str, body: str, level: str) -> bool:
        if not urls:
            return False
        return await through.send(list(urls), Message(title, body, State(level)))

    return send
