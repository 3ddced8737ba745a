"""`quotaledger balance` against a live server: output, `--json`, and every exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from client_payloads import (
    NO_USER_HEADER,
    ONE_API_SELF,
    QUOTALEDGER_SELF,
    TOKEN,
    USER_ID,
    Answer,
    json_answer,
)
from client_server import FakeProvider

from quotaledger.cli.exits import Exit
from quotaledger.cli.main import cli

SELF = "/api/user/self"


def run(*args: str, token: str | None = TOKEN, stdin: str | None = None, **env: str) -> Result:
    environment = {"QUOTALEDGER_TOKEN": token} if token is not None else {}
    return CliRunner().invoke(cli, ["balance", *args], env={**environment, **env}, input=stdin)


def test_balance_prints_one_line_summary(server: FakeProvider) -> None:
    server.route(SELF, json_answer(QUOTALEDGER_SELF, gzip=True))
    result = run("--base-url", server.url)
    assert result.exit_code == Exit.OK
    assert (
        result.stdout
        == "$49.99 left (24,997,909 quota) · used $0.00 · 12 requests · group default\n"
    )


def test_balance_json_has_exact_amounts_and_the_raw_payload(server: FakeProvider) -> None:
    server.route(SELF, json_answer(QUOTALEDGER_SELF))
    result = run("--base-url", server.url, "--json")
    document = json.loads(result.stdout)
    assert (document["usd"], document["quota"], document["currency"]) == (
        "49.995818",
        24997909,
        "USD",
    )
    assert document["raw"] == QUOTALEDGER_SELF


def test_base_url_and_user_id_come_from_the_environment(server: FakeProvider) -> None:
    server.route(SELF, json_answer(ONE_API_SELF))
    result = run(QUOTALEDGER_BASE_URL=server.url, QUOTALEDGER_USER_ID=USER_ID)
    assert result.stdout.startswith("$20.00 left (10,000,000 quota)")
    assert server.requests[0].headers["new-api-user"] == USER_ID


def test_token_is_read_from_a_token_file(server: FakeProvider, tmp_path: Path) -> None:
    server.route(SELF, json_answer(QUOTALEDGER_SELF))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    result = run("--base-url", server.url, "--token-file", str(token_file), token=None)
    assert result.exit_code == Exit.OK
    assert server.requests[0].headers["authorization"] == TOKEN


def test_token_is_read_from_stdin_with_a_dash(server: FakeProvider) -> None:
    server.route(SELF, json_answer(QUOTALEDGER_SELF))
    result = run("--base-url", server.url, "--token-file", "-", token=None, stdin=TOKEN)
    assert result.exit_code == Exit.OK


def test_there_is_no_token_option() -> None:
    result = run("--token", TOKEN, "--base-url", "http://127.0.0.1:1")
    assert result.exit_code == Exit.USAGE
    assert "No such option" in result.stderr


def test_missing_token_exits_2_and_says_where_to_put_it() -> None:
    result = run("--base-url", "http://127.0.0.1:1", token=None)
    assert result.exit_code == Exit.USAGE
    assert "set QUOTALEDGER_TOKEN or pass --token-file" in result.stderr


def test_missing_base_url_for_newapi_exits_2() -> None:
    result = run()
    assert result.exit_code == Exit.USAGE
    assert "--base-url" in result.stderr


@pytest.mark.parametrize("base_url", ["not a url", "http://not a url", "https://relay example.com"])
def test_a_base_url_with_spaces_is_a_configuration_error_not_a_dns_failure(base_url: str) -> None:
    result = run("--base-url", base_url, "--retries", "0")
    assert result.exit_code == Exit.USAGE, result.stderr
    assert "DNS" not in result.stderr


def test_a_base_url_without_a_scheme_exits_2_with_a_hint(server: FakeProvider) -> None:
    server.route(SELF, json_answer(QUOTALEDGER_SELF))
    result = run("--base-url", server.url.removeprefix("http://"))
    assert result.exit_code == Exit.USAGE
    assert "add http:// or https://" in result.stderr
    assert server.requests == []  # nothing was tried, TLS least of all


def test_a_mistyped_quotaledger_token_is_refused_locally_with_exit_3(server: FakeProvider) -> None:
    mistyped = TOKEN[:-1] + ("A" if TOKEN[-1] != "A" else "B")
    result = run("--base-url", server.url, token=mistyped)
    assert result.exit_code == Exit.AUTHENTICATION  # README: 3, token refused
    assert "mistyped or truncated" in result.stderr
    assert server.requests == []


def test_refused_token_exits_3(server: FakeProvider) -> None:
    server.route(SELF, json_answer({"success": False, "message": "invalid token"}, 401))
    result = run("--base-url", server.url)
    assert result.exit_code == Exit.AUTHENTICATION
    assert result.stderr.startswith("Error: 127.0.0.1")


def test_new_api_user_refusal_mentions_the_user_id_option(server: FakeProvider) -> None:
    server.route(SELF, json_answer(NO_USER_HEADER, 401))
    result = run("--base-url", server.url)
    assert result.exit_code == Exit.AUTHENTICATION
    assert "--user-id" in result.stderr


def test_permission_denied_exits_4(server: FakeProvider) -> None:
    server.route(SELF, json_answer({"success": False, "message": "disabled"}, 403))
    assert run("--base-url", server.url).exit_code == Exit.PERMISSION


def test_refused_connection_exits_5(closed_port: int) -> None:
    result = run("--base-url", f"http://127.0.0.1:{closed_port}", "--retries", "0")
    assert result.exit_code == Exit.NETWORK
    assert "connection refused" in result.stderr


def test_timeout_exits_5_naming_host_and_seconds(server: FakeProvider) -> None:
    server.route(SELF, json_answer(QUOTALEDGER_SELF, delay=0.6))
    result = run("--base-url", server.url, "--timeout", "0.2", "--retries", "0")
    assert result.exit_code == Exit.NETWORK
    assert f"{server.url[7:]} did not answer within 0.2 s" in result.stderr


def test_rate_limited_exits_6(server: FakeProvider) -> None:
    server.route(SELF, json_answer({}, 429, headers={"Retry-After": "60"}))
    assert run("--base-url", server.url).exit_code == Exit.RATE_LIMITED


def test_html_answer_exits_7_and_says_html(server: FakeProvider) -> None:
    server.route(SELF, Answer(body="<html>login</html>", headers={"Content-Type": "text/html"}))
    result = run("--base-url", server.url)
    assert result.exit_code == Exit.UNEXPECTED
    assert "HTML page instead of JSON" in result.stderr


def test_server_error_is_retried_then_exits_7(server: FakeProvider) -> None:
    server.route(SELF, json_answer({}, 502))
    result = run("--base-url", server.url, "--retries", "2")
    assert result.exit_code == Exit.UNEXPECTED
    assert server.count(SELF) == 3


@pytest.mark.parametrize(
    "answer",
    [Answer(body=b"\x89garbage"), json_answer({}, 401), Answer(hang_up=True)],
    ids=["garbage", "401", "hang-up"],
)
def test_failures_never_print_a_traceback(server: FakeProvider, answer: Answer) -> None:
    server.route(SELF, answer)
    result = run("--base-url", server.url, "--retries", "0")
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert len(result.stderr.splitlines()) == 1


def test_json_errors_are_json_on_stdout(server: FakeProvider) -> None:
    server.route(SELF, json_answer({"success": False, "message": "invalid token"}, 401))
    result = run("--base-url", server.url, "--json")
    assert json.loads(result.stdout)["error"]["type"] == "AuthenticationError"


def test_token_never_appears_in_the_output(server: FakeProvider) -> None:
    server.route(SELF, json_answer({"success": False, "message": f"no such token {TOKEN}"}, 401))
    result = run("--base-url", server.url)
    assert TOKEN not in result.output


def test_other_provider_output_uses_its_currency(server: FakeProvider) -> None:
    infos = [{"currency": "CNY", "total_balance": "1234.5"}]
    server.route("/user/balance", json_answer({"is_available": True, "balance_infos": infos}))
    result = run("--provider", "deepseek", "--base-url", server.url)
    assert result.stdout == "¥1,234.50 left\n"


def test_help_has_an_examples_section() -> None:
    result = CliRunner().invoke(cli, ["balance", "--help"])
    assert "Examples:" in result.stdout
    assert "quotaledger balance --base-url" in result.stdout


def test_unreadable_token_file_exits_2(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_bytes(b"\xff\xfe\x00binary")
    result = run("--base-url", "http://127.0.0.1:1", "--token-file", str(token_file), token=None)
    assert result.exit_code == Exit.USAGE
    assert "cannot read the token file" in result.stderr


def test_json_raw_holds_no_token_even_when_the_server_puts_it_in_data(
    server: FakeProvider,
) -> None:
    data = {**ONE_API_SELF["data"], "access_token": TOKEN, "AccessKey": "sk-abc123456789"}  # type: ignore[dict-item]
    server.route(SELF, json_answer({**ONE_API_SELF, "data": data}))
    result = run("--base-url", server.url, "--json")
    assert result.exit_code == Exit.OK
    raw = json.loads(result.stdout)["raw"]
    assert "access_token" not in raw["data"] and "AccessKey" not in raw["data"]
    assert raw["data"]["quota"] == 10_000_000
    assert TOKEN not in result.output and "sk-abc" not in result.output


@pytest.mark.parametrize("as_json", [False, True])
def test_a_quota_beyond_64_bits_exits_7_in_one_line(server: FakeProvider, as_json: bool) -> None:
    data = {**QUOTALEDGER_SELF["data"], "quota": 10**40}  # type: ignore[dict-item]
    server.route(SELF, json_answer({**QUOTALEDGER_SELF, "data": data}))
    result = run("--base-url", server.url, *(["--json"] if as_json else []))
    assert result.exit_code == Exit.UNEXPECTED
    assert "data.quota out of range" in result.output
    assert "Traceback" not in result.output and len(result.output.splitlines()) == 1


def test_a_large_amount_from_another_provider_is_written_out(server: FakeProvider) -> None:
    infos = [{"currency": "USD", "total_balance": "123456789012345678.99"}]  # just under 10**18
    server.route("/user/balance", json_answer({"is_available": True, "balance_infos": infos}))
    result = run("--provider", "deepseek", "--base-url", server.url)
    assert result.stdout == "$123,456,789,012,345,678.99 left\n"


@pytest.mark.parametrize("user_id", ["é", "4\n2", "abc"])
def test_a_user_id_that_is_not_digits_exits_2(server: FakeProvider, user_id: str) -> None:
    result = run("--base-url", server.url, "--user-id", user_id)
    assert result.exit_code == Exit.USAGE
    assert "numeric user id" in result.stderr
    assert server.requests == []


HOSTILE_TEXT = (
    "token \x1b]0;pwned\x07refused\x1b]52;c;ZWNobyBoaQ==\x07\r\nFAKE: \x1b[2J\x9b31m ok\u202e"
)


def test_a_servers_message_reaches_the_terminal_without_control_characters(
    server: FakeProvider,
) -> None:
    server.route(SELF, json_answer({"success": False, "message": HOSTILE_TEXT}, 401))
    result = run("--base-url", server.url)
    assert result.exit_code == Exit.AUTHENTICATION
    line = result.stderr.removesuffix("\n")
    assert "token refused FAKE: ok" in line
    assert line.isprintable(), repr(line)  # no ESC, BEL, CR, LF, C1 or bidi override


def test_a_servers_fields_are_printed_without_control_characters(server: FakeProvider) -> None:
    data = {**QUOTALEDGER_SELF["data"], "group": "vip\x1b[1A\r\n$999.00 left"}  # type: ignore[dict-item]
    server.route(SELF, json_answer({**QUOTALEDGER_SELF, "data": data}))
    result = run("--base-url", server.url)
    assert result.exit_code == Exit.OK
    assert result.stdout.endswith("· group vip $999.00 left\n")
    assert result.stdout.removesuffix("\n").isprintable()
    assert json.loads(run("--base-url", server.url, "--json").stdout)["group"] == data["group"]
