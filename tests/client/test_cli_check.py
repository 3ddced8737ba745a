"""`quotaledger check`: a monitoring-plugin status line with perfdata, exit 0/1/2/3."""

from __future__ import annotations

import pytest
from click.testing import CliRunner, Result
from client_payloads import QUOTALEDGER_SELF, TOKEN, json_answer
from client_server import FakeProvider

from quotaledger.cli.main import cli

SELF = "/api/user/self"


def check(server: FakeProvider, *args: str, token: str = TOKEN) -> Result:
    base = ["check", "--base-url", server.url, "--retries", "0"]
    return CliRunner().invoke(cli, [*base, *args], env={"QUOTALEDGER_TOKEN": token})


def with_quota(quota: int) -> dict[str, object]:
    return {**QUOTALEDGER_SELF, "data": {**QUOTALEDGER_SELF["data"], "quota": quota}}  # type: ignore[dict-item]


def test_ok_line_has_perfdata(server: FakeProvider) -> None:
    server.route(SELF, json_answer(QUOTALEDGER_SELF))
    result = check(server, "--warn-usd", "20", "--critical-usd", "5")
    assert result.exit_code == 0
    assert (
        result.stdout
        == "BALANCE OK - $49.99 left | balance_usd=49.99;20:;5:;0 quota=24997909;;;;\n"
    )


def test_a_mistyped_quotaledger_token_is_unknown(server: FakeProvider) -> None:
    mistyped = TOKEN[:-1] + ("A" if TOKEN[-1] != "A" else "B")
    result = check(server, "--warn-usd", "20", "--critical-usd", "5", token=mistyped)
    assert result.exit_code == 3
    assert result.stdout.startswith("BALANCE UNKNOWN - the token looks mistyped")


def test_below_warning_exits_1(server: FakeProvider) -> None:
    server.route(SELF, json_answer(with_quota(6_000_000)))
    result = check(server, "--warn-usd", "20", "--critical-usd", "5")
    assert result.exit_code == 1
    assert result.stdout.startswith("BALANCE WARNING - $12.00 left (warning at or below $20.00) |")


def test_below_critical_exits_2(server: FakeProvider) -> None:
    server.route(SELF, json_answer(with_quota(1_000_000)))
    result = check(server, "--warn-usd", "20", "--critical-usd", "5")
    assert result.exit_code == 2
    assert result.stdout.startswith("BALANCE CRITICAL - $2.00 left (critical at or below $5.00) |")


@pytest.mark.parametrize(
    ("quota", "state"), [(10_000_000, 1), (10_000_001, 0), (2_500_000, 2), (2_500_001, 1)]
)
def test_at_a_threshold_counts_as_at_or_below_it_as_in_watch(
    server: FakeProvider, quota: int, state: int
) -> None:
    server.route(SELF, json_answer(with_quota(quota)))
    assert check(server, "--warn-usd", "20", "--critical-usd", "5").exit_code == state


def test_help_says_at_or_below_and_shows_range_perfdata() -> None:
    text = " ".join(CliRunner().invoke(cli, ["check", "--help"]).stdout.split())
    assert "WARNING when the balance is at or below X." in text
    assert "CRITICAL when the balance is at or below Y" in text
    assert "balance_usd=49.99;20:;5:;0" in text


def test_perfdata_thresholds_are_ranges_where_low_is_bad(server: FakeProvider) -> None:
    # Monitoring-plugin ranges: "20" alerts ABOVE 20; "20:" alerts below 20.
    server.route(SELF, json_answer(with_quota(6_000_000)))
    result = check(server, "--warn-usd", "20.5", "--critical-usd", "0")
    assert "balance_usd=12.00;20.5:;0:;0 " in result.stdout


@pytest.mark.parametrize("quota", [10**40, 2**63])
def test_a_quota_beyond_64_bits_is_unknown_not_warning(server: FakeProvider, quota: int) -> None:
    server.route(SELF, json_answer(with_quota(quota)))
    result = check(server, "--warn-usd", "20", "--critical-usd", "5")
    assert result.exit_code == 3
    assert result.stdout.startswith("BALANCE UNKNOWN - ")
    assert "data.quota out of range" in result.stdout
    assert "Traceback" not in result.output and len(result.output.splitlines()) == 1


def test_a_user_id_that_is_not_digits_is_unknown(server: FakeProvider) -> None:
    result = check(server, "--user-id", "é", "--warn-usd", "20", "--critical-usd", "5")
    assert result.exit_code == 3
    assert "numeric user id" in result.stdout
    assert server.requests == []


def test_negative_balance_is_critical_without_a_minimum(server: FakeProvider) -> None:
    server.route(SELF, json_answer(with_quota(-250_000)))
    result = check(server, "--warn", "20", "--critical", "5")
    assert result.exit_code == 2
    assert "balance_usd=-0.50;20:;5:; quota=-250000;;;;" in result.stdout


def test_refused_token_is_unknown(server: FakeProvider) -> None:
    server.route(SELF, json_answer({"success": False, "message": "invalid token"}, 401))
    result = check(server, "--warn-usd", "20", "--critical-usd", "5")
    assert result.exit_code == 3
    assert result.stdout.startswith("BALANCE UNKNOWN - 127.0.0.1")
    assert len(result.stdout.splitlines()) == 1


def test_timeout_is_unknown(server: FakeProvider) -> None:
    server.route(SELF, json_answer(QUOTALEDGER_SELF, delay=0.6))
    result = check(server, "--timeout", "0.2", "--warn-usd", "20", "--critical-usd", "5")
    assert result.exit_code == 3
    assert "did not answer within 0.2 s" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--warn-usd", "20"],
        ["--warn-usd", "twenty", "--critical-usd", "5"],
        ["--warn-usd", "20", "--critical-usd", "5", "--bogus"],
    ],
    ids=["missing-critical", "not-a-number", "unknown-option"],
)
def test_bad_usage_is_unknown_not_critical(server: FakeProvider, args: list[str]) -> None:
    result = check(server, *args)
    assert result.exit_code == 3
    assert result.stdout.startswith("BALANCE UNKNOWN - ")


def test_critical_above_warning_is_unknown(server: FakeProvider) -> None:
    result = check(server, "--warn-usd", "5", "--critical-usd", "20")
    assert result.exit_code == 3
    assert server.requests == []


def test_check_of_a_cny_provider_labels_its_perfdata(server: FakeProvider) -> None:
    infos = [{"currency": "CNY", "total_balance": "110.00"}]
    server.route("/user/balance", json_answer({"is_available": True, "balance_infos": infos}))
    result = check(server, "--provider", "deepseek", "--warn", "100", "--critical", "10")
    assert result.stdout == "BALANCE OK - ¥110.00 left | balance_cny=110.00;100:;10:;0\n"


def test_a_servers_message_cannot_break_the_status_line_or_forge_perfdata(
    server: FakeProvider,
) -> None:
    message = "nope | balance_usd=999;20:;5:;0\nBALANCE OK - \x1b[32mfine"
    server.route(SELF, json_answer({"success": False, "message": message}, 401))
    result = check(server, "--warn-usd", "20", "--critical-usd", "5")
    assert result.exit_code == 3
    line = result.stdout.removesuffix("\n")
    assert line.isprintable() and "|" not in line, repr(line)
    assert "nope / balance_usd=999" in line
