"""`keep_history`: opt-in retention of the polls (by default every poll is kept, SPEC §7).
Old polls go at the first round and then once a day; an account's latest poll and latest
successful poll always stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from monitor_support import Relay, Rig, Webhook, account_toml, defaults_toml

from quotaledger.monitor.config import load_config
from quotaledger.monitor.history import History, Poll
from quotaledger.monitor.notify import check_url
from quotaledger.monitor.tomlsource import ConfigError

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CONFIG = """\
[defaults]
notify = []
{extra}
[[account]]
name = "prod"
base_url = "https://api.example.com"
token_env = "PROD_TOKEN"
warn_usd = 20
"""


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "watch.toml"
    path.write_text(CONFIG.format(extra=extra), encoding="utf-8")
    return path


def test_every_poll_is_kept_unless_keep_history_is_set(tmp_path: Path) -> None:
    assert load_config(_config(tmp_path), check_url=check_url).keep_history is None
    written = load_config(_config(tmp_path, 'keep_history = "400d"'), check_url=check_url)
    assert written.keep_history == timedelta(days=400)
    forever = load_config(_config(tmp_path, 'keep_history = "forever"'), check_url=check_url)
    assert forever.keep_history is None


def test_a_history_shorter_than_the_forecasts_week_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_config(tmp_path, 'keep_history = "3d"'), check_url=check_url)
    assert caught.value.line == 3
    assert "keep_history: '3d' is under 7 days" in str(caught.value)


def test_prune_keeps_recent_polls_and_the_latest_good_one(tmp_path: Path) -> None:
    ok = [Poll("prod", T0 + timedelta(days=day), Decimal(day), "USD") for day in (0, 10)]
    failed = [Poll("prod", T0 + timedelta(days=day), error="HTTP 502") for day in (20, 30)]
    other = Poll("dev", T0, Decimal(1), "USD")
    with History(tmp_path / "state.sqlite3") as history:
        for poll in (*ok, *failed, other):
            history.save(poll.account, None, poll)

        removed = history.prune("prod", T0 + timedelta(days=25))

        assert removed == 2  # day 0 (ok, not the latest good one) and day 20 (failed)
        assert [p.at for p in history.polls("prod")] == [ok[1].at, failed[1].at]
        assert history.last_success("prod") == ok[1]
        assert history.polls("dev") == [other]  # another account is left alone
        assert history.prune("prod", T0 + timedelta(days=25)) == 0


async def test_the_watcher_drops_old_polls_at_its_first_round_then_daily(
    rig_factory: Any, relay: Relay, webhook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig: Rig = await rig_factory(
        defaults_toml(webhook.url, keep_history="7d") + account_toml(relay)
    )
    history = rig.history
    assert history is not None
    cutoffs: list[datetime] = []
    prune = history.prune

    def counted(account: str, before: datetime) -> int:
        cutoffs.append(before)
        return prune(account, before)

    monkeypatch.setattr(history, "prune", counted)
    for _ in range(3):  # one round a day: a prune each day
        await rig.poll(days=1)
    for _ in range(3):  # more rounds the same day: no more prunes
        await rig.poll(minutes=5)
    assert len(cutoffs) == 3 and len(history.polls("prod")) == 6

    await rig.poll(days=8)

    assert cutoffs[-1] == rig.clock() - timedelta(days=7)
    assert [p.at for p in history.polls("prod")] == [rig.clock()]  # the week-old six went
