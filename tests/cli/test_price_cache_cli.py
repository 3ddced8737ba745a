"""`price set` takes cache prices (SPEC §8a) and lists them."""

from __future__ import annotations

import json

from click.testing import CliRunner

from quotaledger.cli.main import cli


def test_price_set_takes_cache_prices_and_lists_them(migrated_sqlite_url: str) -> None:
    runner = CliRunner()
    env = {"QUOTALEDGER_DATABASE_URL": migrated_sqlite_url}

    result = runner.invoke(
        cli,
        ["price", "set", "claude", "--input-usd-per-mtok", "3", "--output-usd-per-mtok", "15",
         "--cache-read-usd-per-mtok", "0.3", "--cache-write-usd-per-mtok", "3.75",
         "--cache-write-1h-usd-per-mtok", "6"],
        env=env,
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "cache read $0.3, cache write $3.75, 1h cache write $6" in result.stdout
    listed = json.loads(runner.invoke(cli, ["price", "list", "--json"], env=env).stdout)
    assert listed[0]["cache_write_usd_per_mtok"] == "3.75"


def test_a_cache_price_on_a_per_call_model_is_refused(migrated_sqlite_url: str) -> None:
    result = CliRunner().invoke(
        cli,
        ["price", "set", "dall-e-3", "--per-call-usd", "0.04", "--cache-read-usd-per-mtok", "1"],
        env={"QUOTALEDGER_DATABASE_URL": migrated_sqlite_url},
    )

    assert result.exit_code == 2
    assert "not both" in result.output
