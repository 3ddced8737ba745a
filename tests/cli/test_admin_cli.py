"""The admin commands of SPEC §3: what they print, their exit codes, and that bad input
changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import quotaledger.store
from quotaledger.cli.main import cli


@pytest.fixture
def run(sqlite_url: str):  # type: ignore[no-untyped-def]
    """`quotaledger ARGS` on a database made by `db upgrade`, as the server would make it."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(
            cli,
            list(args),
            input=input,
            env={"QUOTALEDGER_DATABASE_URL": sqlite_url},
            catch_exceptions=False,
        )

    assert invoke("db", "upgrade").exit_code == 0
    return invoke


def _show(run, name: str = "alice") -> dict:  # type: ignore[no-untyped-def, type-arg]
    result = run("user", "show", name, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_user_create_with_usd_and_a_password_from_stdin(run) -> None:  # type: ignore[no-untyped-def]
    result = run(
        "user", "create", "alice", "--password-stdin", "--usd", "50", input="alice-password-123\n"
    )

    assert result.exit_code == 0, result.output
    assert "$50.00 (25,000,000 quota)" in result.stdout
    assert "alice-password-123" not in result.output
    assert _show(run)["quota"] == 25_000_000


def test_user_create_without_a_password_prints_a_random_one_once(run) -> None:  # type: ignore[no-untyped-def]
    result = run("user", "create", "bob")

    assert result.exit_code == 0
    assert "Password (shown once): " in result.stdout


def test_db_upgrade_on_a_new_file_creates_admin_and_prints_its_password(sqlite_url) -> None:  # type: ignore[no-untyped-def]
    env = {"QUOTALEDGER_DATABASE_URL": sqlite_url}

    created = CliRunner().invoke(cli, ["db", "upgrade"], env=env)
    listed = CliRunner().invoke(cli, ["user", "list", "--json"], env=env)

    assert created.exit_code == 0
    assert "password: " in created.stderr
    users = json.loads(listed.stdout)
    assert [(u["username"], u["role"]) for u in users] == [("admin", "admin")]
    assert "password: " not in listed.stderr


def test_an_admin_command_on_an_existing_empty_file_migrates_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "made-by-hand.db").touch()
    env = {"QUOTALEDGER_DATABASE_URL": f"sqlite:///{tmp_path / 'made-by-hand.db'}"}

    result = CliRunner().invoke(cli, ["user", "list", "--json"], env=env)

    assert result.exit_code == 0
    assert [u["username"] for u in json.loads(result.stdout)] == ["admin"]


def test_topup_adds_quota(run) -> None:  # type: ignore[no-untyped-def]
    run("user", "create", "alice", "--quota", "100")

    result = run("user", "topup", "alice", "--usd", "1")

    assert result.exit_code == 0
    assert _show(run)["quota"] == 500_100


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("user", "topup", "ghost", "--usd", "1"), "no user named 'ghost'"),
        (("user", "topup", "alice", "--usd", "-3"), "USD amount must be"),
        (("user", "topup", "alice", "--usd", "abc"), "not a USD amount"),
        (("user", "topup", "alice"), "give an amount"),
        (("user", "topup", "alice", "--usd", "1", "--quota", "5"), "not both"),
        (("user", "topup", "alice", "--quota", "0"), "0 is not in the range"),
    ],
)
def test_bad_topups_fail_with_one_line_and_change_nothing(run, args, message) -> None:  # type: ignore[no-untyped-def]
    run("user", "create", "alice", "--quota", "100")

    result = run(*args)

    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert _show(run)["quota"] == 100


def test_creating_a_duplicate_user_fails(run) -> None:  # type: ignore[no-untyped-def]
    run("user", "create", "alice")

    result = run("user", "create", "alice")

    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: user 'alice' already exists"


def test_a_bad_username_is_a_usage_error(run) -> None:  # type: ignore[no-untyped-def]
    result = run("user", "create", "no spaces")

    assert result.exit_code == 2
    assert "username:" in result.stderr


def test_a_short_password_is_refused(run) -> None:  # type: ignore[no-untyped-def]
    result = run("user", "create", "alice", "--password-stdin", input="short\n")

    assert result.exit_code == 2
    assert "password: must be at least 8 characters" in result.stderr


def test_disable_and_enable(run) -> None:  # type: ignore[no-untyped-def]
    run("user", "create", "alice")

    assert run("user", "disable", "alice").exit_code == 0
    assert _show(run)["status"] == "disabled"
    assert run("user", "enable", "alice").exit_code == 0
    assert _show(run)["status"] == "enabled"


