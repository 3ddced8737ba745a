"""The CLI of SPEC §12: rate limits on keys, accounts and groups; `channel balance NAME`
against a real balance API on loopback; `channel list`'s health and balance columns."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result
from test_balances import UPSTREAM_KEY, BalanceUpstream

from quotaledger.cli.main import cli
from quotaledger.relay import channels
from quotaledger.relay import rates as stored
from quotaledger.relay.health import HealthBook, after_failure, classify
from quotaledger.relay.limits import Rates
from quotaledger.settings import Settings
from quotaledger.store.database import Database

SECRET = "a-test-secret-key-of-more-than-32-characters"


@pytest.fixture
def run(migrated_sqlite_url: str):  # type: ignore[no-untyped-def]
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        env = {"QUOTALEDGER_DATABASE_URL": migrated_sqlite_url, "COLUMNS": "250",
               "QUOTALEDGER_SECRET_KEY": SECRET}  # fmt: skip
        return runner.invoke(cli, list(args), input=input, env=env, catch_exceptions=False)

    return invoke


@pytest.fixture
def database(migrated_sqlite_url: str) -> Iterator[Database]:
    db = Database.from_settings(Settings.from_env({}, database_url=migrated_sqlite_url))
    yield db
    db.dispose()


@pytest.fixture
def upstream() -> Iterator[BalanceUpstream]:
    running = BalanceUpstream()
    yield running
    running.server.shutdown()
    running.server.server_close()


def test_a_key_is_created_and_updated_with_rate_limits(run, database: Database) -> None:  # type: ignore[no-untyped-def]
    assert (
        run("user", "create", "alice", "--password-stdin", input="pw-alice-0123456\n").exit_code
        == 0
    )
    made = run("key", "create", "alice", "--name", "agent", "--rpm", "60", "--tpm", "200000",
               "--concurrency", "4", "--json")  # fmt: skip
    assert made.exit_code == 0, made.output
    key = json.loads(made.stdout)
    assert (key["rpm"], key["tpm"], key["concurrency"]) == (60, 200_000, 4)
    changed = run("key", "update", str(key["id"]), "--tpm", "off", "--rpm", "30")
    assert changed.output.strip() == f"API key {key['id']}: 30 rpm, 4 concurrent."
    assert stored.key_rates(database, key["id"]) == Rates(30, None, 4)


def test_a_limit_below_one_is_refused(run) -> None:  # type: ignore[no-untyped-def]
    run("user", "create", "alice", "--password-stdin", input="pw-alice-0123456\n")
    refused = run("key", "create", "alice", "--name", "agent", "--rpm", "0")
    assert refused.exit_code == 2
    assert "whole number from 1" in refused.output


def test_account_and_group_limits(run, database: Database) -> None:  # type: ignore[no-untyped-def]
    run("user", "create", "bob", "--password-stdin", input="pw-bob-012345678\n")
    assert run("user", "limits", "bob", "--rpm", "120").output.strip() == "Account bob: 120 rpm."
    assert run("user", "limits", "bob").output.strip() == "Account bob: 120 rpm."
    said = run("group", "limits", "default", "--model", "gpt-4o", "--concurrency", "2")
    assert said.output.strip() == "Group default, model gpt-4o: 2 concurrent."
    run("group", "limits", "default", "--tpm", "50000")
    assert stored.all_group_rates(database) == {
        ("default", "gpt-4o"): Rates(None, None, 2), ("default", ""): Rates(None, 50_000, None),
    }  # fmt: skip
    run("group", "limits", "default", "--model", "gpt-4o", "--concurrency", "off")
    assert ("default", "gpt-4o") not in stored.all_group_rates(database)


def _add_channel(run, upstream: BalanceUpstream) -> None:  # type: ignore[no-untyped-def]
    added = run("channel", "add", "deep", "--base-url", upstream.url + "/v1", "--models",
                "deepseek-chat", "--format", "openai-chat", "--api-key-stdin",
                input=UPSTREAM_KEY + "\n")  # fmt: skip
    assert added.exit_code == 0, added.output


def test_channel_balance_watches_and_reads_at_once(run, upstream: BalanceUpstream) -> None:  # type: ignore[no-untyped-def]
    _add_channel(run, upstream)
    unwatched = run("channel", "balance", "deep")
    assert unwatched.exit_code == 2 and "give --provider" in unwatched.output
    said = run("channel", "balance", "deep", "--provider", "deepseek", "--base-url",
               upstream.url, "--alert-usd", "5", "--disable-at-zero")  # fmt: skip
    assert said.exit_code == 0, said.output
    assert said.output.strip() == "Channel deep: $20.00 (deepseek), alert at or below 5."
    upstream.balance = "3.10"
    again = run("channel", "balance", "deep", "--json")
    assert json.loads(again.stdout)["level"] == "WARNING"
    assert upstream.keys == [f"Bearer {UPSTREAM_KEY}"] * 2


def test_channel_balance_exits_5_when_the_api_is_unreachable(
    run, upstream: BalanceUpstream
) -> None:  # type: ignore[no-untyped-def]
    _add_channel(run, upstream)
    url = upstream.url
    upstream.server.shutdown()
    upstream.server.server_close()
    said = run("channel", "balance", "deep", "--provider", "deepseek", "--base-url", url)
    assert said.exit_code == 5
    assert "balance unavailable" in said.output and UPSTREAM_KEY not in said.output


def test_channel_list_shows_health_and_balance(
    run, database: Database, upstream: BalanceUpstream
) -> None:  # type: ignore[no-untyped-def]
    _add_channel(run, upstream)
    run("channel", "balance", "deep", "--provider", "deepseek", "--base-url", upstream.url)
    book = HealthBook(database)
    channel_id = channels.get_channel(database, "deep").id
    book.change(channel_id, lambda h: after_failure(h, classify(401), 10**12, book.policy))
    listed = json.loads(run("channel", "list", "--json").stdout)[0]
    assert listed["health"] == "disabled"
    assert listed["health_reason"] == "credential refused (HTTP 401)"
    assert listed["balance"]["amount"] == "20.00"
    table = run("channel", "list").output
    for column in ("health", "last error", "last success", "p50", "ok (1 h)", "balance"):
        assert column in table
    assert "disabled: credential refused (HTTP 401)" in table
    assert "$20.00" in table
    run("channel", "enable", "deep")  # the operator's word clears the automatic state
    assert json.loads(run("channel", "list", "--json").stdout)[0]["health"] == "ok"
