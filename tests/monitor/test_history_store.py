"""The state file (SQLite), the duration syntax and the sparkline."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from quotaledger.monitor.durations import humanize, parse_duration
from quotaledger.monitor.history import History, Poll
from quotaledger.monitor.report import sparkline
from quotaledger.monitor.state import Record, State

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def test_polls_and_records_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    record = Record(State.WARNING, State.WARNING, T0, 1, "HTTP 502", State.WARNING, T0)
    poll = Poll("prod", T0, Decimal("18.123456"), "USD", 9_061_728, 5, Decimal("0.00001"), 3)
    with History(path) as history:
        history.save("prod", record, poll)
    with History(path) as history:
        assert history.record("prod") == record
        assert history.polls("prod") == [poll]
        assert history.record("other") == Record()


def test_the_state_file_uses_write_ahead_logging(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    History(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_polls_come_oldest_first_and_limit_keeps_the_latest(tmp_path: Path) -> None:
    with History(tmp_path / "state.sqlite3") as history:
        for minute in range(5):
            at = T0 + timedelta(minutes=minute)
            history.save("prod", Record(), Poll("prod", at, Decimal(minute), "USD"))
        history.save("prod", Record(), Poll("prod", T0 + timedelta(minutes=9), error="HTTP 502"))
        latest = history.polls("prod", limit=3)
        assert [p.amount for p in latest] == [Decimal(3), Decimal(4), None]
        assert history.last_success("prod") == Poll(
            "prod", T0 + timedelta(minutes=4), Decimal(4), "USD"
        )
        assert len(history.samples("prod", since=T0 + timedelta(minutes=2))) == 3


def test_reading_a_missing_state_file_does_not_create_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run `quotaledger watch` first"):
        History(tmp_path / "missing.sqlite3", create=False)
    assert not (tmp_path / "missing.sqlite3").exists()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("5m", 300), ("6h", 21_600), ("1h30m", 5_400), ("7d", 604_800), (120, 120)],
)
def test_durations_are_read_as_people_write_them(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["5 minutes", "m5", "", "5x", True])
def test_unreadable_durations_are_refused(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_durations_are_shown_in_the_largest_sensible_unit() -> None:
    assert humanize(timedelta(seconds=20)) == "1 minute"
    assert humanize(timedelta(minutes=90)) == "90 minutes"
    assert humanize(timedelta(hours=5)) == "5 hours"
    assert humanize(timedelta(days=3, hours=2)) == "3 days"


def test_the_sparkline_spans_lowest_to_highest() -> None:
    assert sparkline([Decimal(v) for v in (10, 20, 30, 40, 50, 60, 70, 80)]) == "▁▂▃▄▅▆▇█"
    assert sparkline([Decimal(5)] * 3) == "███"
    assert sparkline([]) == ""
