"""One poll of one account through the client SDK, as a history row and an observation."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from quotaledger.client import Balance, BalanceError, RateLimitedError
from quotaledger.client.printable import printable
from quotaledger.monitor.config import AccountConfig
from quotaledger.monitor.history import Poll
from quotaledger.monitor.keywatch import watched
from quotaledger.monitor.state import Failure, Observation, Reading

log = logging.getLogger("quotaledger.monitor")


class BalanceSource(Protocol):
    """What the watcher needs of a client: `AsyncBalanceClient` fits."""

    async def balance(self) -> Balance: ...


@dataclass(frozen=True)
class Outcome:
    poll: Poll
    observation: Observation
    retry_after: float | None = None  # seconds a rate-limiting server asked us to wait


async def poll_account(
    account: AccountConfig,
    client: BalanceSource,
    now: Callable[[], datetime],
    redact: Callable[[str], str],
) -> Outcome:
    """Ask for the balance; any failure becomes a failed poll, never an exception."""
    try:
        balance = await client.balance()
    except BalanceError as exc:
        retry_after = exc.retry_after if isinstance(exc, RateLimitedError) else None
        return _failed(account, now(), redact(str(exc)), retry_after)
    except Exception as exc:  # a bug must not stop the other accounts' alerts
        log.exception("unexpected error polling %s", account.name)
        return _failed(account, now(), redact(f"unexpected error: {type(exc).__name__}"), None)
    poll = _poll(account.name, now(), balance)
    return Outcome(poll, _observation(account, balance))


def _failed(account: AccountConfig, at: datetime, error: str, retry_after: float | None) -> Outcome:
    # Stored, printed by `status`/`history` and sent in alerts: a server's words, cleaned once.
    error = printable(error)
    return Outcome(Poll(account.name, at, error=error), Failure(error), retry_after)


def _poll(name: str, at: datetime, balance: Balance) -> Poll:
    return Poll(
        account=name,
        at=at,
        amount=balance.amount,
        currency=balance.currency,
        quota=balance.quota,
        used_quota=balance.used_quota,
        used_amount=_used_amount(balance),
        request_count=balance.request_count,
        watched=watched(balance),
    )


def _used_amount(balance: Balance) -> Decimal | None:
    if balance.used_amount is not None:
        return balance.used_amount
    if balance.used_quota is not None and balance.quota_per_unit:
        return Decimal(balance.used_quota) / balance.quota_per_unit
    return None


def _observation(account: AccountConfig, balance: Balance) -> Observation:
    wanted = account.thresholds.currency
    if balance.currency == wanted:
        return Reading(balance.amount)
    # We never guess an exchange rate: the thresholds must be in the balance's currency.
    hint = "warn_usd/critical_usd"
    if balance.currency != "USD":
        hint = f'currency = "{balance.currency}" with warn/critical'
    return Failure(f"the balance is in {balance.currency}, the thresholds in {wanted}: use {hint}")
