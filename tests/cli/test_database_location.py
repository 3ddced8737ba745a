"""Which database the admin commands use (issue 11, item 16): the same file as the server
wherever they run, and never a new one made by accident."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

import quotaledger
from quotaledger.cli.main import cli
from support import start_server, stop_server

ADMIN_COMMANDS = [
    ("user", "list"),
    ("user", "create", "alice", "--usd", "5"),
    ("user", "show", "alice"),
    ("price", "list"),
    ("price", "set", "m", "--per-call-usd", "0.01"),
    ("group", "set", "vip", "--ratio", "0.8"),
]


@pytest.mark.parametrize("args", ADMIN_COMMANDS, ids=" ".join)
def test_an_admin_command_never_creates_a_missing_sqlite_file(tmp_path: Path, args) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "typo.db"

    result = CliRunner().invoke(
        cli, list(args), env={"QUOTALEDGER_DATABASE_URL": f"sqlite:///{missing}"}
    )

    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: no database at {missing}: create it with `quotaledger serve` or "
        "`quotaledger db upgrade` (or point --database-url at the server's database)"
    )
    assert not missing.exists()
    assert list(tmp_path.iterdir()) == []


def test_the_default_database_is_in_the_data_directory_and_named_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"XDG_DATA_HOME": str(tmp_path / "data"), "QUOTALEDGER_DATABASE_URL": ""}
    expected = tmp_path / "data" / "quotaledger" / "quotaledger.db"

    refused = CliRunner().invoke(cli, ["user", "list"], env=env)
    created = CliRunner().invoke(cli, ["db", "upgrade"], env=env)

    assert refused.exit_code == 1
    assert f"no database at {expected}" in refused.stderr
    assert created.exit_code == 0, created.output
    assert created.stderr.splitlines()[0] == f"using database {expected} (the default)"
    assert expected.is_file()
    assert not (tmp_path / "quotaledger.db").exists()


def test_the_default_is_said_in_help() -> None:
    text = " ".join(CliRunner().invoke(cli, ["user", "list", "--help"]).stdout.split())

    assert "default: quotaledger.db in the user's data directory" in text


@pytest.mark.slow
def test_serve_and_an_admin_command_run_elsewhere_share_the_default_database(
    tmp_path: Path,
) -> None:
    data_home = {"XDG_DATA_HOME": str(tmp_path / "data")}
    # An empty QUOTALEDGER_DATABASE_URL counts as unset: the server uses the default.
    server = start_server("", tmp_path, data_home)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    try:
        created = subprocess.run(
            [sys.executable, "-m", "quotaledger", "user", "create", "alice", "--password-stdin"],
            input="alice-password-123\n",
            cwd=elsewhere,
            env={**_without_database_url(), **data_home, "PYTHONPATH": SOURCES},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        login = httpx.post(
            server.base_url + "/api/user/login",
            json={"username": "alice", "password": "alice-password-123"},
            timeout=30,
        )
    finally:
        stop_server(server)

    assert created.returncode == 0, created.stderr
    assert login.status_code == 200, login.text
    assert list(elsewhere.iterdir()) == []


# The code under test wherever the command runs (the usual PYTHONPATH=src is relative).
SOURCES = str(Path(quotaledger.__file__).resolve().parent.parent)


def _without_database_url() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "QUOTALEDGER_DATABASE_URL"}
