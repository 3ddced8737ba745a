"""`quotaledger user token NAME`: the System Token dialog in a terminal (issue 11, item 19)."""

from __future__ import annotations

import json

import httpx
import pytest
from click.testing import CliRunner, Result

from quotaledger.cli.main import cli
from support import ADMIN_PASSWORD, LiveServer


@pytest.fixture
def run(sqlite_url: str):  # type: ignore[no-untyped-def]
    def invoke(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(
            cli, list(args), input=input, env={"QUOTALEDGER_DATABASE_URL": sqlite_url}
        )

    assert invoke("db", "upgrade").exit_code == 0
    assert (
        invoke("user", "create", "alice", "--password-stdin", input="alice-pass-123\n").exit_code
        == 0
    )
    return invoke


def _self(server: LiveServer, token: str) -> httpx.Response:
    return httpx.get(server.base_url + "/api/user/self", headers={"Authorization": token})


@pytest.mark.slow
def test_the_printed_token_charges_usage_and_the_next_one_replaces_it(
    live_server: LiveServer,
) -> None:
    live_server.cli("user", "create", "bob", "--usd", "1")
    live_server.cli("price", "set", "m", "--per-call-usd", "0.01")

    first = live_server.cli("user", "token", "admin", "--password-stdin", input=ADMIN_PASSWORD)
    token = first.stdout.strip()
    charge = httpx.post(
        live_server.base_url + "/api/usage",
        headers={"Authorization": token},
        json={"username": "bob", "model": "m", "request_id": "r-1"},
    )
    second = live_server.cli("user", "token", "admin", "--password-stdin", input=ADMIN_PASSWORD)

    assert first.returncode == 0, first.stderr
    assert first.stdout.count("\n") == 1 and token.startswith("ql_")
    assert "Shown once" in first.stderr
    assert charge.status_code == 200, charge.text
    assert charge.json()["data"]["quota_remaining"] == 500_000 - 5_000
    assert _self(live_server, token).status_code == 401
    assert _self(live_server, second.stdout.strip()).json()["data"]["username"] == "admin"
    assert f"(…{token[-4:]}) no longer works" in second.stderr


def test_a_wrong_password_exits_3_prints_no_token_and_changes_nothing(run) -> None:  # type: ignore[no-untyped-def]
    good = run("user", "token", "alice", "--password-stdin", input="alice-pass-123\n")

    wrong = run("user", "token", "alice", "--password-stdin", input="not-her-password\n")

    assert wrong.exit_code == 3
    assert wrong.stdout == ""
    assert "ql_" not in wrong.stderr
    assert wrong.stderr.strip().splitlines()[-1] == "Error: wrong username or password"
    still = json.loads(run("user", "show", "alice", "--json").stdout)["token_hint"]
    assert still == "…" + good.stdout.strip()[-4:]


def test_an_unknown_user_gets_the_same_answer_as_a_wrong_password(run) -> None:  # type: ignore[no-untyped-def]
    result = run("user", "token", "nobody", "--password-stdin", input="whatever-123\n")

    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr.strip() == "Error: wrong username or password"


def test_a_disabled_account_gets_no_token(run) -> None:  # type: ignore[no-untyped-def]
    run("user", "disable", "alice")

    result = run("user", "token", "alice", "--password-stdin", input="alice-pass-123\n")

    assert result.exit_code == 4
    assert result.stdout == ""
    assert "disabled" in result.stderr


def test_without_password_stdin_the_password_is_asked_without_echo(run) -> None:  # type: ignore[no-untyped-def]
    result = run("user", "token", "alice", input="alice-pass-123\n")

    assert result.exit_code == 0, result.output
    assert "alice-pass-123" not in result.output
    assert result.stdout.strip().startswith("ql_")
