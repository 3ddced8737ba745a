"""Accounts that watch an API key (`key_env`/`key_file`): thresholds on what the key may still
spend, an unlimited key falling back to the account, the key's forecast from its `total_used`,
key rows in `status`/`history`, and the config refusing what cannot work, at its line."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from monitor_support import (
    ENVIRONMENT,
    KEY,
    QUOTA_PER_USD,
    Relay,
    Rig,
    Webhook,
    account_toml,
    defaults_toml,
)
from rich.console import Console

from quotaledger.monitor.config import load_config
from quotaledger.monitor.forecast import forecast
from quotaledger.monitor.history import History
from quotaledger.monitor.notify import check_url
from quotaledger.monitor.report import collect, history_table, status_table
from quotaledger.monitor.tokens import resolve_keys, resolve_tokens
from quotaledger.monitor.tomlsource import ConfigError
from quotaledger.monitor.watcher import check_accounts
from quotaledger.tokens import generate_token

HOUR = {"hours": 1}


def key_account(relay: Relay, token_env: str | None = "PROD_TOKEN", **extra: Any) -> str:
    """Account `laptop` watching the relay's key: WARNING at $2, CRITICAL at $0.50."""
    return account_toml(
        relay, "laptop", token_env=token_env, warn_usd=2, critical_usd=0.5,
        key_env="LAPTOP_KEY", **extra,
    )  # fmt: skip


async def key_rig(rig_factory: Any, relay: Relay, webhook: Webhook, **kwargs: Any) -> Rig:
    made: Rig = await rig_factory(defaults_toml(webhook.url) + key_account(relay, **kwargs))
    return made


async def test_a_key_is_watched_on_what_it_may_still_spend(
    rig_factory: Any, relay: Relay, webhook: Webhook
) -> None:
    rig = await key_rig(rig_factory, relay, webhook)
    (first,) = await rig.poll()
    assert first.record.state == "OK"
    assert (first.outcome.poll.quota, first.outcome.poll.watched) == (
        5 * QUOTA_PER_USD,
        "key laptop",
    )
    relay.spend_key(int(3.5 * QUOTA_PER_USD))  # $1.50 left on the key; the account has $46.50
    (second,) = await rig.poll(minutes=5)
    assert second.record.state == "WARNING"
    assert [m["type"] for m in webhook.received] == ["warning"]
    assert "$1.50 left (750,000 quota) on key laptop" in webhook.received[0]["message"]


async def test_the_key_goes_to_the_usage_route_as_a_bearer_and_the_token_is_not_used(
    rig_factory: Any, relay: Relay, webhook: Webhook
) -> None:
    rig = await key_rig(rig_factory, relay, webhook)
    await rig.poll()
    assert relay.authorizations == []  # /api/user/self was never asked: the key has a budget


async def test_an_unlimited_key_falls_back_to_the_accounts_balance(
    rig_factory: Any, relay: Relay, webhook: Webhook
) -> None:
    relay.key_unlimited, relay.key_quota = True, 0
    rig = await key_rig(rig_factory, relay, webhook)
    (result,) = await rig.poll()
    poll = result.outcome.poll
    assert (poll.quota, poll.watched) == (
        50 * QUOTA_PER_USD,
        "the account (key laptop is unlimited)",
    )
    assert result.record.state == "OK"  # $50 on the account, not the key's stale 0
    relay.set_usd(1)
    await rig.poll(minutes=5)
    assert [m["type"] for m in webhook.received] == ["warning"]
    assert "on the account (key laptop is unlimited)" in webhook.received[0]["message"]


async def test_an_unlimited_key_without_the_account_token_fails_and_says_what_to_add(
    rig_factory: Any, relay: Relay, webhook: Webhook
) -> None:
    relay.key_unlimited = True
    rig = await key_rig(rig_factory, relay, webhook, token_env=None)
    results = [await rig.poll(minutes=5) for _ in range(3)]
    assert all(not r[0].outcome.poll.ok for r in results)
    assert "key laptop is unlimited" in (results[0][0].outcome.poll.error or "")
    assert results[-1][0].record.state == "UNKNOWN"  # after unknown_after polls, as any failure
    assert len(webhook.received) == 1
    assert "add token_env" in webhook.received[0]["message"]


