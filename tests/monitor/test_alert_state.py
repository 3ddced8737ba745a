"""The pure alert state machine: records in, record and message out, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from quotaledger.monitor.config import Policy, Thresholds
from quotaledger.monitor.state import (
    Decision,
    Failure,
    Kind,
    Reading,
    Record,
    State,
    decide,
    delivered,
    level_of,
)

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
USD = Thresholds("USD", warn=Decimal(20), critical=Decimal(5))
POLICY = Policy(repeat=timedelta(hours=6), unknown_after=3, recovery_margin=Decimal("0.10"))


class Account:
    """Feeds observations through `decide`, delivering every message at once."""

    def __init__(self, thresholds: Thresholds = USD, policy: Policy = POLICY) -> None:
        self.record, self.now = Record(), T0
        self.thresholds, self.policy = thresholds, policy
        self.sent: list[tuple[Kind, State, State | None]] = []

    def see(self, usd: str | int | None, *, after: timedelta = timedelta(minutes=5)) -> Decision:
        self.now += after
        observation = Failure("HTTP 502") if usd is None else Reading(Decimal(usd))
        decision = decide(self.record, observation, self.thresholds, self.policy, self.now)
        self.record = decision.record
        if decision.event is not None:
            event = decision.event
            self.sent.append((event.kind, event.state, event.previous))
            self.record = delivered(self.record, self.now)
        return decision


def test_the_first_healthy_reading_sends_nothing() -> None:
    account = Account()
    assert account.see(50).event is None
    assert account.record.announced is State.OK


def test_a_first_reading_already_low_alerts() -> None:
    account = Account()
    account.see(10)
    assert account.sent == [(Kind.ALERT, State.WARNING, None)]


def test_thresholds_count_at_or_below() -> None:
    assert level_of(Decimal(20), USD, None, Decimal("0.1")) is State.WARNING
    assert level_of(Decimal("20.01"), USD, None, Decimal("0.1")) is State.OK
    assert level_of(Decimal(5), USD, None, Decimal("0.1")) is State.CRITICAL


@pytest.mark.parametrize(
    ("previous", "usd", "expected"),
    [
        (State.WARNING, "21.99", State.WARNING),  # not yet 10 % above $20
        (State.WARNING, "22.01", State.OK),
        (State.CRITICAL, "5.40", State.CRITICAL),  # not yet 10 % above $5
        (State.CRITICAL, "5.60", State.WARNING),
        (State.CRITICAL, "21", State.WARNING),  # above $20, but not by the margin
        (State.CRITICAL, "30", State.OK),
        (State.OK, "19.99", State.WARNING),  # getting worse needs no margin
    ],
)
def test_recovery_needs_the_margin_above_the_threshold(
    previous: State, usd: str, expected: State
) -> None:
    assert level_of(Decimal(usd), USD, previous, Decimal("0.10")) is expected


def test_recovery_never_moves_to_a_worse_level_when_thresholds_are_close() -> None:
    close = Thresholds("USD", warn=Decimal(20), critical=Decimal(19))
    assert level_of(Decimal("20.5"), close, State.WARNING, Decimal("0.10")) is State.WARNING


def test_a_negative_balance_is_critical_even_without_thresholds() -> None:
    assert level_of(Decimal("-0.01"), Thresholds(), None, Decimal(0)) is State.CRITICAL
    assert level_of(Decimal(0), Thresholds(), None, Decimal(0)) is State.OK


def test_critical_supersedes_warning_in_one_message() -> None:
    account = Account()
    account.see(50)
    account.see(3)
    account.see(2)
    assert account.sent == [(Kind.ALERT, State.CRITICAL, State.OK)]


def test_recovery_sends_resolved_naming_the_state_left() -> None:
    account = Account()
    account.see(50)
    account.see(3)
    account.see(100)
    assert account.sent[-1] == (Kind.RESOLVED, State.OK, State.CRITICAL)


def test_reminders_repeat_every_interval_while_low() -> None:
    account = Account()
    account.see(10)
    account.see(10, after=timedelta(hours=5, minutes=59))
    account.see(10, after=timedelta(minutes=1))
    account.see(10, after=timedelta(hours=6))
    assert [kind for kind, _, _ in account.sent] == [Kind.ALERT, Kind.REMINDER, Kind.REMINDER]


def test_reminders_can_be_switched_off() -> None:
    account = Account(policy=Policy(repeat=None))
    account.see(10)
    account.see(10, after=timedelta(days=30))
    assert len(account.sent) == 1


def test_failures_below_the_limit_keep_the_state_and_say_nothing() -> None:
    account = Account()
    account.see(10)
    account.see(None)
    account.see(None)
    assert account.record.state is State.WARNING
    assert account.record.failures == 2
    assert len(account.sent) == 1


def test_the_limit_of_failures_makes_one_unknown_alert() -> None:
    account = Account()
    account.see(50)
    for _ in range(5):
        account.see(None)
    assert account.sent == [(Kind.ALERT, State.UNKNOWN, State.OK)]
    assert account.record.last_error == "HTTP 502"


def test_unknown_after_is_configurable() -> None:
    account = Account(policy=Policy(unknown_after=1))
    account.see(None)
    assert account.sent == [(Kind.ALERT, State.UNKNOWN, None)]


def test_a_reading_after_unknown_reports_the_balance_state() -> None:
    account = Account()
    account.see(50)
    for _ in range(3):
        account.see(None)
    account.see(10)
    assert account.sent[-1] == (Kind.ALERT, State.WARNING, State.UNKNOWN)


def test_an_undelivered_message_is_decided_again_at_the_next_poll() -> None:
    record = decide(Record(), Reading(Decimal(10)), USD, POLICY, T0).record
    again = decide(record, Reading(Decimal(10)), USD, POLICY, T0 + timedelta(minutes=5))
    assert again.event is not None and again.event.kind is Kind.ALERT
    assert again.event.since == T0


def test_a_state_back_to_the_announced_one_before_delivery_sends_nothing() -> None:
    account = Account()
    account.see(10)
    record = decide(account.record, Reading(Decimal(3)), USD, POLICY, T0 + timedelta(hours=1))
    assert record.event is not None  # CRITICAL, but the message is not delivered...
    back = decide(record.record, Reading(Decimal(10)), USD, POLICY, T0 + timedelta(hours=2))
    assert back.event is None  # ...and the account is WARNING again, as last announced


ZERO = Thresholds("USD", warn=Decimal(10), critical=Decimal(0))


@pytest.mark.parametrize(
    ("thresholds", "previous", "usd", "expected"),
    [
        (ZERO, State.CRITICAL, "0.01", State.CRITICAL),  # 10 % of $0 is no margin at all
        (ZERO, State.CRITICAL, "0.49", State.CRITICAL),
        (ZERO, State.CRITICAL, "0.51", State.WARNING),
        (Thresholds(), State.CRITICAL, "0.10", State.CRITICAL),  # back from negative
        (Thresholds(), State.CRITICAL, "0.50", State.OK),
        (USD, State.WARNING, "21.99", State.WARNING),  # 10 % of $20 is above the minimum
        (Thresholds("USD", warn=Decimal(1)), State.WARNING, "1.40", State.WARNING),
        (Thresholds("USD", warn=Decimal(1)), State.WARNING, "1.51", State.OK),
    ],
)
def test_the_recovery_margin_is_at_least_50_cents(
    thresholds: Thresholds, previous: State, usd: str, expected: State
) -> None:
    assert level_of(Decimal(usd), thresholds, previous, Decimal("0.10")) is expected


def test_a_balance_hovering_around_zero_alerts_once() -> None:
    account = Account(thresholds=Thresholds())
    account.see(5)
    for usd in ["-0.01", "0.02", "-0.03", "0.10", "-0.01", "0.30"]:
        account.see(usd)
    assert account.sent == [(Kind.ALERT, State.CRITICAL, State.OK)]
    account.see("0.60")
    assert account.sent[-1] == (Kind.RESOLVED, State.OK, State.CRITICAL)


def test_a_recovery_margin_of_zero_means_no_hysteresis() -> None:
    assert level_of(Decimal("0.01"), ZERO, State.CRITICAL, Decimal(0)) is State.WARNING
    assert level_of(Decimal("0"), Thresholds(), State.CRITICAL, Decimal(0)) is State.OK
