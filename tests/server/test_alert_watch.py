"""Alerts on the server, stepped round by round: real settlements (reserve, then settle) on
SQLite and PostgreSQL, the watch that the server runs (`AlertWatch.run_once`), and real
`json://` notifications to a receiver on 127.0.0.1.

Amounts: 500,000 quota = $1; the recovery margin is 10 % of a threshold, at least $0.50
(250,000 quota). Reserving for a model without a price and settling with a 2xx charges
exactly the reserved amount, so each test spends precise sums."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select, update

from alert_inbox import SECRET_PATH, Inbox, running_inbox
from quotaledger.alerting import alerts
from quotaledger.alerting.alerts import Thresholds
from quotaledger.billing import ledger
from quotaledger.billing.reservations import reserve
from quotaledger.billing.settlement import Outcome, settle
from quotaledger.identity import accounts, keys
from quotaledger.identity.keys import KeyLimits
from quotaledger.server.alert_watch import AlertWatch, Tracked, level
from quotaledger.settings import Secret, Settings
from quotaledger.store.database import Database
from quotaledger.store.tables import alert_settings, alert_states, metadata

SECRET_KEY = "alert-tests-secret-key-of-enough-length"
DOLLAR = 500_000
_ids = itertools.count()


@dataclass
class Account:
    user_id: int
    username: str
    key_id: int


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with running_inbox() as running:
        yield running


@pytest.fixture
def watch(settings: Settings, database: Database) -> AlertWatch:
    allowed = settings.with_overrides(
        secret_key=Secret(SECRET_KEY), alert_allow_hosts=("127.0.0.1",)
    )
    return AlertWatch(database, allowed)


def open_account(
    database: Database, watch: AlertWatch, inbox: Inbox, balance: int, **limits: object
) -> Account:
    name = f"alice{next(_ids)}"
    account = accounts.create_account(database, name, "password-123")
    ledger.top_up(database, name, balance)
    key, _ = keys.create_key(database, account.id, "laptop", KeyLimits(**limits))  # type: ignore[arg-type]
    alerts.add_url(database, watch.cipher, account.id, inbox.url)
    return Account(account.id, name, key.id)


def spend(database: Database, watch: AlertWatch, who: Account, quota: int) -> None:
    """One relayed request costing `quota`, settled, and shown to the watch."""
    request_id = f"req-{next(_ids)}"
    reserve(database, request_id, user_id=who.user_id, key_id=who.key_id,
            model="unpriced", group="default", amount=quota)  # fmt: skip
    watch.settled(settle(database, request_id, who.user_id, Outcome(status=200)))


async def set_thresholds(
    watch: AlertWatch, database: Database, who: Account, warn: int | None, critical: int | None
) -> None:
    alerts.set_thresholds(database, who.user_id, Thresholds(warn, critical))
    watch.changed(who.user_id)
    await watch.run_once()


async def test_a_drop_below_the_warning_threshold_sends_one_alert(
    database: Database, watch: AlertWatch, inbox: Inbox
) -> None:
    who = open_account(database, watch, inbox, 10 * DOLLAR)
    await set_thresholds(watch, database, who, 5 * DOLLAR, None)
    spend(database, watch, who, 4 * DOLLAR)  # $6 left: above
    await watch.run_once()
    assert inbox.received == []
    spend(database, watch, who, 2 * DOLLAR)  # $4: below
    await watch.run_once()
    spend(database, watch, who, DOLLAR)  # $3: still below, no second alert
    await watch.run_once()
    assert len(inbox.received) == 1
    message = inbox.received[0]
    assert message["title"] == f"WARNING: Account {who.username} is running low"
    assert "$4.00 (2,000,000 quota)" in message["message"]
    assert "warning threshold of $5.00" in message["message"]
    assert message["type"] == "warning"


async def test_a_drop_straight_to_critical_sends_one_alert_not_two(
    database: Database, watch: AlertWatch, inbox: Inbox
) -> None:
    who = open_account(database, watch, inbox, 10 * DOLLAR)
    await set_thresholds(watch, database, who, 5 * DOLLAR, 2 * DOLLAR)
    spend(database, watch, who, 9 * DOLLAR)
    await watch.run_once()
    assert inbox.titles() == [f"CRITICAL: Account {who.username} is running low"]


async def test_a_balance_hovering_at_the_threshold_does_not_flap(
    database: Database, watch: AlertWatch, inbox: Inbox
) -> None:
    """Back above the threshold but within the margin ($5.50 for $5) is still WARNING; a
    recovery past the margin is one resolved message, found at the next settlement."""
    who = open_account(database, watch, inbox, 6 * DOLLAR)
    await set_thresholds(watch, database, who, 5 * DOLLAR, None)
    spend(database, watch, who, 2 * DOLLAR)  # $4
    await watch.run_once()
    for _ in range(3):
        ledger.top_up(database, who.username, DOLLAR + DOLLAR // 5)  # $5.20: within the margin
        spend(database, watch, who, DOLLAR // 10)  # $5.10
        await watch.run_once()
        spend(database, watch, who, DOLLAR + DOLLAR // 10)  # $4.00 again
        await watch.run_once()
    assert len(inbox.received) == 1
    ledger.top_up(database, who.username, 2 * DOLLAR)  # $6.00: past $5.50
    spend(database, watch, who, 1)
    await watch.run_once()
    assert inbox.titles()[1:] == [
        f"RESOLVED: Account {who.username} is back above its alert thresholds"
    ]
    assert inbox.received[1]["type"] == "success"


async def test_a_top_up_alone_sends_the_resolved_message_when_checked(
    database: Database, watch: AlertWatch, inbox: Inbox
) -> None:
    """A redemption through the API checks the account at once (`check`); the same check
    runs for every low subject at each refresh."""
    who = open_account(database, watch, inbox, 6 * DOLLAR)
    await set_thresholds(watch, database, who, 5 * DOLLAR, None)
    spend(database, watch, who, 2 * DOLLAR)
    await watch.run_once()
    ledger.top_up(database, who.username, 10 * DOLLAR)
    watch.changed(who.user_id)  # as a refresh does: every low subject is looked at again
    await watch.run_once()
    assert [title.split(":")[0] for title in inbox.titles()] == ["WARNING", "RESOLVED"]


async def test_a_key_crossing_its_threshold_is_told_by_its_name(
    database: Database, watch: AlertWatch, inbox: Inbox
) -> None:
    who = open_account(database, watch, inbox, 100 * DOLLAR, quota=10 * DOLLAR)
    alerts.set_key_thresholds(database, who.user_id, who.key_id, Thresholds(None, 3 * DOLLAR))
    watch.changed(who.user_id)
    await watch.run_once()
    spend(database, watch, who, 8 * DOLLAR)
    await watch.run_once()
    assert inbox.titles() == ['CRITICAL: API key "laptop" is running low']
    assert "$2.00 (1,000,000 quota) of its budget left" in inbox.received[0]["message"]


async def test_an_unlimited_key_has_no_thresholds_of_its_own(
    database: Database, watch: AlertWatch, inbox: Inbox
) -> None:
    who = open_account(database, watch, inbox, DOLLAR)
    with pytest.raises(alerts.InvalidInput, match="unlimited key"):
        alerts.set_key_thresholds(database, who.user_id, who.key_id, Thresholds(DOLLAR, None))


async def test_a_failed_delivery_is_sent_again_later_and_not_lost(
    database: Database, watch: AlertWatch, inbox: Inbox
) -> None:
    who = open_account(database, watch, inbox, 10 * DOLLAR)
    await set_thresholds(watch, database, who, 5 * DOLLAR, None)
    inbox.fail_next = 1
    spend(database, watch, who, 6 * DOLLAR)
    await watch.run_once()
    await watch.run_once()  # the retry waits: nothing sent again yet
    assert inbox.received == []
    with database.write() as connection:  # the retry's time comes
        connection.execute(update(alert_states).values(retry_at=0))
    await watch.run_once()
    assert [title.split(":")[0] for title in inbox.titles()] == ["WARNING"]


async def test_two_instances_seeing_one_crossing_send_one_alert(
    database: Database, settings: Settings, inbox: Inbox
) -> None:
    """Two watches, each on its own connection pool (two instances): both see the same
    settlement, both check and send in the same moment; one message goes out."""
    configured = settings.with_overrides(
        secret_key=Secret(SECRET_KEY), alert_allow_hosts=("127.0.0.1",)
    )
    other_database = Database(database.url)
    first, second = AlertWatch(database, configured), AlertWatch(other_database, configured)
    try:
        who = open_account(database, first, inbox, 10 * DOLLAR)
        alerts.set_thresholds(database, who.user_id, Thresholds(5 * DOLLAR, None))
        for each in (first, second):
            each.changed(who.user_id)
            await each.run_once()
        request_id = f"req-{next(_ids)}"
        reserve(database, request_id, user_id=who.user_id, key_id=who.key_id,
                model="unpriced", group="default", amount=6 * DOLLAR)  # fmt: skip
        settled = settle(database, request_id, who.user_id, Outcome(status=200))
        first.settled(settled)
        second.settled(settled)
        await asyncio.gather(first.run_once(), second.run_once())
        await asyncio.gather(first.run_once(), second.run_once())
    finally:
        other_database.dispose()
    assert len(inbox.received) == 1


async def test_the_url_is_never_stored_in_clear_nor_logged(
    database: Database, watch: AlertWatch, inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    who = open_account(database, watch, inbox, 10 * DOLLAR)
    await set_thresholds(watch, database, who, 5 * DOLLAR, None)
    inbox.fail_next = 1
    spend(database, watch, who, 6 * DOLLAR)
    await watch.run_once()
    with database.write() as connection:
        connection.execute(update(alert_states).values(retry_at=0))
    await watch.run_once()
    assert len(inbox.received) == 1
    assert SECRET_PATH not in caplog.text
    with database.read() as connection:
        everything = [
            str(row)
            for table in metadata.sorted_tables
            for row in connection.execute(select(table))
        ]
        hints = connection.execute(select(alert_settings.c.url_hints)).scalars().all()
    assert not any(SECRET_PATH in row for row in everything)
    assert hints == ['["json://\\u20260451"]']  # the scheme and the last four characters


@given(
    amount=st.integers(-(10**7), 10**8),
    warn=st.none() | st.integers(0, 10**8),
    critical=st.none() | st.integers(0, 10**8),
    previous=st.sampled_from(["OK", "WARNING", "CRITICAL"]),
)
def test_the_settlement_shortcut_agrees_with_the_monitors_rules(
    amount: int, warn: int | None, critical: int | None, previous: str
) -> None:
    """`settled` decides in integers whether an amount may have moved; it must say so
    exactly when the monitor's `level_of` (with its margin) would move."""
    watched = Tracked(Thresholds(warn, critical), previous)
    assert watched.moves(amount) == (
        level(amount, Thresholds(warn, critical), previous) != previous
    )
