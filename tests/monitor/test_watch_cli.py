"""`quotaledger watch --once`, `status`, `history` and `notify-test` as a user runs them."""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from monitor_support import TOKEN, Relay, Webhook, account_toml, defaults_toml

from quotaledger.cli.main import cli
from quotaledger.monitor.history import History, Poll
from quotaledger.monitor.state import Record, State


@pytest.fixture
def config(tmp_path: Path, relay: Relay, webhook: Webhook) -> Path:
    path = tmp_path / "watch.toml"
    path.write_text(defaults_toml(webhook.url) + account_toml(relay))
    return path


def run(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    environment = {"PROD_TOKEN": TOKEN, **(env or {})}
    return CliRunner().invoke(cli, [str(a) for a in args], env=environment)


def test_watch_once_alerts_and_the_next_cron_run_stays_quiet(
    tmp_path: Path, config: Path, relay: Relay, webhook: Webhook
) -> None:
    relay.set_usd(3)
    state = tmp_path / "state.sqlite3"
    first = run("watch", "--once", "--config", config, "--state", state)
    assert first.exit_code == 0, first.output
    assert first.output == "prod: CRITICAL, $3.00 left (1,500,000 quota) (notified)\n"
    second = run("watch", "--once", "--config", config, "--state", state)
    assert second.output == "prod: CRITICAL, $3.00 left (1,500,000 quota)\n"
    assert len(webhook.received) == 1


def test_watch_once_exits_1_when_an_alert_cannot_be_delivered(tmp_path: Path, relay: Relay) -> None:
    path = tmp_path / "watch.toml"
    path.write_text(defaults_toml("json://127.0.0.1:9/nothing-listens") + account_toml(relay))
    relay.set_usd(3)
    result = run("watch", "--once", "-q", "--config", path, "--state", tmp_path / "s.sqlite3")
    assert result.exit_code == 1
    assert "error: the alert for prod was not delivered" in result.output


def test_watch_refuses_a_bad_config_with_exit_2_file_and_line(tmp_path: Path, relay: Relay) -> None:
    path = tmp_path / "watch.toml"
    path.write_text(defaults_toml("memory://") + account_toml(relay, interval="10s"))
    result = run("watch", "--config", path, "--state", tmp_path / "s.sqlite3")
    assert result.exit_code == 2
    assert f"error: {path}:13: [[account]] #1 (prod) interval: '10s' is under 60 s" in result.output


def test_watch_refuses_a_missing_token_variable(tmp_path: Path, config: Path) -> None:
    result = CliRunner().invoke(
        cli, ["watch", "--once", "--config", str(config)], env={"PROD_TOKEN": ""}
    )
    assert result.exit_code == 2
    assert "token_env: environment variable PROD_TOKEN is not set or empty" in result.output


def test_watch_help_names_the_default_state_file() -> None:
    text = " ".join(run("watch", "--help").output.split())
    assert "[default: monitor.sqlite3 in the user data directory, here /" in text


def test_status_shows_balance_state_burn_and_forecast(tmp_path: Path, config: Path) -> None:
    state = tmp_path / "state.sqlite3"
    fill_history(state, hours=12, usd_per_hour=Decimal(1), last_usd=Decimal(18))
    table = run("status", "--config", config, "--state", state)
    assert table.exit_code == 0, table.output
    assert "prod" in table.output and "WARNING" in table.output and "$18.00" in table.output
    assert (
        "$24.00" in table.output
        and "18 hours" in table.output
        and "0 minutes ago" not in table.output
    )
    data = json.loads(run("status", "--json", "--config", config, "--state", state).output)
    assert data[0]["state"] == "WARNING"
    assert data[0]["balance"]["usd"] == "18" and data[0]["balance"]["quota"] == 9_000_000
    assert data[0]["burn_per_day"] == pytest.approx(24.0)
    assert data[0]["runs_out"]["text"] == "18 hours"
    assert data[0]["trend"][-2:] == ["19", "18"]


def test_status_without_a_state_file_says_to_run_watch_first(tmp_path: Path, config: Path) -> None:
    result = run("status", "--config", config, "--state", tmp_path / "none.sqlite3")
    assert result.exit_code == 1
    assert "run `quotaledger watch` first" in result.output


def test_history_lists_the_polls(tmp_path: Path, config: Path) -> None:
    state = tmp_path / "state.sqlite3"
    fill_history(state, hours=3, usd_per_hour=Decimal(1), last_usd=Decimal(40))
    result = run("history", "prod", "--config", config, "--state", state, "--json", "--limit", "2")
    polls = json.loads(result.output)
    assert [p["amount"] for p in polls] == ["41", "40"]


@pytest.mark.parametrize(("suffix", "magic"), [(".svg", b"<?xml"), (".png", b"\x89PNG")])
def test_history_draws_the_balance_into_a_file(
    tmp_path: Path, config: Path, suffix: str, magic: bytes
) -> None:
    state = tmp_path / "state.sqlite3"
    fill_history(state, hours=6, usd_per_hour=Decimal(1), last_usd=Decimal(18))
    chart = tmp_path / f"prod{suffix}"
    result = run("history", "prod", "--config", config, "--state", state, "--plot", chart)
    assert result.exit_code == 0, result.output
    assert chart.read_bytes().startswith(magic)


def test_history_of_an_unknown_account_is_a_usage_error(tmp_path: Path, config: Path) -> None:
    result = run("history", "nosuch", "--config", config, "--state", tmp_path / "s.sqlite3")
    assert result.exit_code == 2
    assert "no account named 'nosuch'" in result.output and "known: prod" in result.output


def test_notify_test_sends_a_test_message_to_every_url(
    config: Path, webhook: Webhook, memory: list[Any], relay: Relay
) -> None:
    config.write_text(defaults_toml(webhook.url, "memory://") + account_toml(relay))
    result = run("notify-test", "--config", config)
    assert result.exit_code == 0, result.output
    assert result.output.count("sent  ") == 2
    assert webhook.received[0]["title"] == "[quotaledger] test notification"
    assert memory[0]["title"] == "[quotaledger] test notification"


def fill_history(state: Path, *, hours: int, usd_per_hour: Decimal, last_usd: Decimal) -> None:
    """Hourly polls of `prod` ending now, spending `usd_per_hour`, and a WARNING record."""
    now = datetime.now(UTC)
    with History(state) as history:
        for hour in range(hours + 1):
            left = last_usd + usd_per_hour * (hours - hour)
            used = usd_per_hour * hour
            poll = Poll(
                "prod", now - timedelta(hours=hours - hour), left, "USD",
                int(left * 500_000), int(used * 500_000), used, hour,
            )  # fmt: skip
            history.save("prod", Record(State.WARNING, State.WARNING, now, 0), poll)


def test_watch_refuses_a_token_the_client_can_tell_is_mistyped(
    tmp_path: Path, config: Path
) -> None:
    state = tmp_path / "state.sqlite3"
    environment = {"PROD_TOKEN": "ql_" + "A" * 30}
    result = run("watch", "--once", "--config", config, "--state", state, env=environment)
    assert result.exit_code == 2
    assert f"error: {config}:7: [[account]] #1 (prod): the token looks mistyped" in result.output
    assert "AAAA" not in result.output
    assert not state.exists()  # refused before the state file is opened


def test_watch_refuses_a_user_id_that_is_not_digits_at_its_line(
    tmp_path: Path, relay: Relay, webhook: Webhook
) -> None:
    path = tmp_path / "watch.toml"
    path.write_text(defaults_toml(webhook.url) + account_toml(relay, user_id="abc"))
    result = run("watch", "--once", "--config", path, "--state", tmp_path / "s.sqlite3")
    assert result.exit_code == 2
    assert f"error: {path}:13: [[account]] #1 (prod) user_id: expected the numeric user id" in (
        result.output
    )


def test_watch_refuses_an_account_without_notify_urls(tmp_path: Path, relay: Relay) -> None:
    path = tmp_path / "watch.toml"
    path.write_text(defaults_toml().replace("notify = []\n", "") + account_toml(relay))
    result = run("watch", "--once", "--config", path, "--state", tmp_path / "s.sqlite3")
    assert result.exit_code == 2
    assert f"error: {path}:6: [[account]] #1 (prod): no notify URLs for account 'prod'" in (
        result.output
    )


def test_notify_empty_on_purpose_keeps_state_and_never_says_notified(
    tmp_path: Path, relay: Relay
) -> None:
    path = tmp_path / "watch.toml"
    path.write_text(defaults_toml() + account_toml(relay))  # notify = []
    relay.set_usd(3)
    state = tmp_path / "state.sqlite3"
    first = run("watch", "--once", "--config", path, "--state", state)
    assert first.exit_code == 0, first.output
    assert first.output == "prod: CRITICAL, $3.00 left (1,500,000 quota) (not sent: notify = [])\n"
    second = run("watch", "--once", "--config", path, "--state", state)
    assert second.output == "prod: CRITICAL, $3.00 left (1,500,000 quota)\n"
    assert "notified" not in first.output + second.output


def test_a_metrics_port_in_use_exits_2_naming_it(
    tmp_path: Path, config: Path, unused_port_holder: int
) -> None:
    port = str(unused_port_holder)
    result = run("watch", "--config", config, "--state", tmp_path / "s.sqlite3",
                 "--metrics-port", port)  # fmt: skip
    assert result.exit_code == 2
    assert result.output.startswith(f"error: cannot serve metrics on 127.0.0.1:{port}: ")
    assert "Traceback" not in result.output and len(result.output.splitlines()) == 1


@pytest.fixture
def unused_port_holder() -> Iterator[int]:
    """A port on 127.0.0.1 that something else is listening on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def test_a_state_path_that_cannot_be_created_exits_2_naming_it(
    tmp_path: Path, config: Path
) -> None:
    (tmp_path / "afile").write_text("")
    state = tmp_path / "afile" / "state.sqlite3"  # its "directory" is a file
    result = run("watch", "--once", "--config", config, "--state", state)
    assert result.exit_code == 2
    assert result.output.startswith(f"error: cannot use the state file {state}: cannot create ")
    assert len(result.output.splitlines()) == 1


@pytest.mark.parametrize("command", ["watch", "status", "history"])
def test_a_state_file_that_is_not_sqlite_exits_2_naming_it(
    tmp_path: Path, config: Path, command: str
) -> None:
    state = tmp_path / "notes.txt"
    state.write_text("these are my notes, not a database\n" * 100)
    args = {"watch": ["watch", "--once"], "status": ["status"], "history": ["history", "prod"]}
    result = run(*args[command], "--config", config, "--state", state)
    assert result.exit_code == 2
    assert result.output == (
        f"error: cannot use the state file {state}: not an SQLite file (file is not a database)\n"
    )
    assert state.read_text().startswith("these are my notes")  # untouched


@pytest.mark.parametrize("command", ["watch", "status"])
def test_an_sqlite_file_of_another_program_exits_2_untouched(
    tmp_path: Path, config: Path, command: str
) -> None:
    state = tmp_path / "other.sqlite3"
    with closing(sqlite3.connect(state)) as db:
        db.execute("CREATE TABLE t (x)")
    result = run(*([command, "--once"] if command == "watch" else [command]),
                 "--config", config, "--state", state)  # fmt: skip
    assert result.exit_code == 2
    assert "not a quotaledger state file" in result.output
    with closing(sqlite3.connect(state)) as db:
        tables = db.execute("SELECT name FROM sqlite_master").fetchall()
    assert tables == [("t",)]
