"""`quotaledger balance --key-env VAR` and `check --key-env VAR` against a live server answering
`GET /api/usage/token` as new-api and quotaledger do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from client_payloads import (
    NEWAPI_KEY,
    NEWAPI_USAGE,
    QL_KEY,
    QUOTALEDGER_SELF,
    QUOTALEDGER_USAGE,
    TOKEN,
    json_answer,
    key_usage,
)
from client_server import FakeProvider

from quotaledger.cli.exits import Exit
from quotaledger.cli.main import cli

USAGE = "/api/usage/token"
SELF = "/api/user/self"
UNLIMITED = key_usage(NEWAPI_USAGE, unlimited_quota=True, total_available=0, expires_at=0)


def run(server: FakeProvider, *args: str, **env: str) -> Result:
    base = ["--base-url", server.url, "--retries", "0"]
    command, rest = args[0], args[1:]
    return CliRunner().invoke(cli, [command, *base, *rest], env={"LAPTOP_KEY": NEWAPI_KEY, **env})


def test_balance_of_a_key_says_what_is_left_of_what_and_what_was_used(
    server: FakeProvider,
) -> None:
    server.route(USAGE, json_answer(key_usage(NEWAPI_USAGE, model_limits={})))
    result = run(server, "balance", "--key-env", "LAPTOP_KEY")
    assert result.exit_code == Exit.OK, result.output
    assert result.stdout == (
        "$4.20 left of $5.00 on key laptop (2,100,000 quota) · used $0.80"
        " · expires 2027-01-01 00:00 UTC\n"
    )
    assert server.requests[0].headers["authorization"] == f"Bearer {NEWAPI_KEY}"


def test_a_quotaledger_key_from_a_file(server: FakeProvider, tmp_path: Path) -> None:
    server.route(USAGE, json_answer(QUOTALEDGER_USAGE))
    key_file = tmp_path / "laptop.key"
    key_file.write_text(QL_KEY + "\n")
    result = run(server, "balance", "--key-file", str(key_file))
    assert result.stdout == "$4.20 left of $5.00 on key laptop (2,100,000 quota) · used $0.80\n"
    assert server.requests[0].headers["authorization"] == f"Bearer {QL_KEY}"


def test_an_unlimited_key_says_so_and_what_it_used(server: FakeProvider) -> None:
    server.route(USAGE, json_answer(UNLIMITED))
    result = run(server, "balance", "--key-env", "LAPTOP_KEY")
    assert result.stdout.startswith(
        "key laptop is unlimited (it spends its account's balance) · used $0.80"
    )


def test_balance_json_of_a_key(server: FakeProvider) -> None:
    server.route(USAGE, json_answer(NEWAPI_USAGE))
    document = json.loads(run(server, "balance", "--key-env", "LAPTOP_KEY", "--json").stdout)
    assert (document["provider"], document["quota"], document["used_quota"]) == (
        "newapi-key",
        2_100_000,
        400_000,
    )
    assert (document["usd"], document["used_usd"]) == ("4.2", "0.8")
    assert document["key"] == {
        "name": "laptop",
        "unlimited": False,
        "granted_quota": 2_500_000,
        "granted_usd": "5",
        "expires_at": "2027-01-01T00:00:00+00:00",
        "models": ["claude-3-5-haiku", "gpt-4o-mini"],
    }


def test_a_missing_key_variable_is_a_usage_error(server: FakeProvider) -> None:
    result = run(server, "balance", "--key-env", "NOT_SET_ANYWHERE")
    assert result.exit_code == Exit.USAGE
    assert "NOT_SET_ANYWHERE is not set or empty" in result.stderr
    assert server.requests == []


def test_a_key_pasted_as_the_variable_name_is_never_printed(server: FakeProvider) -> None:
    result = run(server, "balance", "--key-env", NEWAPI_KEY)
    assert result.exit_code == Exit.USAGE
    assert "not the key itself" in result.stderr
    assert NEWAPI_KEY not in result.output
    assert server.requests == []


def test_a_refused_key_exits_3_without_showing_it(server: FakeProvider) -> None:
    server.route(USAGE, json_answer({"success": False, "message": "Invalid token"}, 401))
    result = run(server, "balance", "--key-env", "LAPTOP_KEY")
    assert result.exit_code == Exit.AUTHENTICATION
    assert "API keys" in result.stderr
    assert NEWAPI_KEY not in result.output


def test_a_provider_without_per_key_balances_is_refused(server: FakeProvider) -> None:
    result = run(server, "balance", "--key-env", "LAPTOP_KEY", "--provider", "deepseek")
    assert result.exit_code == Exit.USAGE
    assert "no per-key balance" in result.stderr


def test_the_provider_mode_reads_the_key_from_the_token_variable(server: FakeProvider) -> None:
    server.route(USAGE, json_answer(NEWAPI_USAGE))
    result = run(server, "balance", "--provider", "newapi-key", QUOTALEDGER_TOKEN=NEWAPI_KEY)
    assert result.stdout.startswith("$4.20 left of $5.00 on key laptop")


@pytest.mark.parametrize(
    ("available", "state", "line"),
    [
        (2_100_000, 0, "BALANCE OK - $4.20 left on key laptop"),
        (500_000, 1, "BALANCE WARNING - $1.00 left on key laptop (warning at or below $2.00)"),
        (100_000, 2, "BALANCE CRITICAL - $0.20 left on key laptop (critical at or below $0.50)"),
    ],
)
def test_check_applies_the_thresholds_to_what_the_key_may_still_spend(
    server: FakeProvider, available: int, state: int, line: str
) -> None:
    server.route(USAGE, json_answer(key_usage(NEWAPI_USAGE, total_available=available)))
    result = run(
        server, "check", "--key-env", "LAPTOP_KEY", "--warn-usd", "2", "--critical-usd", ".5"
    )
    assert result.exit_code == state
    assert result.stdout.startswith(line + " | balance_usd=")


def test_check_of_an_unlimited_key_checks_its_account_when_the_token_is_set(
    server: FakeProvider,
) -> None:
    server.route(USAGE, json_answer(UNLIMITED))
    server.route(SELF, json_answer(QUOTALEDGER_SELF))
    result = run(
        server, "check", "--key-env", "LAPTOP_KEY", "--warn-usd", "60", "--critical-usd", "5",
        QUOTALEDGER_TOKEN=TOKEN,
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stdout.startswith(
        "BALANCE WARNING - key laptop is unlimited; its account has $49.99 left "
        "(warning at or below $60.00) | balance_usd=49.99;60:;5:;0"
    )
    account_asked = next(seen for seen in server.requests if seen.path == SELF)
    assert account_asked.headers["authorization"] == TOKEN


def test_check_of_an_unlimited_key_without_the_account_token_is_ok_and_says_why(
    server: FakeProvider,
) -> None:
    server.route(USAGE, json_answer(UNLIMITED))
    result = run(
        server, "check", "--key-env", "LAPTOP_KEY", "--warn-usd", "2", "--critical-usd", "1"
    )
    assert result.exit_code == 0
    assert result.stdout == (
        "BALANCE OK - key laptop is unlimited, used $0.80: it spends its account's balance "
        "(set QUOTALEDGER_TOKEN or --token-file to check that) | used_quota=400000;;;;\n"
    )


def test_check_with_a_missing_key_variable_is_unknown(server: FakeProvider) -> None:
    result = run(server, "check", "--key-env", "NOPE", "--warn-usd", "2", "--critical-usd", "1")
    assert result.exit_code == 3
    assert result.stdout.startswith("BALANCE UNKNOWN - the environment variable NOPE")


def test_a_key_answer_slower_than_the_timeout_exits_5(server: FakeProvider) -> None:
    server.route(USAGE, json_answer(NEWAPI_USAGE, delay=2.0))
    result = run(server, "balance", "--key-env", "LAPTOP_KEY", "--timeout", "0.3")
    assert result.exit_code == Exit.NETWORK


def test_a_server_error_is_retried_for_a_key_too(server: FakeProvider) -> None:
    server.route(USAGE, json_answer({"success": False}, 503), json_answer(NEWAPI_USAGE))
    base = ["balance", "--base-url", server.url, "--key-env", "LAPTOP_KEY", "--retries", "1"]
    result = CliRunner().invoke(cli, base, env={"LAPTOP_KEY": NEWAPI_KEY})
    assert result.exit_code == Exit.OK
    assert server.count(USAGE) == 2


def test_a_key_name_with_escape_sequences_is_printed_harmless(server: FakeProvider) -> None:
    server.route(USAGE, json_answer(key_usage(NEWAPI_USAGE, name="lap\x1b[2Jtop\nfake line")))
    result = run(server, "balance", "--key-env", "LAPTOP_KEY")
    assert result.exit_code == Exit.OK
    assert "\x1b" not in result.stdout and result.stdout.count("\n") == 1
