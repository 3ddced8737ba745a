"""Burn rate and "runs out in" forecast from the poll history, pure.

Consumption comes from the cumulative usage counter (`used`), so top-ups and refunds do not
distort it. Providers without a counter fall back to balance decreases, ignoring increases
(top-ups). Two windows (24 h and 7 d) give two rates; their spread is the forecast's range.
No window gives a rate until its polls are numerous enough and span enough time.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from quotaledger.monitor.durations import DAY, HOUR, plural


@dataclass(frozen=True)
class Sample:
    """One successful poll: remaining balance and, if known, cumulative usage (same currency)."""

    at: datetime
    amount: Decimal
    used: Decimal | None = None


@dataclass(frozen=True)
class Window:
    length: timedelta
    min_span: timedelta  # the polls in the window must cover at least this much time
    min_points: int = 3


WINDOWS = (
    Window(timedelta(hours=24), min_span=timedelta(hours=2)),
    Window(timedelta(days=7), min_span=timedelta(days=2)),
)


@dataclass(frozen=True)
class Forecast:
    """Burn rates (currency per day, one per window with enough data) and when the balance
    reaches zero at the fastest and slowest of them (None: not burning)."""

    rates: tuple[float, ...]
    remaining: Decimal
    soonest: datetime | None
    latest: datetime | None

    @property
    def rate(self) -> float:
        """The most recent window's rate: what the account burns now."""
        return self.rates[0]


def consumption(earlier: Sample, later: Sample) -> Decimal:
    """What was spent between two polls, never negative."""
    if earlier.used is not None and later.used is not None and later.used >= earlier.used:
        return later.used - earlier.used
    # No counter (or it was reset): a decrease of the balance is spending, an increase a top-up.
    return max(Decimal(0), earlier.amount - later.amount)


def burn_rate(samples: Sequence[Sample], window: Window, now: datetime) -> float | None:
    """Spending per day over `window` before `now`, or None without enough data."""
    inside = [s for s in samples if now - window.length <= s.at <= now]
    if len(inside) < window.min_points:
        return None
    span = inside[-1].at - inside[0].at
    if span < window.min_span:
        return None
    spent = sum((consumption(a, b) for a, b in itertools.pairwise(inside)), Decimal(0))
    return float(spent) / (span.total_seconds() / DAY)


def forecast(
    samples: Sequence[Sample], now: datetime, windows: Sequence[Window] = WINDOWS
) -> Forecast | None:
    """The forecast from `samples` (oldest first), or None until there is enough data."""
    rates = tuple(r for w in windows if (r := burn_rate(samples, w, now)) is not None)
    if not rates:
        return None
    last = samples[-1]
    positive = [r for r in rates if r > 0]
    if last.amount <= 0:
        return Forecast(rates, last.amount, last.at, last.at)
    if not positive:
        return Forecast(rates, last.amount, None, None)
    days = [float(last.amount) / r for r in positive]
    return Forecast(
        rates,
        last.amount,
        last.at + timedelta(days=min(days)),
        last.at + timedelta(days=max(days)),
    )


def describe(result: Forecast | None, now: datetime) -> str:
    """`"runs out in about 4-6 days (around 2026-12-01 UTC)"`, or why there is none."""
    if result is None:
        return "no forecast yet (too little history)"
    if result.soonest is None or result.latest is None:
        return "not burning: no run-out forecast"
    if result.remaining <= 0:
        return "already ran out"
    if result.soonest <= now:
        # Stale: no successful poll for a while, and at the recent rate the money is gone.
        when = f"{result.soonest:%Y-%m-%d %H:%M}"
        return f"may have run out already (around {when} UTC at the recent rate)"
    middle = result.soonest + (result.latest - result.soonest) / 2
    day_level = _unit(result.soonest - now)[0] == "day"
    when = f"{middle:%Y-%m-%d}" if day_level else f"{middle:%Y-%m-%d %H:%M}"
    return f"runs out in about {runs_out_in(result, now)} (around {when} UTC)"


def runs_out_in(result: Forecast | None, now: datetime) -> str:
    """`"4-6 days"`, `"about 5 hours"`-style span; `"—"` without a forecast."""
    if result is None:
        return "—"
    if result.soonest is None or result.latest is None:
        return "not burning"
    if result.remaining <= 0:
        return "ran out"
    if result.soonest <= now:
        return "may be out"
    unit, size = _unit(result.soonest - now)
    first = max(1, round((result.soonest - now).total_seconds() / size))
    last = max(first, round((result.latest - now).total_seconds() / size))
    return plural(first, unit) if first == last else f"{first}\u2013{plural(last, unit)}"


def _unit(delta: timedelta) -> tuple[str, int]:
    seconds = delta.total_seconds()
    if seconds >= 2 * DAY:
        return "day", DAY
    return ("hour", HOUR) if seconds >= 2 * HOUR else ("minute", 60)
