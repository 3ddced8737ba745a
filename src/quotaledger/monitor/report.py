"""What `status` and `history` show: from the stored history only, never a live poll."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from quotaledger.client.printable import printable
from quotaledger.monitor.config import AccountConfig, WatchConfig
from quotaledger.monitor.durations import humanize
from quotaledger.monitor.forecast import WINDOWS, Forecast, forecast, runs_out_in
from quotaledger.monitor.history import History, Poll
from quotaledger.monitor.messages import money, rate_text
from quotaledger.monitor.state import Record, State

_BARS = "▁▂▃▄▅▆▇█"
_STYLES = {
    State.OK: "green",
    State.WARNING: "yellow",
    State.CRITICAL: "bold red",
    State.UNKNOWN: "magenta",
}
TREND_POINTS = 12


@dataclass(frozen=True)
class AccountStatus:
    account: AccountConfig
    record: Record
    last_poll: Poll | None
    last_good: Poll | None
    forecast: Forecast | None
    trend: tuple[Decimal, ...]  # balances of the last successful polls, oldest first

    @property
    def state(self) -> str:
        return self.record.state.value if self.record.state is not None else "PENDING"


def collect(config: WatchConfig, history: History, now: datetime) -> list[AccountStatus]:
    """Every configured account's status as of `now`."""
    return [_status(account, history, now) for account in config.accounts]


def _status(account: AccountConfig, history: History, now: datetime) -> AccountStatus:
    longest = max(window.length for window in WINDOWS)
    samples = history.samples(account.name, since=now - longest)
    recent = history.polls(account.name, limit=TREND_POINTS)
    return AccountStatus(
        account,
        history.record(account.name),
        recent[-1] if recent else None,
        history.last_success(account.name),
        forecast(samples, now) if samples else None,
        tuple(p.amount for p in recent if p.amount is not None),
    )


def sparkline(values: Sequence[Decimal]) -> str:
    """`▁▃▅█`-style bars, scaled between the smallest and largest value."""
    if not values:
        return ""
    low, high = min(values), max(values)
    if high == low:
        return _BARS[-1] * len(values)
    steps = len(_BARS) - 1
    return "".join(_BARS[int((v - low) / (high - low) * steps)] for v in values)


def status_table(statuses: Sequence[AccountStatus], now: datetime) -> Table:
    """Account, state, balance, burn, "runs out in", trend and last poll: fits 80 columns."""
    table = Table(box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    for column in ("Account", "State", "Balance", "Burn/day", "Runs out", "Trend", "Polled"):
        table.add_column(column, justify="right" if column == "Balance" else "left", no_wrap=True)
    for status in statuses:
        table.add_row(*_cells(status, now))
    return table


def _cells(status: AccountStatus, now: datetime) -> list[str | Text]:
    good, last = status.last_good, status.last_poll
    style = _STYLES[status.record.state] if status.record.state is not None else "dim"
    balance = "—"
    if good is not None and good.amount is not None and good.currency is not None:
        balance = money(good.amount, good.currency)
    burn = "—"
    if status.forecast is not None and good is not None and good.currency is not None:
        burn = rate_text(status.forecast, good.currency).removeprefix("burn ").removesuffix("/day")
    seen = "never"
    if last is not None:
        age = now - last.at
        seen = "just now" if age.total_seconds() < 60 else f"{humanize(age)} ago"
        seen += "" if last.ok else " (failed)"
    name = status.account.name
    if good is not None and good.watched:  # the last balance is a key's, or behind a key
        name += f"\n{good.watched}"
    return [
        Text(name),  # never markup: the key's name is the server's text
        Text(status.state, style=style),
        balance,
        burn,
        runs_out_in(status.forecast, now),
        sparkline(status.trend),
        seen,
    ]


def status_json(statuses: Sequence[AccountStatus], now: datetime) -> list[dict[str, Any]]:
    return [_status_json(status, now) for status in statuses]


def _status_json(status: AccountStatus, now: datetime) -> dict[str, Any]:
    good, record, prediction = status.last_good, status.record, status.forecast
    thresholds = status.account.thresholds
    return {
        "name": status.account.name,
        "provider": status.account.provider,
        "state": status.state,
        "since": _iso(record.since),
        "balance": poll_json(good) if good else None,
        "warn": _str(thresholds.warn),
        "critical": _str(thresholds.critical),
        "currency": thresholds.currency,
        "failures": record.failures,
        "last_error": record.last_error,
        "last_poll": _iso(status.last_poll.at) if status.last_poll else None,
        "burn_per_day": prediction.rate if prediction else None,
        "runs_out": _forecast_json(prediction, now),
        "trend": [str(value) for value in status.trend],
    }


def _forecast_json(prediction: Forecast | None, now: datetime) -> dict[str, Any] | None:
    if prediction is None:
        return None
    return {
        "soonest": _iso(prediction.soonest),
        "latest": _iso(prediction.latest),
        "text": runs_out_in(prediction, now),
        "rates_per_day": list(prediction.rates),
    }


def poll_json(poll: Poll) -> dict[str, Any]:
    return {
        "at": _iso(poll.at),
        "amount": _str(poll.amount),
        "currency": poll.currency,
        "usd": _str(poll.amount) if poll.currency == "USD" else None,
        "quota": poll.quota,
        "used_quota": poll.used_quota,
        "request_count": poll.request_count,
        "error": poll.error,
        "watched": poll.watched,
    }


def history_table(name: str, polls: Sequence[Poll]) -> Table:
    """One row per poll; an account that watches a key gets an `Of` column: what each
    balance was of (`key laptop`, `the account (key laptop is unlimited)`)."""
    table = Table(title=f"{name}: polls")
    keyed = any(poll.watched for poll in polls)
    columns: tuple[str, ...] = ("Time (UTC)", "Balance", "Quota", "Used quota", "Requests", "Error")
    if keyed:
        columns = (*columns[:2], "Of", *columns[2:])
    for column in columns:
        left = column in {"Time (UTC)", "Error", "Of"}
        table.add_column(column, justify="left" if left else "right")
    for poll in polls:
        balance = (
            money(poll.amount, poll.currency) if poll.amount is not None and poll.currency else "—"
        )
        cells: list[str | Text] = [
            f"{poll.at:%Y-%m-%d %H:%M:%S}", balance, _int(poll.quota), _int(poll.used_quota),
            _int(poll.request_count), Text(printable(poll.error or "")),  # never markup
        ]  # fmt: skip
        if keyed:
            cells.insert(2, Text(poll.watched or ""))
        table.add_row(*cells)
    return table


def _int(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _str(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
