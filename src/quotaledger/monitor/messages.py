"""The words of each notification: short, and everything needed to act on it.

Account, balance in money and quota, the threshold crossed, burn rate and forecast, time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from quotaledger.client.balance import format_money
from quotaledger.monitor.config import AccountConfig
from quotaledger.monitor.forecast import Forecast, describe
from quotaledger.monitor.history import Poll
from quotaledger.monitor.state import SEVERITY, Event, Kind, Record, State


@dataclass(frozen=True)
class Alert:
    """One account's event with what is known around it."""

    account: AccountConfig
    event: Event
    poll: Poll  # this poll (a failure, for UNKNOWN)
    last_good: Poll | None  # the latest successful poll, possibly this one
    forecast: Forecast | None
    record: Record  # the account's record after this poll
    now: datetime


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    level: State  # decides the notification's colour/icon


def compose(alert: Alert) -> Message:
    """The message for one account's event."""
    return Message(f"[quotaledger] {_title(alert)}", _body(alert), _level(alert))


def digest(alerts: Sequence[Alert]) -> Message:
    """One message for several accounts' events of the same poll."""
    if len(alerts) == 1:
        return compose(alerts[0])
    names = ", ".join(_short(a) for a in alerts)
    body = "\n\n".join(_body(a) for a in alerts)
    level = max((_level(a) for a in alerts), key=SEVERITY.__getitem__)
    return Message(f"[quotaledger] {len(alerts)} accounts: {names}", body, level)


def test_message(now: datetime) -> Message:
    body = f"Test notification from quotaledger at {stamp(now)}. Alerts will arrive like this."
    return Message("[quotaledger] test notification", body, State.OK)


def money(amount: Decimal, currency: str) -> str:
    return format_money(amount, currency)


def balance_text(poll: Poll) -> str:
    """`$18.40 left (9,200,000 quota)`; a key's `$4.20 left (2,100,000 quota) on key laptop`."""
    if poll.amount is None or poll.currency is None:
        return "balance unknown"
    quota = f" ({poll.quota:,} quota)" if poll.quota is not None else ""
    watched = f" on {poll.watched}" if poll.watched else ""
    return f"{money(poll.amount, poll.currency)} left{quota}{watched}"


def rate_text(forecast: Forecast | None, currency: str) -> str:
    if forecast is None:
        return "burn rate unknown yet"
    rate = Decimal(f"{forecast.rate:.2f}")
    if 0 < forecast.rate < 0.01:
        return f"burn under {money(Decimal('0.01'), currency)}/day"
    return f"burn {money(rate, currency)}/day"


def stamp(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _short(alert: Alert) -> str:
    return f"{alert.account.name} {alert.event.state}"


def _level(alert: Alert) -> State:
    return alert.event.state


def _title(alert: Alert) -> str:
    name, event = alert.account.name, alert.event
    if event.kind is Kind.RESOLVED:
        return f"{name} OK again: {balance_text(alert.poll)}"
    if event.kind is Kind.REMINDER:
        return f"reminder: {name} still {event.state}"
    if event.state is State.UNKNOWN:
        return f"{name} UNKNOWN: balance cannot be read"
    return f"{name} {event.state}: {balance_text(alert.poll)}"


def _body(alert: Alert) -> str:
    lines = [_headline(alert)]
    good = alert.last_good
    if good is not None and good.currency is not None:
        rate = rate_text(alert.forecast, good.currency)
        lines.append(f"{rate[0].upper()}{rate[1:]}; {describe(alert.forecast, alert.now)}.")
    lines.append(f"Checked {stamp(alert.now)}.")
    return "\n".join(lines)


def _headline(alert: Alert) -> str:
    name, event = alert.account.name, alert.event
    if event.kind is Kind.REMINDER:
        subject = f"Reminder: {name} still {event.state} since {stamp(event.since)}"
    else:
        was = f" (was {event.previous})" if event.previous not in (None, State.OK) else ""
        subject = f"{name} is {'OK again' if event.state is State.OK else event.state}{was}"
    if event.state is State.UNKNOWN:
        return f"{subject}: {_unknown(alert)}"
    threshold = _threshold(alert, above=event.state is State.OK)
    return f"{subject}: {balance_text(alert.poll)}{threshold}."


def _unknown(alert: Alert) -> str:
    error = (alert.record.last_error or "no reason given").rstrip(".")
    text = f"{alert.record.failures} polls in a row failed; last error: {error}."
    good = alert.last_good
    if good is not None:
        text += f"\nLast known: {balance_text(good)} at {stamp(good.at)}."
    return text


def _threshold(alert: Alert, *, above: bool) -> str:
    thresholds, poll = alert.account.thresholds, alert.poll
    if poll.amount is not None and poll.amount < 0 and not above:
        return ", a negative balance: debits overshot it"
    value, label = thresholds.warn, "warning"
    if alert.event.state is State.CRITICAL or value is None:
        value, label = thresholds.critical, "critical"
    if value is None:
        return ""
    relation = "above" if above else "at or below"
    return f", {relation} the {label} threshold {money(value, thresholds.currency)}"
