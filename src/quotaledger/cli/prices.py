"""`quotaledger price ...` and `quotaledger group set`."""

from __future__ import annotations

import click

from quotaledger.cli.common import (
    audited,
    database_url_option,
    handles_errors,
    json_option,
    open_database,
    print_json,
)


@click.group()
def price() -> None:
    """Set, list and delete model prices."""


@price.command(name="set")
@click.argument("model")
@click.option("--per-call-usd", metavar="X", help="Fixed USD price per call (ModelFixedPrice).")
@click.option("--input-usd-per-mtok", metavar="X", help="USD per million input tokens.")
@click.option("--output-usd-per-mtok", metavar="Y", help="USD per million output tokens.")
@click.option(
    "--cache-read-usd-per-mtok",
    metavar="X",
    help="USD per million cached input tokens read [default: input x 0.1 on anthropic "
    "channels, else the input price].",
)
@click.option(
    "--cache-write-usd-per-mtok",
    metavar="X",
    help="USD per million tokens written to a 5-minute cache [default: input x 1.25 on "
    "anthropic channels, else the input price].",
)
@click.option(
    "--cache-write-1h-usd-per-mtok",
    metavar="X",
    help="USD per million tokens written to a 1-hour cache [default: input x 2 on "
    "anthropic channels, else the input price].",
)
@database_url_option
@handles_errors
def set_price(
    model: str,
    per_call_usd: str | None,
    input_usd_per_mtok: str | None,
    output_usd_per_mtok: str | None,
    cache_read_usd_per_mtok: str | None,
    cache_write_usd_per_mtok: str | None,
    cache_write_1h_usd_per_mtok: str | None,
    database_url: str | None,
) -> None:
    """Price MODEL per call, or per million input and output tokens.

    \b
    Examples:
      quotaledger price set dall-e-3 --per-call-usd 0.04
      quotaledger price set gpt-4o-mini --input-usd-per-mtok 0.15 --output-usd-per-mtok 0.60
      quotaledger price set claude-sonnet-4 --input-usd-per-mtok 3 --output-usd-per-mtok 15 \\
          --cache-read-usd-per-mtok 0.3
    """
    from quotaledger.billing import pricing

    new = pricing.make_price(
        model,
        per_call_usd=per_call_usd,
        input_usd_per_mtok=input_usd_per_mtok,
        output_usd_per_mtok=output_usd_per_mtok,
        cache_read_usd_per_mtok=cache_read_usd_per_mtok,
        cache_write_usd_per_mtok=cache_write_usd_per_mtok,
        cache_write_1h_usd_per_mtok=cache_write_1h_usd_per_mtok,
    )
    database = open_database(database_url)
    pricing.set_price(database, new)
    audited(database, "price.set", model, **new.as_row())
    click.echo(f"{model}: {_describe(new)}")


@price.command(name="list")
@json_option
@database_url_option
@handles_errors
def list_prices(as_json: bool, database_url: str | None) -> None:
    """List model prices."""
    from quotaledger.billing import pricing

    found = pricing.list_prices(open_database(database_url))
    if as_json:
        print_json([p.as_row() for p in found])
        return
    if not found:
        click.echo("No prices set. Add one with: quotaledger price set MODEL --per-call-usd X")
    for p in found:
        click.echo(f"{p.model}: {_describe(p)}")


@price.command(name="delete")
@click.argument("model")
@database_url_option
@handles_errors
def delete_price(model: str, database_url: str | None) -> None:
    """Delete MODEL's price (charges for it are then refused)."""
    from quotaledger.billing import pricing

    database = open_database(database_url)
    pricing.delete_price(database, model)
    audited(database, "price.delete", model)
    click.echo(f"Deleted the price of {model}.")


def _describe(p: object) -> str:
    from quotaledger.billing.pricing import Price

    assert isinstance(p, Price)
    if p.per_call_usd is not None:
        return f"${p.per_call_usd} per call"
    text = f"${p.input_usd_per_mtok} / ${p.output_usd_per_mtok} per million input / output tokens"
    cache = [
        f"{label} ${value}"
        for label, value in (
            ("cache read", p.cache_read_usd_per_mtok),
            ("cache write", p.cache_write_usd_per_mtok),
            ("1h cache write", p.cache_write_1h_usd_per_mtok),
        )
        if value is not None
    ]
    return text + (f" ({', '.join(cache)})" if cache else "")


@click.group()
def group() -> None:
    """User groups and their price multipliers."""


@group.command(name="set")
@click.argument("name")
@click.option("--ratio", required=True, metavar="R", help="Price multiplier, e.g. 0.8 or 1.5.")
@database_url_option
@handles_errors
def set_group(name: str, ratio: str, database_url: str | None) -> None:
    """Set the price multiplier of group NAME.

    \b
    Example:
      quotaledger group set vip --ratio 0.8
    """
    from quotaledger.billing import pricing

    database = open_database(database_url)
    value = pricing.set_group_ratio(database, name, ratio)
    audited(database, "group.set", name, ratio=str(value))
    click.echo(f"Group {name}: prices x {value}.")


from quotaledger.cli.limits import group_limits  # noqa: E402 - registered after the group's own

group.add_command(group_limits)
