"""The watcher: poll accounts, run the state machine, send what it decides, keep history.

`Watcher.poll_round(accounts)` is one step (what `watch --once` runs, and what tests drive
with their own clock); `Watcher.run(stop)` repeats it per account at its interval plus
jitter until `stop` is set, scheduled on the event loop's monotonic clock (the injectable
`now` only stamps polls and states, so a step of the wall clock never parks a poll). Every
decision is persisted before and after delivery, so a cron job of `--once` and a
long-running watcher behave the same; one account's failure never stops the others'.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import aiohttp

from quotaledger.client.async_client import http_session
from quotaledger.client.shared import SharedReplies
from quotaledger.monitor.config import AccountConfig, WatchConfig
from quotaledger.monitor.forecast import WINDOWS, Forecast, forecast
from quotaledger.monitor.history import History, Poll
from quotaledger.monitor.keywatch import KeyWatch
from quotaledger.monitor.messages import Alert, balance_text, digest
from quotaledger.monitor.metrics import MonitorMetrics
from quotaledger.monitor.notify import Sender
from quotaledger.monitor.poll import BalanceSource, Outcome, poll_account
from quotaledger.monitor.state import Decision, Failure, Record, decide
from quotaledger.monitor.state import delivered as announce
from quotaledger.monitor.tokens import redact
from quotaledger.monitor.tomlsource import ConfigError
from quotaledger.secret import Secret

log = logging.getLogger("quotaledger.monitor")
ClientFactory = Callable[[AccountConfig, Secret, aiohttp.ClientSession], Any]
"""Builds an async-context-managed client with `await client.balance()`, on the watcher's
one shared HTTP connection pool. (The default, `default_client`, also gets the watcher's
`SharedReplies`, so that a relay's `/api/status` is asked once for all its accounts.)"""
PRUNE_EVERY = timedelta(days=1)
"""How often a watcher with `keep_history` drops old polls (and at its first round)."""
KEY = "newapi-key"
"""The client provider that reads a key's own balance (`GET /api/usage/token`)."""
MAX_RETRY_AFTER = timedelta(hours=1)
"""A rate-limiting server's `Retry-After` is honoured up to max(interval, this): a huge one
must not park an account for decades."""


def system_now() -> datetime:
    return datetime.now(UTC)


def default_client(
    account: AccountConfig,
    token: Secret,
    http: aiohttp.ClientSession,
    shared: SharedReplies | None = None,
) -> Any:
    from quotaledger.client import AsyncBalanceClient

    return AsyncBalanceClient(
        account.base_url,
        token.reveal(),
        **_client_options(account),
        http_client=http,
        shared_replies=shared,
    )


def key_client(
    account: AccountConfig,
    key: Secret,
    token: Secret | None,
    http: aiohttp.ClientSession,
    shared: SharedReplies | None = None,
) -> KeyWatch:
    """The source of an account that watches a key: the key's own balance, and the account's
    (with its token, if given) for when the key turns out unlimited."""
    from quotaledger.client import AsyncBalanceClient

    options = {**_client_options(account), "http_client": http, "shared_replies": shared}
    keys = AsyncBalanceClient(account.base_url, key.reveal(), **{**options, "provider": KEY})
    if token is None:
        return KeyWatch(keys, None)
    return KeyWatch(keys, AsyncBalanceClient(account.base_url, token.reveal(), **options))


def check_accounts(
    config: WatchConfig, tokens: Mapping[str, Secret], keys: Mapping[str, Secret] | None = None
) -> None:
    """Refuse, at the account's file:line, what the client would refuse of its settings (base
    URL, provider, token, key, user id): before a state file or a metrics port is opened."""
    from quotaledger.client.config import ClientConfig

    keys = keys or {}
    secrets = [*tokens.values(), *keys.values()]
    for account in config.accounts:
        asked = [(tokens.get(account.name), account.provider), (keys.get(account.name), KEY)]
        try:
            for secret, provider in asked:
                if secret is not None:
                    options = {**_client_options(account), "provider": provider}
                    ClientConfig.build(account.base_url, secret.reveal(), **options, backoff=None)
        except ValueError as exc:
            raise _refused(config, account, exc, secrets) from None


def _client_options(account: AccountConfig) -> dict[str, Any]:
    return {
        "provider": account.provider,
        "timeout": account.timeout.total_seconds(),
        "retries": account.retries,
        "user_id": account.user_id,
    }


def _refused(
    config: WatchConfig, account: AccountConfig, exc: ValueError, secrets: Iterable[Secret]
) -> ConfigError:
    return config.source.error(account.section, None, redact(str(exc), secrets))


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
        keys: Mapping[str, Secret] | None = None,
    ) -> None:
        self.config, self.tokens, self.history, self.notifier = config, tokens, history, notifier
        self.keys = keys or {}
        self._secrets = [*tokens.values(), *self.keys.values()]  # scrubbed from all we keep
        self.now, self.metrics = now, metrics
        self._factory = client_factory
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not cryptography)
        self._clients: dict[str, BalanceSource] = {}
        self._stack = AsyncExitStack()
        # What is the same for every account of a relay (new-api's /api/status): asked once.
        self._shared = SharedReplies()
        self._next_prune: datetime | None = None

    async def __aenter__(self) -> Watcher:
        try:
            # One connection pool for every account: a client each would cost a TLS
            # context and a pool per account (tens of ms and ~1 MB apiece). It keeps no
            # cookies: a session cookie one relay sets must never go out with another
            # account's token.
            self._http = await self._stack.enter_async_context(
                http_session(max_connections=self.config.concurrency * 2)
            )
            for account in self.config.accounts:
                client = self._client(account)
                self._clients[account.name] = await self._stack.enter_async_context(client)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    def _client(self, account: AccountConfig) -> Any:
        token, key = self.tokens.get(account.name), self.keys.get(account.name)
        try:
            if key is not None:
                return key_client(account, key, token, self._http, self._shared)
            assert token is not None  # config: an account without a key has a token
            if self._factory is default_client:
                return default_client(account, token, self._http, self._shared)
            return self._factory(account, token, self._http)
        except ValueError as exc:  # the client refuses its settings: base URL, provider, ...
            raise _refused(self.config, account, exc, self._secrets) from None

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def poll_round(self, accounts: Sequence[AccountConfig] | None = None) -> list[Result]:
        """Poll `accounts` (default: all) concurrently, then decide, store and notify."""
        accounts = list(self.config.accounts if accounts is None else accounts)
        self._shared.forget_failures()  # a status page that failed is asked again, once
        outcomes = await self._poll_all(accounts)
        results = self._decide_all(list(zip(accounts, outcomes, strict=True)))
        delivered = await self._notify(results)
        self._prune_history()
        return delivered

    def _prune_history(self) -> None:
        """With `keep_history` set, drop older polls: at the first round, then once a day.
        A failure is logged, never fatal (the polls stay, and are tried again tomorrow)."""
        keep, now = self.config.keep_history, self.now()
        if keep is None or (self._next_prune is not None and now < self._next_prune):
            return
        self._next_prune = now + PRUNE_EVERY
        try:
            removed = sum(self.history.prune(a.name, now - keep) for a in self.config.accounts)
        except Exception as exc:
            log.error("pruning the history failed (%s); the polls are kept", exc)
            return
        if removed:
            log.info("history: removed %d polls older than %s", removed, keep)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll each account at its interval (plus jitter) until `stop` is set; the round
        under way when it is set is finished, so no decision is half-delivered. Due times are
        on the loop's monotonic clock: the wall clock stepping back or forth moves nothing."""
        loop = asyncio.get_running_loop()
        due = dict.fromkeys((a.name for a in self.config.accounts), loop.time())
        while not stop.is_set():
            ready = [a for a in self.config.accounts if due[a.name] <= loop.time()]
            if ready:
                for result in await self.poll_round(ready):
                    delay = self._next_delay(result).total_seconds()
                    due[result.account.name] = loop.time() + delay
            wait = min(due.values()) - loop.time()
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(wait, 0.0))

    def _next_delay(self, result: Result) -> timedelta:
        """The interval plus jitter, or a rate-limiting server's `Retry-After` if longer (up
        to max(interval, `MAX_RETRY_AFTER`); a negative or non-finite one is ignored)."""
        account = result.account
        spread = account.interval.total_seconds() * float(self.config.jitter)
        delay = account.interval + timedelta(seconds=self._rng.uniform(0, spread))
        asked = result.outcome.retry_after
        if asked is None or not math.isfinite(asked) or asked <= 0:
            return delay
        cap = max(account.interval, MAX_RETRY_AFTER)
        return max(delay, min(timedelta(seconds=asked), cap))

    async def _poll_all(self, accounts: Sequence[AccountConfig]) -> list[Outcome]:
        """Every account's outcome, in order, polled by `concurrency` workers that take the
        next account as they finish one (a task per account waiting on a semaphore costs a
        round of 1,000 accounts a tenth more)."""
        outcomes: dict[int, Outcome] = {}
        pending = iter(enumerate(accounts))

        async def worker() -> None:
            for index, account in pending:
                outcomes[index] = await self._poll(account)

        async with asyncio.TaskGroup() as workers:  # one failing cancels the others
            for _ in range(min(self.config.concurrency, len(accounts))):
                workers.create_task(worker())
        return [outcomes[index] for index in range(len(accounts))]

    async def _poll(self, account: AccountConfig) -> Outcome:
        secrets = self._secrets
        return await poll_account(
            account, self._clients[account.name], self.now, lambda text: redact(text, secrets)
        )

    def _decide_all(self, polled: list[tuple[AccountConfig, Outcome]]) -> list[Result]:
        """Decide and store every poll of the round in one transaction (one fsync, not one
        per account), then forecast, update the metrics and build the alerts.

        Crash safety is as before, when each account had a transaction of its own: the
        decisions are committed before anything is delivered (`_notify` runs after), and
        delivery is recorded after it (`_announced`). A crash before this commit loses the
        round's polls, and nothing of them was sent: the next run polls and decides again
        from the same stored records, so the same alerts, once. A crash after it and before
        delivery leaves undelivered decisions, sent at the next poll (as a failed delivery
        is); a crash after delivery and before it was recorded may send one again (as
        before, per account). If the commit itself fails (disk full, I/O error), the round
        is stored again one account at a time, so that what can be stored is, and only
        alerts that are stored are sent."""
        try:
            with self.history.transaction():
                stored = [self._store_safely(account, outcome) for account, outcome in polled]
        except Exception as exc:
            log.error("storing the round failed (%s); storing each account alone", exc)
            stored = [self._store_safely(account, outcome) for account, outcome in polled]
        return [self._followed_up(*each) for each in stored]

    def _store_safely(
        self, account: AccountConfig, outcome: Outcome
    ) -> tuple[AccountConfig, Outcome, Decision | None]:
        """`_store`, or, if that fails (a value the state file cannot hold, a full disk...),
        the same poll counted as failed, so that the other accounts' round goes on; no
        decision if not even that could be stored."""
        try:
            return account, outcome, self._store(account, outcome)
        except Exception as exc:
            failed = self._internal_error(account, outcome, exc)
        try:
            return account, failed, self._store(account, failed)
        except Exception:
            log.debug("%s: not even the failure could be stored", account.name, exc_info=True)
            return account, failed, None

    def _internal_error(self, account: AccountConfig, outcome: Outcome, exc: Exception) -> Outcome:
        error = redact(f"internal error: {type(exc).__name__}: {exc}", self._secrets)
        log.error("%s: %s", account.name, error)
        log.debug("%s: the poll could not be stored", account.name, exc_info=True)
        poll = Poll(account.name, outcome.poll.at, error=error)
        return Outcome(poll, Failure(error), outcome.retry_after)

    def _store(self, account: AccountConfig, outcome: Outcome) -> Decision:
        name, now = account.name, outcome.poll.at
        record = self.history.record(name)
        decision = decide(record, outcome.observation, account.thresholds, account.policy, now)
        # Most polls change nothing of the record (a steady balance): the poll alone is stored.
        changed = decision.record if decision.record != record else None
        self.history.save(name, changed, outcome.poll)
        return decision

    def _followed_up(
        self, account: AccountConfig, outcome: Outcome, decision: Decision | None
    ) -> Result:
        """The stored poll's forecast, metrics, log line and alert. Stored: from here on a
        failure must not count the poll twice, only be logged."""
        if decision is None:
            return Result(account, outcome, Record(last_error=outcome.poll.error), None)
        try:
            return self._follow_up(account, outcome, decision)
        except Exception:  # the decision is stored: its alert comes again at the next poll
            log.exception("%s: after storing the poll", account.name)
            return Result(account, outcome, decision.record, None)

    def _follow_up(self, account: AccountConfig, outcome: Outcome, decision: Decision) -> Result:
        name, now = account.name, outcome.poll.at
        # The forecast serves the metrics and alerts only: not asked for without either.
        wanted = decision.event is not None or self.metrics is not None
        prediction = self._forecast(name, now) if wanted else None
        if self.metrics is not None:
            try:
                self.metrics.observe(outcome.poll, decision.record, prediction)
            except Exception:
                log.exception("%s: updating the metrics failed", name)
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
        try:
            samples = self.history.samples(name, since=now - longest)
            return forecast(samples, now) if samples else None
        except Exception:  # no forecast is better than no alert
            log.exception("%s: the forecast failed", name)
            return None

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
        silent: set[str] = set()
        for urls, alerts in batches:
            names = {alert.account.name for alert in alerts}
            if not urls:  # `notify = []` on purpose: the state is kept, nothing is sent
                silent.update(names)
            elif await self._deliver(urls, alerts):
                arrived.update(names)
        done = arrived | silent
        if not done:
            return results

        def record_all() -> list[Result]:
            return [
                self._announced(r, delivered=r.account.name in arrived)
                if r.account.name in done
                else r
                for r in results
            ]

        # The deliveries of the round, recorded in one transaction too (see `_decide_all`);
        # if its commit fails, one account at a time.
        try:
            with self.history.transaction():
                return record_all()
        except Exception as exc:
            log.error("recording the deliveries failed (%s); recording each alone", exc)
            return record_all()

    async def _deliver(self, urls: tuple[str, ...], alerts: list[Alert]) -> bool:
        try:
            return await self.notifier.send(urls, digest(alerts))
        except Exception:  # delivery is retried at the next poll: never lose the watcher
            log.exception("sending a notification failed")
            return False

    def _announced(self, result: Result, *, delivered: bool) -> Result:
        """`result` once its message was delivered (or, without URLs, had nowhere to go)."""
        record = announce(result.record, self.now())
        try:
            self.history.save(result.account.name, record)
        except Exception as exc:  # sent but not recorded: it may be sent again, no worse
            log.error("%s: the delivery could not be recorded: %s", result.account.name, exc)
            record = result.record
        return Result(result.account, result.outcome, record, result.alert, delivered=delivered)


def _log_poll(account: AccountConfig, outcome: Outcome, record: Record) -> None:
    poll = outcome.poll
    if poll.ok:
        if log.isEnabledFor(logging.INFO):  # `--once` logs warnings only: skip the formatting
            log.info("%s: %s, %s", account.name, balance_text(poll), record.state)
    else:
        # Quiet (INFO) until failures mean UNKNOWN: a cron job must not mail every blip.
        level = logging.WARNING if record.failures >= account.policy.unknown_after else logging.INFO
        log.log(
            level, "%s: poll failed (%d in a row): %s", account.name, record.failures, poll.error
        )
