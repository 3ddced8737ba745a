"""`price set` takes a model's maximum output, a long-context tier and a web-search price
(SPEC §8b), and an input-only price for an embeddings model."""

from __future__ import annotations

import json

from click.testing import CliRunner

from quotaledger.cli.main import cli


def test_price_set_takes_the_extras_and_lists_them(migrated_sqlite_url: str) -> None:
    runner = CliRunner()
    env = {"QUOTALEDGER_DATABASE_URL": migrated_sqlite_url}

    result = runner.invoke(
        cli,
        ["price", "set", "claude-sonnet-4-5", "--input-usd-per-mtok", "3",
         "--output-usd-per-mtok", "15", "--max-output-tokens", "64000",
         "--long-context-threshold", "200000", "--long-input-usd-per-mtok", "6",
         "--long-output-usd-per-mtok", "22.5", "--web-search-usd-per-1k", "10"],
        env=env,
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "past 200,000 input tokens $6 / $22.5" in result.stdout
    assert "web search $10 per 1,000, at most 64,000 output tokens" in result.stdout
    listed = json.loads(runner.invoke(cli, ["price", "list", "--json"], env=env).stdout)
    assert listed[0]["long_context_threshold"] == 200_000
    assert listed[0]["web_search_usd_per_kcall"] == "10"
    assert listed[0]["max_output_tokens"] == 64_000


def test_an_embeddings_model_needs_only_an_input_price(migrated_sqlite_url: str) -> None:
    result = CliRunner().invoke(
        cli,
        ["price", "set", "text-embedding-3-small", "--input-usd-per-mtok", "0.02"],
        env={"QUOTALEDGER_DATABASE_URL": migrated_sqlite_url},
    )

    assert result.exit_code == 0, result.output
    assert "(output free)" in result.stdout


def test_a_tier_price_without_its_threshold_is_refused_naming_it(migrated_sqlite_url: str) -> None:
    result = CliRunner().invoke(
        cli,
        ["price", "set", "m", "--input-usd-per-mtok", "1", "--long-input-usd-per-mtok", "2"],
        env={"QUOTALEDGER_DATABASE_URL": migrated_sqlite_url},
    )

    assert result.exit_code == 2
    assert "long_context_threshold" in result.output


def test_a_price_without_an_input_price_is_still_refused(migrated_sqlite_url: str) -> None:
    result = CliRunner().invoke(
        cli,
        ["price", "set", "m", "--output-usd-per-mtok", "1"],
        env={"QUOTALEDGER_DATABASE_URL": migrated_sqlite_url},
    )

    assert result.exit_code == 2
