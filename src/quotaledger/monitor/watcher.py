"""The watcher: poll accounts, run the state machine, send what it decides, keep history.

`Watcher.poll_round(accounts)` is one step (what `watch --once` runs, and what tests drive
with their own clock); `Watcher.run(stop)` repeats it per account at its interval plus
jitter until `stop` is set. Every decision is persisted before and after delivery, so a
cron job of `--once` and a long-running watcher behave the same.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import httpx

from quotaledger.monitor.config import AccountConfig, WatchConfig
from quotaledger.monitor.forecast import WINDOWS, Forecast, forecast
from quotaledger.monitor.history import History
from quotaledger.monitor.messages import Alert, Message, balance_text, digest
from quotaledger.monitor.metrics import MonitorMetrics
from quotaledger.monitor.notify import Sender
from quotaledger.monitor.poll import BalanceSource, Outcome, poll_account
from quotaledger.monitor.state import Record, decide, delivered
from quotaledger.monitor.tokens import redact
from quotaledger.settings import Secret

log = logging.getLogger("quotaledger.monitor")
ClientFactory = Callable[[AccountConfig, Secret, httpx.AsyncClient], Any]
"""Builds an async-context-managed client with `await client.balance()`, on the watcher's
one shared HTTP connection pool."""


def system_now() -> datetime:
    return datetime.now(UTC)


def default_client(account: AccountConfig, token: Secret, http: httpx.AsyncClient) -> Any:
    from quotaledger.client import AsyncBalanceClient

    return AsyncBalanceClient(
        account.base_url,
        token.reveal(),
        provider=account.provider,
        timeout=account.timeout.total_seconds(),
        retries=account.retries,
        user_id=account.user_id,
        http_client=http,
    )


@dataclass(frozen=True)
class Result:
    """What one account's poll led to, for the caller's summary."""

    account: AccountConfig
    outcome: Outcome
    record: Record
    alert: Alert | None
    delivered: bool = False


class Watcher:
    """Polls the configured accounts; an async context manager that owns their clients."""

    def __init__(
        self,
        config: WatchConfig,
        tokens: Mapping[str, Secret],
        history: History,
        notifier: Sender,
        *,
        now: Callable[[], datetime] = system_now,
        client_factory: ClientFactory = default_client,
        metrics: MonitorMetrics | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config, self.tokens, self.history, self.notifier = config, tokens, history, notifier
        self.now, self.metrics = now, metrics
        self._factory = client_factory
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not cryptography)
        self._clients: dict[str, BalanceSource] = {}
        self._stack = AsyncExitStack()
        self._limit = asyncio.Semaphore(config.concurrency)

    async def __aenter__(self) -> Watcher:
        try:
            # One connection pool for every account: a client each would cost a TLS
            # context and a pool per account (tens of ms and ~1 MB apiece).
            self._http = await self._stack.enter_async_context(
                httpx.AsyncClient(
                    follow_redirects=True,
                    limits=httpx.Limits(max_connections=self.config.concurrency * 2),
                )
            )
            for account in self.config.accounts:
                client = self._client(account)
                self._clients[account.name] = await self._stack.enter_async_context(client)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    def _client(self, account: AccountConfig) -> Any:
        try:
            return self._factory(account, self.tokens[account.name], self._http)
        except ValueError as exc:  # the client refuses its settings: base URL, provider, ...
            reason = redact(str(exc), self.tokens.values())
            raise self.config.source.error(account.section, None, reason) from None

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def poll_round(self, accounts: Sequence[AccountConfig] | None = None) -> list[Result]:
        """Poll `accounts` (default: all) concurrently, then decide, store and notify."""
        accounts = list(self.config.accounts if accounts is None else accounts)
        outcomes = await asyncio.gather(*(self._poll(account) for account in accounts))
        results = [self._decide(a, o) for a, o in zip(accounts, outcomes, strict=True)]
        return await self._notify(results)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll each account at its interval (plus jitter) until `stop` is set; the round
        under way when it is set is finished, so no decision is half-delivered."""
        due = dict.fromkeys((a.name for a in self.config.accounts), self.now())
        while not stop.is_set():
            ready = [a for a in self.config.accounts if due[a.name] <= self.now()]
            if ready:
                for result in await self.poll_round(ready):
                    due[result.account.name] = self._next_due(result)
            wait = (min(due.values()) - self.now()).total_seconds()
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(wait, 0.0))

    def _next_due(self, result: Result) -> datetime:
        account = result.account
        spread = account.interval.total_seconds() * float(self.config.jitter)
        delay = account.interval + timedelta(seconds=self._rng.uniform(0, spread))
        retry_after = timedelta(seconds=result.outcome.retry_after or 0)
        return self.now() + max(delay, retry_after)

    async def _poll(self, account: AccountConfig) -> Outcome:
        secrets = self.tokens.values()
        async with self._limit:
            return await poll_account(
                account, self._clients[account.name], self.now, lambda text: redact(text, secrets)
            )

    def _decide(self, account: AccountConfig, outcome: Outcome) -> Result:
        name, now = account.name, outcome.poll.at
        decision = decide(
            self.history.record(name), outcome.observation, account.thresholds, account.policy, now
        )
        self.history.save(name, decision.record, outcome.poll)
        prediction = self._forecast(name, now)
        if self.metrics is not None:
            self.metrics.observe(outcome.poll, decision.record, prediction)
        _log_poll(account, outcome, decision.record)
        if decision.event is None:
            return Result(account, outcome, decision.record, None)
        last_good = outcome.poll if outcome.poll.ok else self.history.last_success(name)
        alert = Alert(
            account, decision.event, outcome.poll, last_good, prediction, decision.record, now,
        )  # fmt: skip
        return Result(account, outcome, decision.record, alert)

    def _forecast(self, name: str, now: datetime) -> Forecast | None:
        longest = max(window.length for window in WINDOWS)
        samples = self.history.samples(name, since=now - longest)
        return forecast(samples, now) if samples else None

    async def _notify(self, results: list[Result]) -> list[Result]:
        """Send each alert (as digests when several share the same URLs); mark what arrived."""
        groups: dict[tuple[str, ...], list[Alert]] = defaultdict(list)
        for result in results:
            if result.alert is not None:
                groups[result.account.notify].append(result.alert)
        batches = list(groups.items())
        if not self.config.digest:
            batches = [(urls, [alert]) for urls, alerts in batches for alert in alerts]
        arrived: set[str] = set()
        for urls, alerts in batches:
            if await self._deliver(urls, digest(alerts)):
                arrived.update(alert.account.name for alert in alerts)
        return [self._mark_delivered(r) if r.account.name in arrived else r for r in results]

    async def _deliver(self, urls: tuple[str, ...], message: Message) -> bool:
        try:
            return await self.notifier.send(urls, message)
        except Exception:  # delivery is retried at the next poll: never lose the watcher
            log.exception("sending a notification failed")
            return False

    def _mark_delivered(self, result: Result) -> Result:
        record = delivered(result.record, self.now())
        self.history.save(result.account.name, record)
        return Result(result.account, result.outcome, record, result.alert, delivered=True)


def _log_poll(account: AccountConfig, outcome: Outcome, record: Record) -> None:
    poll = outcome.poll
    if poll.ok:
        log.info("%s: %s, %s", account.name, balance_text(poll), record.state)
    else:
        # Quiet (INFO) until failures mean UNKNOWN: a cron job must not mail every blip.
        level = logging.WARNING if record.failures >= account.policy.unknown_after else logging.INFO
        log.log(
            level, "%s: poll failed (%d in a row): %s", account.name, record.failures, poll.error
        )
