"""SPEC §12's per-key alerts on the server: a key's thresholds watch what it may still
spend, its remaining budget and what its period still allows, whichever is less."""

from __future__ import annotations

import test_alert_watch as alert_watch_tests
from test_alert_watch import DOLLAR, open_account, spend

from alert_inbox import Inbox
from quotaledger.alerting import alerts
from quotaledger.alerting.alerts import Thresholds, spendable
from quotaledger.server.alert_watch import AlertWatch
from quotaledger.store.database import Database

# The alert watch tests' fixtures, used here by name.
inbox = alert_watch_tests.inbox
watch = alert_watch_tests.watch


async def test_an_unlimited_key_with_a_daily_limit_is_alerted_on_what_the_day_allows(
    database: Database,
    watch: AlertWatch,
    inbox: Inbox,
) -> None:
    who = open_account(database, watch, inbox, 100 * DOLLAR, period="day",
                       period_quota=10 * DOLLAR)  # fmt: skip
    alerts.set_key_thresholds(database, who.user_id, who.key_id, Thresholds(4 * DOLLAR, None))
    watch.changed(who.user_id)
    await watch.run_once()
    spend(database, watch, who, 7 * DOLLAR)
    await watch.run_once()
    assert inbox.titles() == ['WARNING: API key "laptop" is running low']
    assert "$3.00 (1,500,000 quota) of its budget left" in inbox.received[0]["message"]
    [listed] = alerts.get_settings(database, who.user_id).keys
    assert listed.remain_quota == 3 * DOLLAR


async def test_a_limited_key_is_alerted_on_its_period_when_the_period_is_tighter(
    database: Database,
    watch: AlertWatch,
    inbox: Inbox,
) -> None:
    who = open_account(database, watch, inbox, 100 * DOLLAR, quota=50 * DOLLAR,
                       period="month", period_quota=5 * DOLLAR)  # fmt: skip
    alerts.set_key_thresholds(database, who.user_id, who.key_id, Thresholds(None, 2 * DOLLAR))
    watch.changed(who.user_id)
    await watch.run_once()
    spend(database, watch, who, 4 * DOLLAR)  # 46 of the budget left, 1 of the month
    await watch.run_once()
    assert inbox.titles() == ['CRITICAL: API key "laptop" is running low']


def test_what_a_key_may_spend_is_the_least_of_its_budget_and_its_period() -> None:
    day = 1_800_000_000 - 1_800_000_000 % 86_400
    assert spendable((500, False, None, None, 0, 0), day) == 500
    assert spendable((0, True, "day", 300, 100, day), day + 10) == 200
    assert spendable((150, False, "day", 300, 100, day), day + 10) == 150
    assert spendable((150, False, "day", 300, 290, day - 86_400), day + 10) == 150  # new day