def test_price_set_list_delete(run) -> None:  # type: ignore[no-untyped-def]
    assert run("price", "set", "dall-e-3", "--per-call-usd", "0.04").exit_code == 0
    assert (
        run(
            "price",
            "set",
            "gpt-4o-mini",
            "--input-usd-per-mtok",
            "0.15",
            "--output-usd-per-mtok",
            "0.6",
        ).exit_code
        == 0
    )

    listed = json.loads(run("price", "list", "--json").stdout)
    assert [p["model"] for p in listed] == ["dall-e-3", "gpt-4o-mini"]
    assert listed[0]["per_call_usd"] == "0.04"

    assert run("price", "delete", "dall-e-3").exit_code == 0
    assert [p["model"] for p in json.loads(run("price", "list", "--json").stdout)] == [
        "gpt-4o-mini"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("price", "set", "m"), "give a per-call price"),
        (
            (
                "price",
                "set",
                "m",
                "--per-call-usd",
                "1",
                "--input-usd-per-mtok",
                "1",
                "--output-usd-per-mtok",
                "1",
            ),
            "not both",
        ),
        # An input price alone is an embeddings price (issue 22); an output price alone is not.
        (("price", "set", "m", "--output-usd-per-mtok", "1"), "input (and output) prices"),
        (("price", "set", "m", "--per-call-usd", "nan"), "per_call_usd"),
        (("price", "delete", "ghost"), "no price is set"),
        (("group", "set", "vip", "--ratio", "-1"), "ratio"),
    ],
)
def test_bad_prices_fail_with_one_line(run, args, message) -> None:  # type: ignore[no-untyped-def]
    result = run(*args)

    assert result.exit_code != 0
    assert message in result.stderr
    assert json.loads(run("price", "list", "--json").stdout) == []


def test_group_set_ratio(run) -> None:  # type: ignore[no-untyped-def]
    result = run("group", "set", "vip", "--ratio", "0.8")

    assert result.exit_code == 0
    assert "0.8" in result.stdout


def test_db_upgrade_reports_the_revision(run) -> None:  # type: ignore[no-untyped-def]
    versions = Path(quotaledger.store.__file__).parent / "migrations" / "versions"
    newest = max(path.name[:4] for path in versions.glob("[0-9][0-9][0-9][0-9]_*.py"))

    result = run("db", "upgrade")

    assert result.exit_code == 0
    assert f"Database schema is at revision {newest}." in result.stdout


def test_an_unsupported_database_url_is_a_usage_error() -> None:
    result = CliRunner().invoke(
        cli, ["user", "list"], env={"QUOTALEDGER_DATABASE_URL": "mysql://x"}
    )

    assert result.exit_code == 2
    assert "unsupported database URL" in result.stderr


def test_an_unreachable_database_is_a_one_line_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}"

    result = CliRunner().invoke(cli, ["db", "upgrade"], env={"QUOTALEDGER_DATABASE_URL": url})

    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: database: unable to open database file"


def test_an_absurd_usd_amount_is_a_one_line_error(run) -> None:  # type: ignore[no-untyped-def]
    run("user", "create", "alice")

    result = run("user", "topup", "alice", "--usd", "1e999999999")

    assert result.exit_code == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: Invalid value for --usd: USD amount too large: '1e999999999'"
    )


def test_user_list_shows_escape_sequences_in_usernames_as_text(  # type: ignore[no-untyped-def]
    run, sqlite_url: str
) -> None:
    """A username stored before names were checked cannot rewrite the operator's terminal."""
    from quotaledger.settings import Settings
    from quotaledger.store.database import Database
    from quotaledger.store.tables import users

    run("user", "create", "alice")
    database = Database(Settings.from_env({}, database_url=sqlite_url).database_url)
    try:
        with database.write() as connection:
            connection.execute(
                users.update()
                .where(users.c.username == "alice")
                .values(username="\x1b]0;owned\x07\rroot")
            )
    finally:
        database.dispose()

    listing = CliRunner().invoke(
        cli, ["user", "list"], env={"QUOTALEDGER_DATABASE_URL": sqlite_url, "COLUMNS": "200"}
    )

    assert listing.exit_code == 0, listing.output
    assert "\x1b" not in listing.stdout and "\x07" not in listing.stdout
    assert "\\x1b]0;owned\\x07\\rroot" in listing.stdout