async def test_a_keys_forecast_reads_its_own_total_used(
    rig_factory: Any, relay: Relay, webhook: Webhook
) -> None:
    relay.key_quota = 100 * QUOTA_PER_USD
    rig = await key_rig(rig_factory, relay, webhook)
    await rig.poll()
    for _ in range(6):
        relay.spend_key(QUOTA_PER_USD // 10)  # the key: $0.10 an hour, $2.40 a day
        relay.spend(5 * QUOTA_PER_USD)  # other keys of the account: not this key's burn
        relay.key_quota += QUOTA_PER_USD  # a top-up of the key: not a negative burn
        await rig.poll(**HOUR)
    assert rig.history is not None
    now = rig.clock()
    prediction = forecast(rig.history.samples("laptop", since=now.replace(day=1)), now)
    assert prediction is not None
    assert prediction.rate == pytest.approx(2.4)


async def test_status_and_history_say_what_each_balance_was_of(
    rig_factory: Any, relay: Relay, webhook: Webhook
) -> None:
    rig = await key_rig(rig_factory, relay, webhook)
    await rig.poll()
    relay.key_unlimited = True
    await rig.poll(minutes=5)
    assert rig.history is not None
    console = Console(width=160, record=True)
    console.print(status_table(collect(rig.config, rig.history, rig.clock()), rig.clock()))
    console.print(history_table("laptop", rig.history.polls("laptop")))
    text = console.export_text()
    assert "the account (key laptop is unlimited)" in text
    assert "Of" in text and "key laptop" in text


def test_a_state_file_of_version_1_gets_the_watched_column(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE polls (id INTEGER PRIMARY KEY, account TEXT NOT NULL, at REAL NOT NULL,"
            " amount TEXT, currency TEXT, quota INTEGER, used_quota INTEGER, used_amount TEXT,"
            " request_count INTEGER, error TEXT);"
            "CREATE TABLE alerts (account TEXT PRIMARY KEY, state TEXT, level TEXT, since REAL,"
            " failures INTEGER NOT NULL, last_error TEXT, announced TEXT, announced_at REAL);"
            "INSERT INTO polls (account, at, amount, currency, quota) VALUES"
            " ('prod', 1764000000, '49.99', 'USD', 24995000);"
            "PRAGMA user_version=1;"
        )
    db.close()
    with History(path, create=False) as history:
        (poll,) = history.polls("prod")
    assert (poll.quota, poll.watched) == (24_995_000, None)
    assert poll.at == datetime.fromtimestamp(1764000000, UTC)


# ------------------------------------------------------------------ the config


def load(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "watch.toml"
    path.write_text('[defaults]\nnotify = []\n\n[[account]]\nname = "laptop"\n' + text)
    return load_config(path, check_url=check_url)


def refusal(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return caught.value


URL = 'base_url = "https://relay.example.com"\n'


def test_a_key_alone_or_with_the_token_loads(tmp_path: Path) -> None:
    (alone,) = load(tmp_path, URL + 'key_env = "LAPTOP_KEY"\n').accounts
    assert alone.watches_key and not alone.has_token
    (both,) = load(tmp_path, URL + 'key_file = "laptop.key"\ntoken_env = "T"\n').accounts
    assert both.key_file == tmp_path / "laptop.key" and both.has_token


def test_an_account_without_any_credential_is_refused(tmp_path: Path) -> None:
    error = refusal(tmp_path, URL)
    assert "no credential" in error.reason and "key_env" in error.reason


def test_key_env_and_key_file_together_are_refused_at_their_line(tmp_path: Path) -> None:
    error = refusal(tmp_path, URL + 'key_env = "LAPTOP_KEY"\nkey_file = "k"\n')
    assert error.reason == "set one of key_env or key_file, not both"
    assert error.line == 7


def test_a_key_on_a_provider_without_per_key_balances_is_refused(tmp_path: Path) -> None:
    error = refusal(tmp_path, 'provider = "openrouter"\nkey_env = "LAPTOP_KEY"\n')
    assert "no per-key balance" in error.reason
    assert error.line == 7


def test_the_key_provider_named_directly_is_refused_with_the_way_to_write_it(
    tmp_path: Path,
) -> None:
    error = refusal(tmp_path, URL + 'provider = "newapi-key"\ntoken_env = "T"\n')
    assert "key_env" in error.reason


def test_a_missing_key_variable_is_refused_at_its_line_without_the_value(tmp_path: Path) -> None:
    config = load(tmp_path, URL + 'key_env = "LAPTOP_KEY"\n')
    with pytest.raises(ConfigError) as caught:
        resolve_keys(config, {})
    assert caught.value.reason == "environment variable LAPTOP_KEY is not set or empty"
    assert caught.value.line == 7
    assert resolve_keys(config, ENVIRONMENT)["laptop"].reveal() == KEY


def test_a_system_token_given_as_the_key_is_refused_at_start_at_the_account(
    tmp_path: Path,
) -> None:
    config = load(tmp_path, URL + 'key_env = "LAPTOP_KEY"\n')
    system_token = generate_token()
    keys = resolve_keys(config, {"LAPTOP_KEY": system_token})
    with pytest.raises(ConfigError) as caught:
        check_accounts(config, resolve_tokens(config, {}), keys)
    assert "system token" in caught.value.reason
    assert system_token not in str(caught.value)
