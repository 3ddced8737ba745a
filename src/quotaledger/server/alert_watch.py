"""Alerts on the server: each settlement (and each operator charge, `POST /api/usage`)
checked against the thresholds users set, and one notification per crossing sent through
their Apprise URLs, off the request path.

The rules are the monitor's (`monitor.state.level_of`): a balance at or below a threshold is
in it; getting better means clearing the threshold by `RECOVERY_MARGIN` (10 %, at least
$0.50), so a balance hovering at a threshold does not flap; a drop straight to CRITICAL is
one alert; a return above the thresholds is one resolved message. There are no reminders:
a balance only moves when something spends or adds to it.

Cost to a settlement: `settled()` runs on the event loop after the commit; for an account
and key without thresholds it is two dict lookups, and with thresholds a comparison of
Decimals against the level last seen. Only a crossing queues anything; the background task
(`start`) then reads the subject again, claims the crossing in the database (one instance
wins: `alert_states.claim`) and sends, with retries (`alert_states.lease`) that survive a
failed delivery or a dead instance. Nothing here can fail or delay a settlement.

Thresholds live in memory, read again every `REFRESH_SECONDS` (settings changed on another
instance show up within that), and at once after a change through this instance's API.
A top-up or redemption that lifts a balance clear of its thresholds is found at the next
settlement, at once for a redemption through the API (`POST /api/user/topup`), and within
`REFRESH_SECONDS` otherwise (each refresh looks again at every subject not at OK).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from decimal import Decimal

from starlette.concurrency import run_in_threadpool

from quotaledger.alerting import alerts
from quotaledger.alerting import states as alert_states
from quotaledger.alerting.alerts import AlertCipher, Thresholds
from quotaledger.alerting.states import OK
from quotaledger.alerting.targets import DEFAULT_SCHEMES, AlertPolicy
from quotaledger.billing.settlement import Settlement
from quotaledger.money import quota_to_usd
from quotaledger.monitor import config as monitor_config
from quotaledger.monitor.messages import Message
from quotaledger.monitor.state import State, level_of
from quotaledger.server.alert_messages import compose
from quotaledger.server.alert_sender import AlertSender
from quotaledger.settings import Settings
from quotaledger.store.database import Database

log = logging.getLogger("quotaledger.alerting.alerts")
RECOVERY_MARGIN = Decimal("0.10")  # the watcher's default (monitor/config.py)
REFRESH_SECONDS = 30.0
STOP_SECONDS = 5.0  # the longest a shutdown waits for the step in progress
# How long a delivery may take before another instance may try it, then the waits between
# failed attempts (the last one repeats).
RETRY_SECONDS = (60, 300, 900, 3600)
# The soonest a test notification is answered (`alert_routes.send_test`): about as long as
# a slow service takes, so that a refused or closed target is not told by a fast answer.
TEST_ANSWER_SECONDS = 1.0
# Apprise's and urllib3's debug lines carry whole notification URLs (webhook tokens in the
# path): these loggers stay at WARNING whatever QUOTALEDGER_LOG_LEVEL says.
URL_LOGGERS = ("apprise", "urllib3")


def level(amount: int, levels: Thresholds, previous: str) -> str:
    """The level of `amount` (quota) under `levels`, coming from `previous`."""
    usd = monitor_config.Thresholds(
        "USD",
        warn=None if levels.warn is None else quota_to_usd(levels.warn),
        critical=None if levels.critical is None else quota_to_usd(levels.critical),
    )
    return str(level_of(quota_to_usd(amount), usd, State(previous), RECOVERY_MARGIN))


@dataclass
class Tracked:
    """An account or key held in memory: its thresholds and the level last seen."""

    thresholds: Thresholds
    level: str  # as last read or claimed (another instance may have moved it since)

    def moves(self, amount: int) -> bool:
        # The usual case in integers: an amount in the band of its level stays there
        # (`level_of` only adds a margin to getting better). Measured with an account and
        # its key both watched: 0.33 us CPU per settlement instead of 5.1 us of Decimals.
        if _band(amount, self.thresholds) == self.level:
            return False
        return level(amount, self.thresholds, self.level) != self.level


def _band(amount: int, levels: Thresholds) -> str:
    """The level of `amount` without hysteresis (`monitor.state`'s raw level)."""
    if amount < 0 or (levels.critical is not None and amount <= levels.critical):
        return "CRITICAL"
    if levels.warn is not None and amount <= levels.warn:
        return "WARNING"
    return OK


class AlertWatch:
    """The in-memory thresholds, the settlement hook and the background sender."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self._database = database
        self._settings = settings
        self._accounts: dict[int, Tracked] = {}
        self._keys: dict[int, Tracked] = {}
        self._usernames: dict[str, int] = {}
        self._periodic: frozenset[int] = frozenset()  # watched keys with a periodic limit
        self._queued: set[str] = set()
        self._wake = asyncio.Event()
        self.policy = AlertPolicy.of(
            settings.alert_allow_schemes or DEFAULT_SCHEMES, settings.alert_allow_hosts
        )
        self._notifier = AlertSender(self.policy)
        self.test_answer_seconds = TEST_ANSWER_SECONDS
        self._refresh_due = 0.0  # time.monotonic() of the next refresh
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._users = 0  # lifespans running (a test client may open one inside another)
        for name in URL_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)

    def settled(self, settled: Settlement) -> None:
        """After a settlement (on the event loop): queue a check of the account and the key
        if their amounts may have crossed a threshold. Never raises."""
        if settled.replayed or settled.user_id is None:
            return
        account = self._accounts.get(settled.user_id)
        if account is not None and account.moves(settled.quota_remaining):
            self.check(alert_states.account_subject(settled.user_id))
        key = None if settled.key_id is None else self._keys.get(settled.key_id)
        remaining = settled.key_remaining
        # A periodic key's period may cross first: looked at again after each settlement.
        periodic = settled.key_id in self._periodic
        if key is not None and (periodic or (remaining is not None and key.moves(remaining))):
            self.check(alert_states.key_subject(settled.key_id or 0))

    def charged(self, username: str, quota_remaining: int) -> None:
        """After an operator's charge (`POST /api/usage`, which names the user): as
        `settled`, for the account."""
        user_id = self._usernames.get(username)
        account = None if user_id is None else self._accounts.get(user_id)
        if user_id is not None and account is not None and account.moves(quota_remaining):
            self.check(alert_states.account_subject(user_id))

    def check(self, subject: str) -> None:
        """Look at `subject` again soon (its settings or amount changed)."""
        self._queued.add(subject)
        self._wake.set()

    def changed(self, user_id: int) -> None:
        """The account's alert settings changed here: read them again, then look again at
        the account and its keys."""
        self._refresh_due = 0.0
        self.check(alert_states.account_subject(user_id))
        self._wake.set()

    async def send(self, urls: list[str], message: Message) -> bool:
        """Send `message` to `urls` now (the test notification); True if one accepted it.
        Only what `policy` allows is tried."""
        return await self._notifier.send(urls, message)

    def cipher(self) -> AlertCipher:
        """The URLs' cipher; `NotConfigured` without QUOTALEDGER_SECRET_KEY."""
        return AlertCipher(self._settings.secret_key)

    def start(self) -> None:
        """Run in the background (the app's lifespan) until `stop`. A lifespan entered
        while another runs (a test client opened inside another) shares the one task: the
        last `stop` ends it."""
        self._users += 1
        if self._users == 1:
            self._stopping = False
            self._wake = asyncio.Event()  # an Event is bound to the loop that first waits
            if self._queued:
                self._wake.set()
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """End the background task after the database step it is in, so that no worker
        thread still holds a connection when the database is closed; a delivery in flight
        is abandoned (its lease makes it due again later, on any instance)."""
        self._users -= 1
        if self._users > 0:
            return
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=STOP_SECONDS)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        """Refresh, check and send until stopped; a failing database is retried later."""
        while not self._stopping:
            try:
                await self.run_once()
            except Exception:
                log.exception("alerts: a round failed; trying again later")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=REFRESH_SECONDS / 3)
            self._wake.clear()

    async def run_once(self) -> None:
        """One round: read the thresholds again if due, check what was queued, send what
        is due. The background task repeats it; tests step it."""
        if time.monotonic() >= self._refresh_due:
            await self._refresh()
        while self._queued and not self._stopping:
            subject = self._queued.pop()
            now_level = await run_in_threadpool(self._check_now, subject)
            tracked = self._lookup(subject)
            if tracked is not None and now_level is not None:
                tracked.level = now_level
        if self._stopping:
            return
        for item in await run_in_threadpool(alert_states.due, self._database, int(time.time())):
            if self._stopping:
                return
            await self._deliver(item)

    async def _refresh(self) -> None:
        found = await run_in_threadpool(alerts.watched, self._database)
        self._refresh_due = time.monotonic() + REFRESH_SECONDS
        accounts = {
            user_id: Tracked(levels, found.levels.get(alert_states.account_subject(user_id), OK))
            for user_id, levels in found.accounts.items()
        }
        keys = {
            key_id: Tracked(levels, found.levels.get(alert_states.key_subject(key_id), OK))
            for key_id, (_, levels) in found.keys.items()
        }
        self._accounts, self._keys, self._usernames = accounts, keys, found.usernames
        self._periodic = found.periodic
        # Balances also rise outside settlements (top-ups from the CLI): look again at
        # whatever is low, so that its resolved message is not left for the next request.
        self._queued.update(subject for subject, stored in found.levels.items() if stored != OK)

    def _check_now(self, subject: str) -> str | None:
        """(In a worker thread.) Claim `subject`'s crossing if it crossed (its message is
        then due: this round sends it); its level now, None if it is no longer watched."""
        found = alert_states.find(self._database, subject)
        if found is None:
            return None
        now_level = level(found.amount, found.thresholds, found.level)
        if now_level != found.level:
            alert_states.claim(self._database, found, now_level, int(time.time()))
        return now_level

    def _lookup(self, subject: str) -> Tracked | None:
        kind, _, number = subject.partition(":")
        table = self._accounts if kind == "account" else self._keys
        return table.get(int(number))

    async def _deliver(self, item: alert_states.Due) -> None:
        wait = RETRY_SECONDS[min(item.attempts, len(RETRY_SECONDS) - 1)]
        now = int(time.time())
        if not await run_in_threadpool(alert_states.lease, self._database, item, now + wait):
            return  # another instance is sending it
        found = await run_in_threadpool(alert_states.find, self._database, item.subject)
        if found is None:  # its thresholds were cleared: nothing to tell any more
            await run_in_threadpool(alert_states.delivered, self._database, item, now)
            return
        try:
            urls = await run_in_threadpool(
                alerts.notification_urls, self._database, self.cipher, item.user_id
            )
        except Exception as exc:  # no secret key, or another one: the URLs cannot be read
            log.error("alerts: the URLs of user %d cannot be read (%s)", item.user_id, exc)
            return
        message = compose(found, item.level, item.announced)
        # With no URL there is nobody to tell: the level counts as announced.
        if not urls or await self._notifier.send(urls, message):
            await run_in_threadpool(alert_states.delivered, self._database, item, now)
            log.info("alerts: %s %s told (%d URL(s))", item.subject, item.level, len(urls))
        else:
            log.warning("alerts: %s %s not delivered; retrying in %d s", item.subject,
                        item.level, wait)  # fmt: skip
