"""`quotaledger key ...` (SPEC §8): the key printed once, limits from flags, bad input
refused with a one-line message and nothing created."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner, Result

from quotaledger.cli.main import cli
from quotaledger.identity import keys
from quotaledger.settings import Settings
from quotaledger.store.database import Database
from quotaledger.store.tables import api_keys


@pytest.fixture
def run(migrated_sqlite_url: str):  # type: ignore[no-untyped-def]
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        env = {"QUOTALEDGER_DATABASE_URL": migrated_sqlite_url, "COLUMNS": "200"}
        return runner.invoke(cli, list(args), input=input, env=env, catch_exceptions=False)

    invoke("user", "create", "alice", "--usd", "10")
    return invoke


def _keys(run) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    result = run("key", "list", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_key_create_prints_the_key_once_and_it_is_admitted(run, migrated_sqlite_url: str) -> None:  # type: ignore[no-untyped-def]
    result = run("key", "create", "alice", "--name", "laptop")

    assert result.exit_code == 0, result.output
    raw = result.stdout.strip()
    assert raw.startswith("sk-ql-") and "\n" not in raw
    assert "Created API key 1 'laptop' for alice: unlimited, never expires." in result.stderr
    listing = run("key", "list")
    assert "laptop" in listing.stdout and raw not in listing.stdout
    assert raw not in json.dumps(_keys(run))
    database = Database(Settings.from_env({}, database_url=migrated_sqlite_url).database_url)
    try:
        admitted = keys.admit(database, keys.key_digest(raw), "127.0.0.1", None, frozenset())
    finally:
        database.dispose()
    assert admitted.key.name == "laptop"


def test_key_create_takes_every_limit(run) -> None:  # type: ignore[no-untyped-def]
    result = run(
        "key", "create", "alice", "--name", "ci", "--usd", "5", "--expires", "2099-12-31",
        "--models", "gpt-4o-mini,gpt-4o", "--allow-ip", "10.0.0.0/8", "--allow-ip", "::1",
        "--period", "day", "--period-usd", "2", "--json",
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert created["key"].startswith("sk-ql-")
    assert (created["unlimited"], created["remain_quota"]) == (False, 2_500_000)
    assert created["expires_at"] == datetime(2100, 1, 1, tzinfo=UTC).timestamp()
    assert created["models"] == ["gpt-4o", "gpt-4o-mini"]
    assert created["networks"] == ["10.0.0.0/8", "::1/128"]
    assert (created["period"], created["period_quota"]) == ("day", 1_000_000)
    assert "key" not in _keys(run)[0]


def test_an_expiry_may_be_a_duration(run) -> None:  # type: ignore[no-untyped-def]
    created = json.loads(run("key", "create", "alice", "--name", "k", "--expires", "30d",
                             "--json").stdout)  # fmt: skip

    assert abs(created["expires_at"] - (time.time() + 30 * 86_400)) < 60


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("ghost", "--name", "k"), 1, "no user named 'ghost'"),
        (("alice", "--name", "k", "--usd", "1", "--unlimited"), 2, "not several"),
        (("alice", "--name", "k", "--period", "day"), 2, "together"),
        (("alice", "--name", "k", "--expires", "soon"), 2, "YYYY-MM-DD"),
        (("alice", "--name", "k", "--expires", "2001-01-01"), 2, "future"),
        (("alice", "--name", "k", "--allow-ip", "10.0.0.300"), 2, "not an address"),
        (("alice", "--name", "k", "--group", "vip"), 2, "group"),
    ],
)
def test_bad_key_flags_are_refused_and_nothing_is_created(
    run,
    args: tuple[str, ...],
    code: int,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    result = run("key", "create", *args)

    assert result.exit_code == code, result.output
    assert message in result.output
    assert _keys(run) == []


def test_keys_are_disabled_enabled_and_deleted_by_id(run) -> None:  # type: ignore[no-untyped-def]
    run("key", "create", "alice", "--name", "k")

    assert run("key", "disable", "1").stdout == "Disabled API key 1 'k'.\n"
    assert _keys(run)[0]["state"] == "disabled"
    assert run("key", "enable", "1").exit_code == 0
    assert _keys(run)[0]["state"] == "enabled"
    assert run("key", "delete", "1").exit_code == 0
    assert _keys(run) == []
    assert json.loads(run("key", "list", "--all", "--json").stdout)[0]["state"] == "deleted"
    missing = run("key", "enable", "1")
    assert (missing.exit_code, "no API key with id 1" in missing.output) == (1, True)


def test_key_list_of_one_user(run) -> None:  # type: ignore[no-untyped-def]
    run("user", "create", "bob")
    run("key", "create", "alice", "--name", "a")
    run("key", "create", "bob", "--name", "b")

    mine = json.loads(run("key", "list", "bob", "--json").stdout)

    assert [k["name"] for k in mine] == ["b"]


def test_a_key_name_with_control_characters_is_refused(run) -> None:  # type: ignore[no-untyped-def]
    result = run("key", "create", "alice", "--name", "\x1b[2Jlaptop")

    assert result.exit_code == 2
    assert "name" in result.output and "control character" in result.output
    assert _keys(run) == []


def test_key_list_shows_escape_sequences_in_names_as_text(  # type: ignore[no-untyped-def]
    run, migrated_sqlite_url: str
) -> None:
    """A name stored before names were checked (or by another door) cannot clear the
    operator's screen or rewrite its line: ESC and CR are printed as escapes, rich markup
    as written."""
    run("key", "create", "alice", "--name", "laptop")
    database = Database(Settings.from_env({}, database_url=migrated_sqlite_url).database_url)
    try:
        with database.write() as connection:
            connection.execute(api_keys.update().values(name="\x1b[2J\rok [red]x[/red]"))
    finally:
        database.dispose()

    listing = run("key", "list")

    assert listing.exit_code == 0, listing.output
    assert "\x1b" not in listing.stdout and "\r" not in listing.stdout
    assert "\\x1b[2J\\rok [red]x[/red]" in listing.stdout
