"""One round of polls over many accounts: the relay's `/api/status` asked once for all its
accounts, the round stored in one transaction (and, if that commit fails, account by
account), the notify URLs checked once each."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from monitor_support import Relay, Rig, Webhook, account_toml, defaults_toml, write_config

from quotaledger.monitor.config import load_config
from quotaledger.monitor.history import History, Poll
from quotaledger.monitor.state import Record, State

NAMES = [f"acct{i}" for i in range(6)]


def accounts(relay: Relay) -> str:
    return "".join(account_toml(relay, name) for name in NAMES)


async def test_the_status_is_asked_once_for_every_account_of_a_relay(
    rig_factory: Any, relay: Relay, webhook: Webhook
) -> None:
    rig: Rig = await rig_factory(defaults_toml(webhook.url) + accounts(relay))
    results = await rig.poll()
    assert len(relay.authorizations) == len(NAMES) and relay.status_requests == 1
    assert all(r.outcome.poll.ok and r.record.state is State.OK for r in results)
    await rig.poll(minutes=5)
    assert len(relay.authorizations) == 2 * len(NAMES) and relay.status_requests == 1


async def test_a_failing_status_is_asked_once_per_round(
    rig_factory: Any, relay: Relay, webhook: Webhook
) -> None:
    relay.status_failing = 503
    rig: Rig = await rig_factory(defaults_toml(webhook.url) + accounts(relay))
    await rig.poll()
    assert relay.status_requests == 1
    await rig.poll(minutes=5)
    assert relay.status_requests == 2  # asked again next round, still once for all
    relay.status_failing = None
    await rig.poll(minutes=5)
    await rig.poll(minutes=5)
    assert relay.status_requests == 3  # answered: kept


async def test_a_round_stores_every_accounts_poll_and_state(
    rig_factory: Any, relay: Relay, webhook: Webhook
) -> None:
    relay.set_usd(3)  # CRITICAL: every account alerts, in one digest
    rig: Rig = await rig_factory(defaults_toml(webhook.url) + accounts(relay))
    results = await rig.poll()
    assert len(webhook.received) == 1 and all(r.delivered for r in results)
    await rig.restart()  # what is on disk, not in memory
    assert rig.history is not None
    for name in NAMES:
        (poll,) = rig.history.polls(name)
        assert poll.ok and poll.amount == 3
        record = rig.history.record(name)
        assert record.state is State.CRITICAL and record.announced is State.CRITICAL


async def test_if_the_rounds_commit_fails_each_account_is_stored_alone(
    rig_factory: Any, relay: Relay, webhook: Webhook, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay.set_usd(3)
    rig: Rig = await rig_factory(defaults_toml(webhook.url) + accounts(relay))
    assert rig.history is not None
    history = rig.history

    @contextmanager
    def failing_commit() -> Iterator[None]:
        history._db.execute("BEGIN IMMEDIATE")
        history._batch = True
        try:
            yield
        finally:
            history._batch = False
            history._db.execute("ROLLBACK")
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(history, "transaction", failing_commit)
    results = await rig.poll()
    assert len(webhook.received) == 1 and all(r.delivered for r in results)
    for name in NAMES:
        assert len(history.polls(name)) == 1  # stored once, not twice
        assert history.record(name).announced is State.CRITICAL


def test_a_failed_save_in_a_transaction_undoes_only_its_own_writes(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    at = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    with History(tmp_path / "state.sqlite3") as history:
        with history.transaction():
            history.save("a", Record(failures=1), Poll("a", at, error="down"))
            with pytest.raises(OverflowError):
                history.save("b", Record(failures=1), Poll("b", at, request_count=10**40))
            history.save("c", Record(failures=2), Poll("c", at, error="down"))
        assert [len(history.polls(name)) for name in "abc"] == [1, 0, 1]
        assert [history.record(name).failures for name in "abc"] == [1, 0, 2]
        with pytest.raises(RuntimeError, match="boom"), history.transaction():
            history.save("a", Record(failures=5), Poll("a", at, error="down"))
            raise RuntimeError("boom")
        assert history.record("a").failures == 1 and len(history.polls("a")) == 1


def test_each_notify_url_is_checked_once(tmp_path: Path, relay: Relay, webhook: Webhook) -> None:
    checked: list[str] = []

    def check(url: str) -> str | None:
        checked.append(url)
        return None

    path = write_config(tmp_path / "watch.toml", defaults_toml(webhook.url) + accounts(relay))
    config = load_config(path, check_url=check)
    assert len(config.accounts) == len(NAMES) and checked == [webhook.url]
