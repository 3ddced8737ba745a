"""Burn rate and run-out forecast on synthetic histories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from quotaledger.monitor.forecast import WINDOWS, Sample, burn_rate, describe, forecast, runs_out_in

START = datetime(2026, 11, 1, tzinfo=UTC)


def history(
    days: float,
    per_day: float,
    *,
    start_usd: float = 100,
    every: timedelta = timedelta(hours=1),
    counter: bool = True,
) -> list[Sample]:
    """Polls every `every` for `days`, spending `per_day` evenly."""
    samples, moment, spent = [], START, 0.0
    while moment <= START + timedelta(days=days):
        elapsed = (moment - START).total_seconds() / 86_400
        spent = per_day * elapsed
        used = Decimal(f"{spent:.6f}") if counter else None
        samples.append(Sample(moment, Decimal(f"{start_usd - spent:.6f}"), used))
        moment += every
    return samples


def test_a_steady_burn_gives_one_rate_and_a_tight_forecast() -> None:
    samples = history(days=8, per_day=5, start_usd=100)  # $60 left after 8 days
    now = samples[-1].at
    result = forecast(samples, now)
    assert result is not None
    assert result.rates == pytest.approx((5.0, 5.0))
    assert describe(result, now) == "runs out in about 12 days (around 2026-11-21 UTC)"


def test_a_recent_burst_widens_the_range_between_the_two_windows() -> None:
    slow = history(days=7, per_day=2, start_usd=100)  # $86 left
    burst_start = slow[-1].at
    burst = [
        Sample(burst_start + timedelta(hours=h), Decimal(86 - h / 2), Decimal(14 + h / 2))
        for h in range(1, 25)
    ]  # $12 spent in the last day
    samples = slow + burst
    now = samples[-1].at
    result = forecast(samples, now)
    assert result is not None
    short, long = result.rates
    assert short == pytest.approx(12.0)
    assert 2 < long < 12
    assert result.soonest is not None and result.latest is not None
    assert result.soonest - now == timedelta(days=74 / 12)  # $74 at the burst's rate
    assert runs_out_in(result, now) == "6\u201322 days"  # $74 at $12/day and at $24/7 days


def test_a_top_up_does_not_distort_the_rate_from_the_usage_counter() -> None:
    samples = history(days=1, per_day=24)
    topped = [
        Sample(s.at, s.amount + (50 if s.at >= START + timedelta(hours=12) else 0), s.used)
        for s in samples
    ]
    assert burn_rate(topped, WINDOWS[0], topped[-1].at) == pytest.approx(24.0)


def test_without_a_usage_counter_balance_decreases_count_and_top_ups_are_ignored() -> None:
    samples = history(days=1, per_day=24, counter=False)
    topped = [
        Sample(s.at, s.amount + (50 if s.at >= START + timedelta(hours=12) else 0)) for s in samples
    ]
    assert burn_rate(samples, WINDOWS[0], samples[-1].at) == pytest.approx(24.0)
    # The top-up is not counted as negative spending; only the hour it hides is lost.
    assert burn_rate(topped, WINDOWS[0], topped[-1].at) == pytest.approx(23.0)


def test_a_reset_usage_counter_falls_back_to_the_balance() -> None:
    samples = history(days=1, per_day=24)
    reset = [
        Sample(
            s.at,
            s.amount,
            s.used - 100 if s.used and s.at >= START + timedelta(hours=6) else s.used,
        )
        for s in samples
    ]
    assert burn_rate(reset, WINDOWS[0], reset[-1].at) == pytest.approx(24.0)


@pytest.mark.parametrize(
    "samples",
    [
        [],
        history(days=1, per_day=5)[:2],  # two polls
        history(days=1, per_day=5, every=timedelta(minutes=5))[:20],  # 95 minutes
    ],
    ids=["no polls", "two polls", "too short a span"],
)
def test_too_little_data_gives_no_forecast(samples: list[Sample]) -> None:
    now = samples[-1].at if samples else START
    assert forecast(samples, now) is None
    assert describe(None, now) == "no forecast yet (too little history)"


def test_only_the_short_window_counts_until_the_long_one_has_two_days() -> None:
    samples = history(days=1, per_day=5)
    result = forecast(samples, samples[-1].at)
    assert result is not None and result.rates == pytest.approx((5.0,))


def test_an_idle_account_is_not_burning() -> None:
    samples = history(days=3, per_day=0)
    result = forecast(samples, samples[-1].at)
    assert describe(result, samples[-1].at) == "not burning: no run-out forecast"


def test_an_empty_account_has_already_run_out() -> None:
    samples = history(days=1, per_day=120, start_usd=100)
    result = forecast(samples, samples[-1].at)
    assert describe(result, samples[-1].at) == "already ran out"


def test_old_polls_outside_both_windows_are_ignored() -> None:
    old = history(days=3, per_day=50)
    recent = [
        Sample(s.at + timedelta(days=30), s.amount - 200, s.used)
        for s in history(days=1, per_day=5)
    ]
    samples = old + recent
    result = forecast(samples, samples[-1].at)
    assert result is not None and result.rates == pytest.approx((5.0,))


def test_a_forecast_from_old_polls_says_the_money_may_be_gone() -> None:
    samples = history(days=1, per_day=48, start_usd=60)  # $12 left, half a day at this rate
    later = samples[-1].at + timedelta(days=1)
    result = forecast(samples, samples[-1].at)
    assert runs_out_in(result, later) == "may be out"
    assert describe(result, later) == (
        "may have run out already (around 2026-11-02 06:00 UTC at the recent rate)"
    )
